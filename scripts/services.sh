#!/usr/bin/env bash
# Install (if missing) and start (if not already answering) the real services
# the Hindsight test suite talks to, all bound to 127.0.0.1:
#
#   PostgreSQL  127.0.0.1:5432  role/password hindsight, database hindsight_test
#   RabbitMQ    127.0.0.1:5672  AMQP (guest/guest), 5552 streams, 15672 management
#   Tansu       127.0.0.1:9092  Kafka-protocol broker, in-memory storage
#   moto        127.0.0.1:5000  S3-compatible server
#
# and the browser-test tools: Debian's chromium (/usr/bin/chromium), node and
# npm, and playwright-core from tests/web/package-lock.json installed into
# $HINDSIGHT_WEB_TEST_DIR (default $HOME/.cache/hindsight/web-tests).
#
# Usage:
#   scripts/services.sh [up]     install + start + wait for readiness, print env
#   source scripts/services.sh   same, and export the HINDSIGHT_TEST_* variables
#                                into the calling shell
#   scripts/services.sh env      only print the `export ...` lines (no startup)
#   scripts/services.sh status   probe each service, start nothing
#   scripts/services.sh stop     stop what this script started
#
# Idempotent: a service that already answers on its port is left alone, and
# nothing is installed twice. Fails loudly (non-zero exit, the reason and the
# last 40 lines of that service's log) when a service cannot be brought up.
#
# Knobs (environment):
#   HINDSIGHT_SERVICES_DIR      state dir for logs/pids
#                               (default: $HOME/.cache/hindsight/services)
#   HINDSIGHT_SERVICES_TIMEOUT  readiness timeout per service, seconds (120)
#   HINDSIGHT_TANSU_VERSION     tansu version for `cargo install` (0.6.0)
#   HINDSIGHT_SERVICES_SKIP     space/comma separated services not to manage
#                               (postgres rabbitmq tansu moto); tests that need
#                               a skipped service will fail

# ---------------------------------------------------------------------------
# Everything below is wrapped in functions so that sourcing this file only
# defines them and exports the variables; the real work always happens in a
# child bash process (under a lock), so `set -e` or `exit` never leaks into a
# shell that sourced us.

_hs_self="${BASH_SOURCE[0]}"
_hs_state_dir="${HINDSIGHT_SERVICES_DIR:-$HOME/.cache/hindsight/services}"

_hs_export_env() {
  export HINDSIGHT_TEST_POSTGRES_URL="postgres://hindsight:hindsight@127.0.0.1:5432/hindsight_test"
  export HINDSIGHT_TEST_KAFKA_BROKERS="127.0.0.1:9092"
  export HINDSIGHT_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
  export HINDSIGHT_TEST_S3_ENDPOINT="http://127.0.0.1:5000"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
  export HINDSIGHT_TEST_SERVICES_DIR="$_hs_state_dir"
  export HINDSIGHT_WEB_TEST_DIR="${HINDSIGHT_WEB_TEST_DIR:-$HOME/.cache/hindsight/web-tests}"
}

_hs_print_env() {
  local v
  for v in HINDSIGHT_TEST_POSTGRES_URL HINDSIGHT_TEST_KAFKA_BROKERS \
    HINDSIGHT_TEST_AMQP_URL HINDSIGHT_TEST_S3_ENDPOINT AWS_ACCESS_KEY_ID \
    AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION HINDSIGHT_TEST_SERVICES_DIR HINDSIGHT_WEB_TEST_DIR; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
}

# ------------------------------------------------------------------ helpers --

_hs_log() { printf '[services %5ss] %s\n' "$((SECONDS - _hs_t0))" "$*" >&2; }

# _hs_fail SERVICE REASON [LOGFILE...]: print reason + log tails, exit 1.
_hs_fail() {
  local svc="$1" reason="$2" f
  shift 2
  {
    echo
    echo "=================================================================="
    echo "ERROR: $svc could not be started: $reason"
    for f in "$@"; do
      [[ -n "$f" ]] || continue
      echo "------------------------------------------------------------------"
      if [[ -r "$f" ]]; then
        echo "last 40 lines of $f:"
        tail -n 40 "$f"
      else
        echo "(log $f does not exist or is not readable)"
      fi
    done
    echo "=================================================================="
  } >&2
  exit 1
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
_hs_port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

_hs_as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# Run a command as another system user (postgres), from a readable cwd.
_hs_as_user() {
  local user="$1"
  shift
  if [[ $EUID -eq 0 ]] && command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u "$user" -- "$@")
  else
    (cd / && sudo -n -u "$user" -- "$@")
  fi
}

_hs_apt_updated=0
_hs_apt_install() {
  if [[ $_hs_apt_updated -eq 0 ]]; then
    _hs_log "apt-get update"
    _hs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      >>"$_hs_state_dir/apt.log" 2>&1 ||
      _hs_fail apt "apt-get update failed" "$_hs_state_dir/apt.log"
    _hs_apt_updated=1
  fi
  _hs_log "apt-get install $*"
  _hs_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "$@" >>"$_hs_state_dir/apt.log" 2>&1 ||
    _hs_fail apt "apt-get install $* failed" "$_hs_state_dir/apt.log"
}

# Write FILE (as root) with the content read from stdin, only when it differs.
# Returns 0 when the file changed, 1 when it was already up to date.
_hs_write_if_changed() {
  local file="$1" content
  content="$(cat)"
  if [[ -f "$file" ]] && [[ "$(cat "$file")" == "$content" ]]; then
    return 1
  fi
  _hs_as_root mkdir -p "$(dirname "$file")"
  printf '%s\n' "$content" | _hs_as_root tee "$file" >/dev/null
  return 0
}

# Is PID alive and does its command line contain PATTERN?
_hs_pid_matches() {
  local pid="$1" pattern="$2"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

_hs_python() {
  if [[ -n "${_hs_py:-}" ]]; then return 0; fi
  _hs_py="$(command -v python3 || true)"
  if [[ -z "$_hs_py" ]]; then
    _hs_apt_install python3 python3-pip python3-venv
    _hs_py="$(command -v python3)"
  fi
}

# pip install into the python3 on PATH; handles Debian's PEP 668 marker.
_hs_pip_install() {
  _hs_python
  if ! "$_hs_py" -m pip --version >/dev/null 2>&1; then
    _hs_apt_install python3-pip
  fi
  _hs_log "pip install $*"
  if ! "$_hs_py" -m pip install --quiet "$@" >>"$_hs_state_dir/pip.log" 2>&1; then
    if grep -q externally-managed "$_hs_state_dir/pip.log"; then
      "$_hs_py" -m pip install --quiet --break-system-packages "$@" \
        >>"$_hs_state_dir/pip.log" 2>&1 ||
        _hs_fail pip "pip install $* failed" "$_hs_state_dir/pip.log"
    else
      _hs_fail pip "pip install $* failed" "$_hs_state_dir/pip.log"
    fi
  fi
}

_hs_cargo_bin_dir() { echo "${CARGO_HOME:-$HOME/.cargo}/bin"; }

# ------------------------------------------------------------ python + tools --

_hs_ensure_python_packages() {
  _hs_python
  local missing pkgs=() m
  # find_spec only locates the packages; importing pyarrow/duckdb is slow.
  missing="$("$_hs_py" - duckdb pyarrow polars confluent_kafka boto3 moto flask flask_cors openapi_spec_validator <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
)" || missing="duckdb pyarrow polars confluent_kafka boto3 moto openapi_spec_validator"
  for m in $missing; do
    case "$m" in
      confluent_kafka) pkgs+=("confluent-kafka") ;;
      moto | flask | flask_cors) pkgs+=("moto[server]") ;;
      openapi_spec_validator) pkgs+=("openapi-spec-validator") ;;
      *) pkgs+=("$m") ;;
    esac
  done
  if [[ ${#pkgs[@]} -gt 0 ]]; then
    # shellcheck disable=SC2207
    pkgs=($(printf '%s\n' "${pkgs[@]}" | sort -u))
    _hs_pip_install "${pkgs[@]}"
  fi
}

_hs_ensure_nextest() {
  if command -v cargo-nextest >/dev/null 2>&1 ||
    [[ -x "$(_hs_cargo_bin_dir)/cargo-nextest" ]]; then
    return 0
  fi
  _hs_log "cargo install cargo-nextest --locked (log: $_hs_state_dir/cargo-nextest-install.log)"
  cargo install cargo-nextest --locked >>"$_hs_state_dir/cargo-nextest-install.log" 2>&1 ||
    _hs_fail cargo-nextest "cargo install cargo-nextest failed" \
      "$_hs_state_dir/cargo-nextest-install.log"
}

# ------------------------------------------------------- browser-test tools --

_hs_web_dir="${HINDSIGHT_WEB_TEST_DIR:-$HOME/.cache/hindsight/web-tests}"
_hs_repo_web="$(cd "$(dirname "$_hs_self")/.." && pwd)/tests/web"

# Chromium, node/npm and playwright-core for tests/web.rs. Fast when present:
# nothing is installed when the binaries exist and the installed lock file
# matches the committed one.
_hs_ensure_web_tools() {
  local packages=()
  [[ -x /usr/bin/chromium ]] || packages+=(chromium)
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
  fi
  if [[ ${#packages[@]} -gt 0 ]]; then
    _hs_apt_install "${packages[@]}"
  fi
  if [[ -f "$_hs_web_dir/node_modules/playwright-core/package.json" ]] &&
    cmp -s "$_hs_repo_web/package-lock.json" "$_hs_web_dir/package-lock.json"; then
    return 0
  fi
  _hs_log "npm ci playwright-core into $_hs_web_dir (log: $_hs_state_dir/npm.log)"
  mkdir -p "$_hs_web_dir"
  cp "$_hs_repo_web/package.json" "$_hs_repo_web/package-lock.json" "$_hs_web_dir/"
  (cd "$_hs_web_dir" && npm ci --no-audit --no-fund) >>"$_hs_state_dir/npm.log" 2>&1 ||
    _hs_fail playwright-core "npm ci in $_hs_web_dir failed" "$_hs_state_dir/npm.log"
}

# --------------------------------------------------------------- PostgreSQL --

_hs_pg_url="postgres://hindsight:hindsight@127.0.0.1:5432/hindsight_test"

# psql as the hindsight role over TCP with password auth.
_hs_pg_client_ok() {
  PGCONNECT_TIMEOUT=5 psql "$_hs_pg_url" -XAtqc \
    "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user" 2>/dev/null |
    grep -qx t
}

_hs_pg_ensure_installed() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 &&
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    return 0
  fi
  _hs_apt_install postgresql postgresql-client
}

# Sets _hs_pg_ver / _hs_pg_cluster to the cluster we manage (creating it).
_hs_pg_select_cluster() {
  local line
  # Prefer an existing cluster on port 5432, else any "main" cluster.
  line="$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 {print; exit}')"
  [[ -n "$line" ]] || line="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" {print; exit}')"
  if [[ -n "$line" ]]; then
    _hs_pg_ver="$(awk '{print $1}' <<<"$line")"
    _hs_pg_cluster="$(awk '{print $2}' <<<"$line")"
    return 0
  fi
  _hs_pg_ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
  _hs_pg_cluster=main
  _hs_log "postgres: creating cluster $_hs_pg_ver/$_hs_pg_cluster"
  _hs_as_root pg_createcluster --port 5432 "$_hs_pg_ver" "$_hs_pg_cluster" \
    >>"$_hs_state_dir/postgres-setup.log" 2>&1 ||
    _hs_fail postgres "pg_createcluster $_hs_pg_ver $_hs_pg_cluster failed" \
      "$_hs_state_dir/postgres-setup.log"
}

_hs_pg_logfile() {
  echo "/var/log/postgresql/postgresql-${_hs_pg_ver}-${_hs_pg_cluster}.log"
}

_hs_pg_write_conf() {
  _hs_write_if_changed "/etc/postgresql/$_hs_pg_ver/$_hs_pg_cluster/conf.d/90-hindsight.conf" <<'EOF'
# Managed by Hindsight scripts/services.sh (test database settings).
listen_addresses = '127.0.0.1'
port = 5432
max_connections = 200
synchronous_commit = off
EOF
}

_hs_pg_start() {
  _hs_pg_ensure_installed
  _hs_pg_select_cluster
  local status datadir pid conf_changed=0
  if _hs_pg_write_conf; then conf_changed=1; fi

  status="$(pg_lsclusters -h | awk -v v="$_hs_pg_ver" -v c="$_hs_pg_cluster" '$1 == v && $2 == c {print $4}')"
  if [[ "$status" == online* ]]; then
    if [[ $conf_changed -eq 0 ]] && pg_isready -q -h 127.0.0.1 -p 5432 -t 3; then
      _hs_log "postgres: already running ($_hs_pg_ver/$_hs_pg_cluster)"
      return 0
    fi
    _hs_log "postgres: restarting $_hs_pg_ver/$_hs_pg_cluster to apply settings"
    _hs_as_root pg_ctlcluster "$_hs_pg_ver" "$_hs_pg_cluster" restart \
      >>"$_hs_state_dir/postgres-setup.log" 2>&1 ||
      _hs_fail postgres "pg_ctlcluster restart failed" \
        "$_hs_state_dir/postgres-setup.log" "$(_hs_pg_logfile)"
    touch "$_hs_state_dir/postgres.started"
    return 0
  fi

  if pg_isready -q -h 127.0.0.1 -p 5432 -t 3; then
    _hs_log "postgres: something else already answers on 127.0.0.1:5432; using it"
    return 0
  fi

  # A postmaster.pid left behind by a killed session can point at a PID that
  # now belongs to an unrelated process, which makes postgres refuse to start.
  datadir="$(pg_lsclusters -h | awk -v v="$_hs_pg_ver" -v c="$_hs_pg_cluster" '$1 == v && $2 == c {print $6}')"
  if [[ -n "$datadir" ]] && _hs_as_root test -f "$datadir/postmaster.pid"; then
    pid="$(_hs_as_root head -n1 "$datadir/postmaster.pid" || true)"
    if ! _hs_pid_matches "$pid" postgres; then
      _hs_log "postgres: removing stale $datadir/postmaster.pid (pid $pid)"
      _hs_as_root rm -f "$datadir/postmaster.pid"
    fi
  fi
  _hs_as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql

  _hs_log "postgres: starting $_hs_pg_ver/$_hs_pg_cluster"
  # After an unclean stop (the machine was reset), PostgreSQL first fsyncs
  # its data directory, which can take longer than pg_ctl's default 60 s
  # wait: give it 10 minutes, and if pg_ctl still gives up while the server
  # is recovering, let _hs_pg_wait decide.
  if ! _hs_as_root pg_ctlcluster "$_hs_pg_ver" "$_hs_pg_cluster" start -- -t 600 \
    >>"$_hs_state_dir/postgres-setup.log" 2>&1; then
    pid="$(_hs_as_root head -n1 "$datadir/postmaster.pid" 2>/dev/null || true)"
    _hs_pid_matches "$pid" postgres ||
      _hs_fail postgres "pg_ctlcluster $_hs_pg_ver $_hs_pg_cluster start failed" \
        "$_hs_state_dir/postgres-setup.log" "$(_hs_pg_logfile)"
    _hs_log "postgres: still starting (recovery after an unclean stop); waiting"
  fi
  touch "$_hs_state_dir/postgres.started"
}

# The tests create a fresh database each (tests/util.rs,
# fresh_postgres_database) and leave it for inspection; drop those of earlier
# runs so that they do not pile up (and slow down a recovery's fsync).
_hs_pg_drop_test_databases() {
  local name
  PGCONNECT_TIMEOUT=5 psql "$_hs_pg_url" -XAtqc \
    "SELECT datname FROM pg_database WHERE datname ~ '^hindsight_(conformance|query|demo)_[0-9a-f]{32}$'" \
    2>/dev/null | while read -r name; do
    [[ -n "$name" ]] && PGCONNECT_TIMEOUT=5 psql "$_hs_pg_url" -XAtqc "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1
  done
  return 0
}

_hs_pg_wait() {
  # Recovery after an unclean stop can take minutes (see _hs_pg_start).
  local deadline=$((SECONDS + (_hs_timeout > 600 ? _hs_timeout : 600))) hba
  until pg_isready -q -h 127.0.0.1 -p 5432 -t 2; do
    if ((SECONDS >= deadline)); then
      _hs_fail postgres "not accepting connections on 127.0.0.1:5432 after ${_hs_timeout}s" \
        "$_hs_state_dir/postgres-setup.log" "$(_hs_pg_logfile)"
    fi
    sleep 0.5
  done

  if _hs_pg_client_ok; then
    _hs_pg_drop_test_databases
    _hs_log "postgres: ready ($_hs_pg_url)"
    return 0
  fi

  _hs_log "postgres: ensuring role hindsight and database hindsight_test"
  _hs_as_user postgres psql -X -q -v ON_ERROR_STOP=1 -p 5432 -d postgres \
    >>"$_hs_state_dir/postgres-setup.log" 2>&1 <<'SQL' ||
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hindsight') THEN
    CREATE ROLE hindsight LOGIN CREATEDB PASSWORD 'hindsight';
  ELSE
    ALTER ROLE hindsight LOGIN CREATEDB PASSWORD 'hindsight';
  END IF;
END
$$;
SELECT 'CREATE DATABASE hindsight_test OWNER hindsight'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'hindsight_test')
\gexec
ALTER DATABASE hindsight_test OWNER TO hindsight;
SQL
    _hs_fail postgres "creating role/database failed (psql as postgres over the unix socket)" \
      "$_hs_state_dir/postgres-setup.log" "$(_hs_pg_logfile)"

  if ! _hs_pg_client_ok; then
    # Make password auth over TCP from 127.0.0.1 work, then retry once.
    hba="$(_hs_as_user postgres psql -XAtq -p 5432 -d postgres -c 'SHOW hba_file')"
    _hs_log "postgres: adding a scram-sha-256 rule for 127.0.0.1 to $hba"
    _hs_as_root sed -i '1i host    all    hindsight    127.0.0.1/32    scram-sha-256  # hindsight scripts/services.sh' "$hba"
    _hs_as_user postgres psql -XAtq -p 5432 -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
    if ! _hs_pg_client_ok; then
      PGCONNECT_TIMEOUT=5 psql "$_hs_pg_url" -XAtqc 'SELECT 1' \
        >>"$_hs_state_dir/postgres-setup.log" 2>&1 || true
      _hs_fail postgres "cannot log in as hindsight via $_hs_pg_url" \
        "$_hs_state_dir/postgres-setup.log" "$(_hs_pg_logfile)"
    fi
  fi
  _hs_log "postgres: ready ($_hs_pg_url)"
}

_hs_pg_stop() {
  if [[ ! -f "$_hs_state_dir/postgres.started" ]]; then
    _hs_log "postgres: not started by this script; leaving it alone"
    return 0
  fi
  _hs_pg_select_cluster
  _hs_log "postgres: stopping $_hs_pg_ver/$_hs_pg_cluster"
  _hs_as_root pg_ctlcluster "$_hs_pg_ver" "$_hs_pg_cluster" stop -m fast || true
  rm -f "$_hs_state_dir/postgres.started"
}

# ----------------------------------------------------------------- RabbitMQ --

# Keep epmd and Erlang distribution on loopback too. Only the child process
# running this script sees these (never a shell that sources the script).
_hs_rabbit_env() {
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:--kernel inet_dist_use_interface {127,0,0,1}}"
}

# _hs_rabbit_fail REASON: fail with our log, the node log and startup_err.
_hs_rabbit_fail() {
  local f newest=""
  for f in /var/log/rabbitmq/rabbit@*.log; do
    [[ -e "$f" && "$f" != *_upgrade.log ]] || continue
    if [[ -z "$newest" || "$f" -nt "$newest" ]]; then newest="$f"; fi
  done
  _hs_fail rabbitmq "$1" "$_hs_state_dir/rabbitmq.log" "$newest" /var/log/rabbitmq/startup_err
}

_hs_rabbit_plugins_in_file() {
  local f=/etc/rabbitmq/enabled_plugins
  [[ -r "$f" ]] && grep -q rabbitmq_stream "$f" && grep -q 'rabbitmq_management[],. ]' "$f"
}

_hs_rabbit_write_conf() {
  _hs_write_if_changed /etc/rabbitmq/conf.d/90-hindsight.conf <<'EOF'
# Managed by Hindsight scripts/services.sh: loopback-only listeners.
listeners.tcp.1 = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
stream.listeners.tcp.1 = 127.0.0.1:5552
stream.advertised_host = 127.0.0.1
stream.advertised_port = 5552
EOF
}

_hs_rabbit_start() {
  _hs_rabbit_env
  if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
    _hs_apt_install rabbitmq-server
  fi
  # Enable the plugins in the plugins file first: the config below uses
  # stream.* keys, which only validate when the stream plugin is enabled.
  if ! _hs_rabbit_plugins_in_file; then
    _hs_log "rabbitmq: enabling plugins rabbitmq_stream rabbitmq_management"
    if _hs_port_open 5672; then
      rabbitmq-plugins enable rabbitmq_stream rabbitmq_management \
        >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
        _hs_rabbit_fail "rabbitmq-plugins enable failed"
    else
      rabbitmq-plugins enable --offline rabbitmq_stream rabbitmq_management \
        >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
        _hs_rabbit_fail "rabbitmq-plugins enable --offline failed"
    fi
  fi
  local conf_changed=0
  if _hs_rabbit_write_conf; then conf_changed=1; fi

  if _hs_port_open 5672; then
    if [[ $conf_changed -eq 0 ]]; then
      _hs_log "rabbitmq: already running"
      _hs_rabbit_started=0
      return 0
    fi
    _hs_log "rabbitmq: restarting to apply /etc/rabbitmq/conf.d/90-hindsight.conf"
    timeout 60 rabbitmqctl stop >>"$_hs_state_dir/rabbitmq.log" 2>&1 || true
    local deadline=$((SECONDS + 30))
    while _hs_port_open 5672 && ((SECONDS < deadline)); do sleep 0.5; done
  fi

  _hs_log "rabbitmq: starting (rabbitmq-server -detached)"
  echo "=== $(date -Is) rabbitmq-server -detached" >>"$_hs_state_dir/rabbitmq.log"
  rabbitmq-server -detached </dev/null >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
    _hs_rabbit_fail "rabbitmq-server -detached failed"
  touch "$_hs_state_dir/rabbitmq.started"
  _hs_rabbit_started=1
}

_hs_rabbit_wait() {
  _hs_rabbit_env
  local deadline=$((SECONDS + _hs_timeout)) left
  # await_startup fails at once while the node is not yet registered with
  # epmd, so retry it until the deadline.
  while :; do
    left=$((deadline - SECONDS))
    if ((left <= 0)); then
      _hs_rabbit_fail "node did not finish booting within ${_hs_timeout}s"
    fi
    if timeout "$left" rabbitmqctl -q await_startup >>"$_hs_state_dir/rabbitmq.log" 2>&1; then
      break
    fi
    if [[ "${_hs_rabbit_started:-0}" -eq 1 ]] && ! pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1 &&
      ((SECONDS > deadline - _hs_timeout + 15)); then
      _hs_rabbit_fail "the Erlang VM (beam.smp) exited during startup"
    fi
    sleep 1
  done
  until _hs_port_open 5672; do
    if ((SECONDS >= deadline)); then
      _hs_rabbit_fail "AMQP port 127.0.0.1:5672 does not answer"
    fi
    sleep 0.5
  done
  if ! _hs_port_open 5552; then
    # Running node whose plugin set lags the plugins file: apply it online.
    rabbitmq-plugins enable rabbitmq_stream rabbitmq_management \
      >>"$_hs_state_dir/rabbitmq.log" 2>&1 || true
    until _hs_port_open 5552; do
      if ((SECONDS >= deadline)); then
        _hs_rabbit_fail "stream port 127.0.0.1:5552 does not answer (rabbitmq_stream plugin)"
      fi
      sleep 0.5
    done
  fi
  _hs_log "rabbitmq: ready (amqp 5672, stream 5552, management 15672)"
}

_hs_rabbit_stop() {
  if [[ ! -f "$_hs_state_dir/rabbitmq.started" ]]; then
    _hs_log "rabbitmq: not started by this script; leaving it alone"
    return 0
  fi
  _hs_rabbit_env
  _hs_log "rabbitmq: stopping"
  timeout 60 rabbitmqctl stop >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 30))
  while pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1 && ((SECONDS < deadline)); do
    sleep 0.5
  done
  rm -f "$_hs_state_dir/rabbitmq.started"
}

# -------------------------------------------------------------------- Tansu --

_hs_tansu_version="${HINDSIGHT_TANSU_VERSION:-0.6.0}"

_hs_tansu_bin() {
  local b
  b="$(command -v tansu 2>/dev/null || true)"
  [[ -n "$b" ]] || { [[ -x "$(_hs_cargo_bin_dir)/tansu" ]] && b="$(_hs_cargo_bin_dir)/tansu"; }
  [[ -n "$b" ]] || return 1
  echo "$b"
}

_hs_tansu_metadata_ok() {
  _hs_python
  timeout 30 "$_hs_py" - <<'PY' >>"$_hs_state_dir/tansu-probe.log" 2>&1
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": "127.0.0.1:9092"}).list_topics(timeout=10)
assert md.brokers, "no brokers in metadata"
print("metadata ok:", {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()})
PY
}

_hs_tansu_start() {
  local bin
  if ! bin="$(_hs_tansu_bin)" && pgrep -f 'cargo install.* tansu' >/dev/null 2>&1; then
    # Someone (another checkout, a setup step) is already building tansu:
    # wait for that build instead of compiling it a second time in parallel.
    _hs_log "tansu: another 'cargo install tansu' is running; waiting for it (up to 60 min)"
    local waited=0
    while pgrep -f 'cargo install.* tansu' >/dev/null 2>&1 && ((waited < 3600)); do
      sleep 10
      waited=$((waited + 10))
    done
  fi
  if ! bin="$(_hs_tansu_bin)"; then
    _hs_log "tansu: cargo install tansu@$_hs_tansu_version --locked --features dynostore,postgres (takes 10-20 min; log: $_hs_state_dir/tansu-install.log)"
    cargo install tansu --version "$_hs_tansu_version" --locked --features dynostore,postgres \
      >>"$_hs_state_dir/tansu-install.log" 2>&1 ||
      _hs_fail tansu "cargo install tansu failed" "$_hs_state_dir/tansu-install.log"
    bin="$(_hs_tansu_bin)" || _hs_fail tansu "tansu not found after cargo install" \
      "$_hs_state_dir/tansu-install.log"
  fi
  _hs_tansu_cmd="$bin"

  if _hs_port_open 9092; then
    _hs_log "tansu: port 9092 already answers"
    return 0
  fi
  local pid
  pid="$(cat "$_hs_state_dir/tansu.pid" 2>/dev/null || true)"
  if _hs_pid_matches "$pid" tansu; then
    _hs_log "tansu: pid $pid exists but 9092 does not answer; restarting it"
    kill "$pid" 2>/dev/null || true
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
  fi
  _hs_log "tansu: starting broker on 127.0.0.1:9092 (memory storage)"
  echo "=== $(date -Is) starting $bin broker" >>"$_hs_state_dir/tansu.log"
  nohup setsid "$bin" broker \
    --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ \
    </dev/null >>"$_hs_state_dir/tansu.log" 2>&1 &
  echo $! >"$_hs_state_dir/tansu.pid"
}

_hs_tansu_wait() {
  local deadline=$((SECONDS + _hs_timeout)) pid
  pid="$(cat "$_hs_state_dir/tansu.pid" 2>/dev/null || true)"
  until _hs_port_open 9092; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && ! _hs_port_open 9092; then
      _hs_fail tansu "the tansu broker process (pid $pid) exited" "$_hs_state_dir/tansu.log"
    fi
    if ((SECONDS >= deadline)); then
      _hs_fail tansu "port 127.0.0.1:9092 not answering after ${_hs_timeout}s" "$_hs_state_dir/tansu.log"
    fi
    sleep 0.3
  done
  until _hs_tansu_metadata_ok; do
    if ((SECONDS >= deadline)); then
      _hs_fail tansu "port 9092 answers but a Kafka client (confluent_kafka) cannot fetch metadata" \
        "$_hs_state_dir/tansu-probe.log" "$_hs_state_dir/tansu.log"
    fi
    sleep 1
  done
  _hs_log "tansu: ready (kafka 127.0.0.1:9092, $("$_hs_tansu_cmd" --version 2>/dev/null | head -n1))"
}

_hs_pidfile_stop() {
  local name="$1" pattern="$2" pid
  pid="$(cat "$_hs_state_dir/$name.pid" 2>/dev/null || true)"
  if _hs_pid_matches "$pid" "$pattern"; then
    _hs_log "$name: stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
  else
    _hs_log "$name: no process started by this script is running"
  fi
  rm -f "$_hs_state_dir/$name.pid"
}

# --------------------------------------------------------------------- moto --

_hs_moto_ok() {
  curl -s -o /dev/null --max-time 3 http://127.0.0.1:5000/ 2>/dev/null
}

_hs_moto_start() {
  _hs_python
  if _hs_moto_ok; then
    _hs_log "moto: already answering on 127.0.0.1:5000"
    return 0
  fi
  local pid
  pid="$(cat "$_hs_state_dir/moto.pid" 2>/dev/null || true)"
  if _hs_pid_matches "$pid" moto; then
    kill "$pid" 2>/dev/null || true
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
  fi
  _hs_log "moto: starting S3 server on 127.0.0.1:5000"
  echo "=== $(date -Is) moto server" >>"$_hs_state_dir/moto.log"
  # `python3 -m moto.server` is what `moto_server` runs; using the module of
  # the same interpreter pip installed into avoids PATH/shim surprises.
  nohup setsid "$_hs_py" -m moto.server -H 127.0.0.1 -p 5000 \
    </dev/null >>"$_hs_state_dir/moto.log" 2>&1 &
  echo $! >"$_hs_state_dir/moto.pid"
}

_hs_moto_wait() {
  local deadline=$((SECONDS + _hs_timeout)) pid
  pid="$(cat "$_hs_state_dir/moto.pid" 2>/dev/null || true)"
  until _hs_moto_ok; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && ! _hs_moto_ok; then
      _hs_fail moto "the moto server process (pid $pid) exited" "$_hs_state_dir/moto.log"
    fi
    if ((SECONDS >= deadline)); then
      _hs_fail moto "http://127.0.0.1:5000/ not answering after ${_hs_timeout}s" "$_hs_state_dir/moto.log"
    fi
    sleep 0.3
  done
  _hs_log "moto: ready (s3 http://127.0.0.1:5000)"
}

# ------------------------------------------------------------------ actions --

# _hs_enabled pg|rabbit|tansu|moto: false when listed in HINDSIGHT_SERVICES_SKIP.
_hs_svc_name() {
  case "$1" in
    pg) echo postgres ;;
    rabbit) echo rabbitmq ;;
    *) echo "$1" ;;
  esac
}

_hs_enabled() {
  local name skip="${HINDSIGHT_SERVICES_SKIP:-}"
  name="$(_hs_svc_name "$1")"
  skip=" ${skip//,/ } "
  if [[ "$skip" == *" $name "* ]]; then
    return 1
  fi
}

_hs_up() {
  _hs_timeout="${HINDSIGHT_SERVICES_TIMEOUT:-120}"
  local tool
  for tool in curl timeout setsid; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      _hs_apt_install curl coreutils util-linux
      break
    fi
  done
  # Installs first (slowest, may need apt/pip/cargo), then launch everything,
  # then wait for all of them, so the services boot in parallel.
  _hs_ensure_python_packages
  _hs_ensure_nextest
  _hs_ensure_web_tools
  local svc
  for svc in pg rabbit tansu moto; do
    if _hs_enabled "$svc"; then
      "_hs_${svc}_start"
    else
      _hs_log "$(_hs_svc_name "$svc"): skipped (HINDSIGHT_SERVICES_SKIP)"
    fi
  done
  for svc in pg rabbit tansu moto; do
    if _hs_enabled "$svc"; then "_hs_${svc}_wait"; fi
  done
  _hs_log "all services ready in $((SECONDS - _hs_t0))s"
}

_hs_status() {
  local rc=0
  if pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; then echo "postgres  up    127.0.0.1:5432"; else echo "postgres  DOWN  127.0.0.1:5432"; rc=1; fi
  if _hs_port_open 5672; then echo "rabbitmq  up    127.0.0.1:5672"; else echo "rabbitmq  DOWN  127.0.0.1:5672"; rc=1; fi
  if _hs_port_open 9092; then echo "tansu     up    127.0.0.1:9092"; else echo "tansu     DOWN  127.0.0.1:9092"; rc=1; fi
  if _hs_moto_ok; then echo "moto      up    127.0.0.1:5000"; else echo "moto      DOWN  127.0.0.1:5000"; rc=1; fi
  return $rc
}

_hs_stop() {
  _hs_pidfile_stop tansu tansu
  _hs_pidfile_stop moto moto
  _hs_rabbit_stop
  _hs_pg_stop
}

_hs_summary() {
  echo "Hindsight test services are up (state dir: $_hs_state_dir):"
  _hs_print_env | sed 's/^/  /'
}

# Child-process entry point: does the real work with `set -euo pipefail`.
_hs_main() {
  set -euo pipefail
  _hs_t0=$SECONDS
  mkdir -p "$_hs_state_dir"
  _hs_export_env
  local cmd="${1:-up}"
  case "$cmd" in
    up | start)
      # Serialise concurrent runs. `flock -o` keeps the lock in the flock
      # process only, so daemons started below do not inherit it.
      if [[ -z "${_HS_LOCKED:-}" ]] && command -v flock >/dev/null 2>&1; then
        _HS_LOCKED=1 exec flock -o -w 3600 "$_hs_state_dir/.lock" bash "$_hs_self" "$cmd"
      fi
      _hs_up
      _hs_summary
      ;;
    env) _hs_print_env ;;
    status) _hs_status ;;
    stop) _hs_stop ;;
    -h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$_hs_self" ;;
    *)
      echo "usage: $0 [up|env|status|stop]" >&2
      exit 2
      ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: run in a child bash (so errors cannot kill the caller's shell),
  # then export the variables into the caller.
  _hs_export_env
  HINDSIGHT_SERVICES_DIR="$_hs_state_dir" \
    HINDSIGHT_SERVICES_SKIP="${HINDSIGHT_SERVICES_SKIP:-}" \
    bash "$_hs_self" up || return $?
else
  _hs_main "$@"
fi
