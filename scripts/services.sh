#!/usr/bin/env bash
# Install (if missing) and start (if not already answering) the real services
# the Hindsight test suite talks to, all bound to 127.0.0.1:
#
#   PostgreSQL  127.0.0.1:5432  role/password hindsight, database hindsight_test
#   RabbitMQ    127.0.0.1:5672  AMQP (guest/guest), 5552 streams, 15672 management,
#               127.0.0.1:5671  AMQPS: TLS with server.pem; PLAIN (guest/guest) or
#                               EXTERNAL with client.pem (user hindsight-client)
#   Tansu       127.0.0.1:9092  Kafka-protocol broker, in-memory storage
#   moto        127.0.0.1:5000  S3-compatible server
#
# and the secured Kafka set ("secure" in HINDSIGHT_SERVICES_SKIP): one Tansu
# broker per port, TLS by stunnel in front of it, SCRAM user hindsight /
# hindsight-secret (SHA-256 and SHA-512), certificates from
# scripts/tls-fixtures.sh in $HINDSIGHT_SERVICES_DIR/tls:
#
#   127.0.0.1:9192  SASL_PLAINTEXT  tansu-sasl (SCRAM users in PostgreSQL)
#   127.0.0.1:9293  SSL             stunnel -> tansu-ssl 127.0.0.1:9292
#   127.0.0.1:9393  SASL_SSL        stunnel -> tansu-sasl-ssl 127.0.0.1:9392
#   127.0.0.1:9493  SSL + required client certificate from ca.pem (mTLS)
#                                   stunnel -> tansu-mtls 127.0.0.1:9492
#   127.0.0.1:9593  SSL, certificate for DNS:wrong.example only -> tansu-ssl
#   127.0.0.1:9693  SSL, expired server certificate -> tansu-ssl
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
#   scripts/services.sh stop     stop what this script started (except the
#                                services in HINDSIGHT_SERVICES_SKIP)
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
#                               (postgres rabbitmq tansu moto secure); tests
#                               that need a skipped service will fail. `secure`
#                               needs PostgreSQL (it keeps the SCRAM users).

# ---------------------------------------------------------------------------
# Everything below is wrapped in functions so that sourcing this file only
# defines them and exports the variables; the real work always happens in a
# child bash process (under a lock), so `set -e` or `exit` never leaks into a
# shell that sourced us.

_hs_self="${BASH_SOURCE[0]}"
_hs_state_dir="${HINDSIGHT_SERVICES_DIR:-$HOME/.cache/hindsight/services}"
# Certificate fixtures (functions only; sets _hs_tls_dir).
# shellcheck source-path=SCRIPTDIR source=tls-fixtures.sh
source "$(dirname "$_hs_self")/tls-fixtures.sh"

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
  export HINDSIGHT_TEST_TLS_DIR="$_hs_tls_dir"
  export HINDSIGHT_TEST_KAFKA_SASL_BROKERS="127.0.0.1:9192"
  export HINDSIGHT_TEST_KAFKA_SSL_BROKERS="127.0.0.1:9293"
  export HINDSIGHT_TEST_KAFKA_SASL_SSL_BROKERS="127.0.0.1:9393"
  export HINDSIGHT_TEST_KAFKA_MTLS_BROKERS="127.0.0.1:9493"
  export HINDSIGHT_TEST_KAFKA_WRONG_HOST_BROKERS="127.0.0.1:9593"
  export HINDSIGHT_TEST_KAFKA_EXPIRED_BROKERS="127.0.0.1:9693"
  export HINDSIGHT_TEST_KAFKA_USER="hindsight"
  export HINDSIGHT_TEST_KAFKA_PASSWORD="hindsight-secret"
  export HINDSIGHT_TEST_AMQPS_URL="amqps://guest:guest@127.0.0.1:5671/%2f"
}

_hs_print_env() {
  local v
  for v in HINDSIGHT_TEST_POSTGRES_URL HINDSIGHT_TEST_KAFKA_BROKERS \
    HINDSIGHT_TEST_AMQP_URL HINDSIGHT_TEST_S3_ENDPOINT AWS_ACCESS_KEY_ID \
    AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION HINDSIGHT_TEST_SERVICES_DIR HINDSIGHT_WEB_TEST_DIR \
    HINDSIGHT_TEST_TLS_DIR HINDSIGHT_TEST_KAFKA_SASL_BROKERS HINDSIGHT_TEST_KAFKA_SSL_BROKERS \
    HINDSIGHT_TEST_KAFKA_SASL_SSL_BROKERS HINDSIGHT_TEST_KAFKA_MTLS_BROKERS \
    HINDSIGHT_TEST_KAFKA_WRONG_HOST_BROKERS HINDSIGHT_TEST_KAFKA_EXPIRED_BROKERS \
    HINDSIGHT_TEST_KAFKA_USER HINDSIGHT_TEST_KAFKA_PASSWORD HINDSIGHT_TEST_AMQPS_URL; do
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

# _hs_ensure_debs PKG...: apt-get install the PKGs dpkg does not list as
# installed (nothing at all when every one is there).
_hs_ensure_debs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    _hs_apt_install "${missing[@]}"
  fi
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
  missing="$("$_hs_py" - duckdb pyarrow polars confluent_kafka fastavro avro jsonschema authlib cachetools grpc_tools google.type boto3 moto flask flask_cors openapi_spec_validator pyiceberg sqlalchemy psycopg2 cryptography <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
)" || missing="duckdb pyarrow polars confluent_kafka grpc_tools boto3 moto openapi_spec_validator pyiceberg"
  for m in $missing; do
    case "$m" in
      # With the Schema Registry serializers (schema-aware payload tests):
      # fastavro/avro, protobuf, jsonschema, and the client's httpx2/authlib/cachetools.
      confluent_kafka | fastavro | avro | jsonschema | authlib | cachetools)
        pkgs+=("confluent-kafka[avro,protobuf,json,schemaregistry]") ;;
      # protoc for tests/support/proto (python -m grpc_tools.protoc).
      grpc_tools) pkgs+=("grpcio-tools") ;;
      # google/type/*.proto and their modules (a bundled import in orders.proto).
      google.type) pkgs+=("googleapis-common-protos") ;;
      moto | flask | flask_cors) pkgs+=("moto[server]") ;;
      openapi_spec_validator) pkgs+=("openapi-spec-validator") ;;
      # RSA keys and signatures of the test JWTs (tests/support/jwt_sign.py).
      cryptography) pkgs+=("cryptography") ;;
      # Outside reader of the Iceberg tables, through the SQL catalog.
      pyiceberg | sqlalchemy | psycopg2) pkgs+=("pyiceberg[sql-sqlite,sql-postgres,pyarrow]") ;;
      *) pkgs+=("$m") ;;
    esac
  done
  if [[ ${#pkgs[@]} -gt 0 ]]; then
    # shellcheck disable=SC2207
    pkgs=($(printf '%s\n' "${pkgs[@]}" | sort -u))
    _hs_pip_install "${pkgs[@]}"
  fi
}

# What the Rust build needs from the system: a C toolchain and make
# (librdkafka, zstd and SQLite are compiled from source), and OpenSSL's
# headers with pkg-config (TLS in rdkafka and lapin links the system's).
_hs_ensure_build_deps() {
  _hs_ensure_debs build-essential libssl-dev pkg-config
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

_hs_rabbit_plugins="rabbitmq_stream rabbitmq_management rabbitmq_auth_mechanism_ssl"

_hs_rabbit_plugins_in_file() {
  local f=/etc/rabbitmq/enabled_plugins
  [[ -r "$f" ]] && grep -q rabbitmq_stream "$f" && grep -q 'rabbitmq_management[],. ]' "$f" &&
    grep -q rabbitmq_auth_mechanism_ssl "$f"
}

# The broker runs as user rabbitmq, which cannot read the state dir under
# $HOME: give it its own copies of the CA, certificate and key. Returns 0
# when a file changed (the node must restart to load it), 1 otherwise.
_hs_rabbit_tls_dir=/etc/rabbitmq/tls
_hs_rabbit_install_tls() {
  local f changed=1
  _hs_as_root install -d -o rabbitmq -g rabbitmq -m 0750 "$_hs_rabbit_tls_dir"
  for f in ca.pem server.pem server.key; do
    if ! _hs_as_root cmp -s "$_hs_tls_dir/$f" "$_hs_rabbit_tls_dir/$f"; then
      _hs_as_root install -o rabbitmq -g rabbitmq -m 0640 "$_hs_tls_dir/$f" "$_hs_rabbit_tls_dir/$f"
      changed=0
    fi
  done
  return $changed
}

_hs_rabbit_write_conf() {
  _hs_write_if_changed /etc/rabbitmq/conf.d/90-hindsight.conf <<EOF
# Managed by Hindsight scripts/services.sh: loopback-only listeners.
listeners.tcp.1 = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
stream.listeners.tcp.1 = 127.0.0.1:5552
stream.advertised_host = 127.0.0.1
stream.advertised_port = 5552
# AMQPS with the test certificates (scripts/tls-fixtures.sh). A client
# certificate is verified when offered but not required, so PLAIN over TLS
# works without one; EXTERNAL logs in as the certificate's CN.
listeners.ssl.1 = 127.0.0.1:5671
ssl_options.cacertfile = $_hs_rabbit_tls_dir/ca.pem
ssl_options.certfile = $_hs_rabbit_tls_dir/server.pem
ssl_options.keyfile = $_hs_rabbit_tls_dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
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
    _hs_log "rabbitmq: enabling plugins $_hs_rabbit_plugins"
    # shellcheck disable=SC2086
    if _hs_port_open 5672; then
      rabbitmq-plugins enable $_hs_rabbit_plugins \
        >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
        _hs_rabbit_fail "rabbitmq-plugins enable failed"
    else
      rabbitmq-plugins enable --offline $_hs_rabbit_plugins \
        >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
        _hs_rabbit_fail "rabbitmq-plugins enable --offline failed"
    fi
  fi
  local conf_changed=0
  if _hs_rabbit_install_tls; then conf_changed=1; fi
  if _hs_rabbit_write_conf; then conf_changed=1; fi

  if _hs_port_open 5672; then
    if [[ $conf_changed -eq 0 ]]; then
      _hs_log "rabbitmq: already running"
      _hs_rabbit_started=0
      return 0
    fi
    _hs_log "rabbitmq: restarting to apply /etc/rabbitmq/conf.d/90-hindsight.conf and $_hs_rabbit_tls_dir"
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
    # shellcheck disable=SC2086
    rabbitmq-plugins enable $_hs_rabbit_plugins \
      >>"$_hs_state_dir/rabbitmq.log" 2>&1 || true
    until _hs_port_open 5552; do
      if ((SECONDS >= deadline)); then
        _hs_rabbit_fail "stream port 127.0.0.1:5552 does not answer (rabbitmq_stream plugin)"
      fi
      sleep 0.5
    done
  fi
  _hs_rabbit_tls_wait "$deadline"
  _hs_log "rabbitmq: ready (amqp 5672, amqps 5671, stream 5552, management 15672)"
}

# A TLS handshake on 5671 that verifies the server certificate against ca.pem.
_hs_rabbit_tls_handshake_ok() {
  timeout 10 openssl s_client -connect 127.0.0.1:5671 -CAfile "$_hs_tls_dir/ca.pem" \
    -verify_return_error </dev/null >>"$_hs_state_dir/rabbitmq-tls-probe.log" 2>&1
}

# HTTP status of a management API GET (000 when it does not answer).
_hs_rabbit_api_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u guest:guest \
    "http://127.0.0.1:15672/api/$1" 2>/dev/null || true
}

# The EXTERNAL user: the client certificate's CN, without a password, with
# full permissions on vhost /.
_hs_rabbit_ensure_cert_user() {
  local user=hindsight-client
  if [[ "$(_hs_rabbit_api_status "users/$user")" == 200 ]] &&
    [[ "$(_hs_rabbit_api_status "permissions/%2F/$user")" == 200 ]]; then
    return 0
  fi
  _hs_log "rabbitmq: creating user $user (no password, EXTERNAL login with client.pem)"
  {
    echo "=== $(date -Is) creating rabbitmq user $user"
    if ! rabbitmqctl -q list_users 2>/dev/null | awk '{print $1}' | grep -qx "$user"; then
      rabbitmqctl add_user "$user" "unused-$(openssl rand -hex 16)"
    fi
    rabbitmqctl clear_password "$user" &&
      rabbitmqctl set_permissions -p / "$user" '.*' '.*' '.*'
  } >>"$_hs_state_dir/rabbitmq.log" 2>&1 ||
    _hs_rabbit_fail "creating the rabbitmq user $user failed"
}

# With pika installed (this script does not install it): log in over TLS
# with PLAIN (guest) and with EXTERNAL (client.pem).
_hs_rabbit_pika_ok() {
  timeout 60 "$_hs_py" - "$_hs_tls_dir" <<'PY' >>"$_hs_state_dir/rabbitmq-tls-probe.log" 2>&1
import ssl, sys
import pika
tls = sys.argv[1]
def connect(creds, client_cert):
    ctx = ssl.create_default_context(cafile=f"{tls}/ca.pem")
    if client_cert:
        ctx.load_cert_chain(f"{tls}/client.pem", f"{tls}/client.key")
    params = pika.ConnectionParameters("127.0.0.1", 5671, "/", creds,
                                       ssl_options=pika.SSLOptions(ctx, "localhost"),
                                       connection_attempts=1, socket_timeout=10)
    conn = pika.BlockingConnection(params)
    conn.channel().queue_declare(queue="", exclusive=True)
    conn.close()
connect(pika.PlainCredentials("guest", "guest"), False)
print("amqps PLAIN guest: ok")
connect(pika.credentials.ExternalCredentials(), True)
print("amqps EXTERNAL hindsight-client: ok")
PY
}

# _hs_rabbit_tls_wait DEADLINE: the AMQPS listener answers a verified TLS
# handshake, the certificate user exists, and (with pika) both logins work.
_hs_rabbit_tls_wait() {
  local deadline="$1"
  until _hs_port_open 5671 && _hs_rabbit_tls_handshake_ok; do
    if ((SECONDS >= deadline)); then
      _hs_fail rabbitmq "AMQPS port 127.0.0.1:5671 does not complete a TLS handshake verified with $_hs_tls_dir/ca.pem" \
        "$_hs_state_dir/rabbitmq-tls-probe.log" "$_hs_state_dir/rabbitmq.log"
    fi
    sleep 0.5
  done
  _hs_rabbit_ensure_cert_user
  _hs_python
  if "$_hs_py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pika") is None)' 2>/dev/null; then
    until _hs_rabbit_pika_ok; do
      if ((SECONDS >= deadline)); then
        _hs_fail rabbitmq "AMQPS login over TLS (PLAIN guest or EXTERNAL with client.pem) fails" \
          "$_hs_state_dir/rabbitmq-tls-probe.log" "$_hs_state_dir/rabbitmq.log"
      fi
      sleep 1
    done
  else
    _hs_log "rabbitmq: pika not installed; AMQPS checked by TLS handshake only"
  fi
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

# Sets _hs_tansu_cmd, installing tansu first when it is missing.
_hs_tansu_ensure_bin() {
  local bin
  if [[ -n "${_hs_tansu_cmd:-}" ]]; then return 0; fi
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
}

_hs_tansu_start() {
  _hs_tansu_ensure_bin
  local bin="$_hs_tansu_cmd"
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

# ------------------------------------------------------ secured Kafka set --
#
# Tansu 0.6.0 ignores its own --cert/--key, so TLS comes from stunnel in
# front of a plain Tansu broker. Clients connect to whatever host:port the
# broker advertises, so every TLS port has its own Tansu process advertising
# that stunnel port. SASL (--authentication) notes, from tansu 0.6.0's source:
#  - SCRAM credentials live in the storage engine, and only the postgres
#    engine keeps them: the memory/s3 engine (dynostore) drops
#    AlterUserScramCredentials and finds no user, so every login fails. The
#    two SASL brokers therefore use a PostgreSQL database each (reset on every
#    start, like memory://), with the schema below.
#  - An authenticated broker answers nothing but ApiVersions/SaslHandshake/
#    SaslAuthenticate before a login, and `tansu user create` / `tansu topic
#    create` cannot log in. Users are made through a short-lived broker
#    without --authentication on the same database and cluster id
#    (127.0.0.1:9191), then the SASL broker sees them at once. Topics are
#    made by the clients (e.g. AdminClient with the SASL settings); a produce
#    to a missing topic does not create it.
#  - PLAIN: tansu-auth's check accepts any password for PLAIN, but the
#    released binary's rsasl is built without the PLAIN mechanism, so a PLAIN
#    handshake is refused (NoSharedMechanism). Use SCRAM-SHA-256/512.

_hs_secure_user=hindsight
_hs_secure_password=hindsight-secret
_hs_secure_admin_port=9191
_hs_stunnel_conf="$_hs_state_dir/stunnel.conf"

# name, listen port, advertised port, kind (sasl: PostgreSQL storage and
# --authentication; plain: memory storage).
_hs_secure_brokers=(
  "tansu-sasl 9192 9192 sasl"
  "tansu-ssl 9292 9293 plain"
  "tansu-sasl-ssl 9392 9393 sasl"
  "tansu-mtls 9492 9493 plain"
)
# stunnel service, accept port, backend port, certificate name, mTLS?
_hs_stunnel_services=(
  "kafka-ssl 9293 9292 server no"
  "kafka-sasl-ssl 9393 9392 server no"
  "kafka-mtls 9493 9492 server yes"
  "kafka-wrong-host 9593 9292 wrong-host-server no"
  "kafka-expired 9693 9292 expired-server no"
)

_hs_secure_db() { echo "hindsight_${1//-/_}"; }
_hs_secure_db_url() {
  echo "postgres://hindsight:hindsight@127.0.0.1:5432/$(_hs_secure_db "$1")?sslmode=disable"
}

# Tables and columns of Tansu 0.6.0's postgres engine. The crate ships its
# schema only in SQLite form (tansu-storage src/ddl); this is that schema with
# the PostgreSQL types the engine binds (tansu-storage src/pg.rs, src/sql).
_hs_tansu_pg_schema() {
  cat <<'SQL'
create table cluster (
  id int generated by default as identity primary key,
  name text not null unique,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null);
create table consumer_group (
  id int generated by default as identity primary key,
  cluster int references cluster (id) on delete cascade not null,
  name text not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (cluster, name));
create table producer (
  id bigint generated by default as identity primary key,
  cluster int references cluster (id) on delete cascade not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null);
create table scram_credential (
  id int generated by default as identity primary key,
  cluster int references cluster (id) on delete cascade not null,
  username text not null,
  mechanism int not null,
  salt bytea not null,
  iterations int not null,
  stored_key bytea not null,
  server_key bytea not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (cluster, username, mechanism));
create table topic (
  id int generated by default as identity primary key,
  cluster int references cluster (id) on delete cascade not null,
  name text not null,
  uuid uuid not null,
  partitions int not null,
  replication_factor int not null,
  is_internal bool default false not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (cluster, name));
create table consumer_group_detail (
  id int generated by default as identity primary key,
  consumer_group int references consumer_group (id) on delete cascade,
  e_tag uuid not null,
  detail jsonb not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (consumer_group));
create table producer_epoch (
  id int generated by default as identity primary key,
  producer bigint references producer (id) on delete cascade,
  epoch smallint default 0 not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (producer, epoch));
create table topic_configuration (
  id int generated by default as identity primary key,
  topic int references topic (id) on delete cascade,
  name text not null,
  value text,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (topic, name));
create table topition (
  id int generated by default as identity primary key,
  topic int references topic (id) on delete cascade,
  partition int,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (topic, partition));
create table txn (
  id int generated by default as identity primary key,
  cluster int references cluster (id) on delete cascade,
  name text,
  producer bigint references producer (id) on delete cascade,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (cluster, name));
create table consumer_offset (
  id int generated by default as identity primary key,
  consumer_group int references consumer_group (id) on delete cascade,
  topition int references topition (id) on delete cascade,
  committed_offset bigint,
  leader_epoch int,
  timestamp timestamptz,
  metadata text,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (consumer_group, topition));
create table record (
  topition int references topition (id) on delete cascade,
  offset_id bigint not null,
  attributes smallint,
  producer_id bigint,
  producer_epoch smallint,
  timestamp timestamptz,
  k bytea,
  v bytea,
  transaction_id xid8 default pg_current_xact_id() not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  primary key (topition, offset_id));
create table header (
  id bigint generated by default as identity primary key,
  topition int,
  offset_id bigint,
  k bytea,
  v bytea,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  foreign key (topition, offset_id) references record (topition, offset_id) on delete cascade);
-- Not in Tansu's own schema. Without it every fetch scans every header of
-- every topic (fetches slow down as the broker fills), and the headers of a
-- record come back in no set order: header_fetch.sql has no ORDER BY, and
-- only an index scan returns them in insertion order.
create index header_record on header (topition, offset_id, id);
-- Once deleted topics leave free space, a bitmap or sequential scan of
-- header (or a hash join over it) returns a record's headers in page order,
-- which is not the order they were produced in; CI once saw a replayed
-- record's headers rotated so. The planner is kept on the index.
do $$ begin
  execute format('alter database %I set enable_seqscan = off', current_database());
  execute format('alter database %I set enable_bitmapscan = off', current_database());
  execute format('alter database %I set enable_hashjoin = off', current_database());
end $$;
create table producer_detail (
  id int generated by default as identity primary key,
  producer_epoch int references producer_epoch (id) on delete cascade,
  topition int references topition (id) on delete cascade,
  sequence int default 0 not null,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (producer_epoch, topition));
create table txn_detail (
  id int generated by default as identity primary key,
  "transaction" int references txn (id) on delete cascade,
  producer_epoch int references producer_epoch (id) on delete cascade,
  transaction_timeout_ms int not null,
  started_at timestamptz,
  status text,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique ("transaction", producer_epoch));
create table watermark (
  id int generated by default as identity primary key,
  topition int references topition (id) on delete cascade unique,
  low bigint,
  high bigint,
  stable bigint,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null);
create table txn_offset_commit (
  id int generated by default as identity primary key,
  txn_detail int references txn_detail (id) on delete cascade,
  consumer_group int references consumer_group (id) on delete cascade,
  generation_id int,
  member_id text,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (txn_detail, consumer_group));
create table txn_topition (
  id int generated by default as identity primary key,
  txn_detail int references txn_detail (id) on delete cascade,
  topition int references topition (id) on delete cascade,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (txn_detail, topition));
create table txn_offset_commit_tp (
  id int generated by default as identity primary key,
  offset_commit int references txn_offset_commit (id) on delete cascade,
  topition int references topition (id) on delete cascade,
  committed_offset bigint,
  leader_epoch int,
  metadata text,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null,
  unique (offset_commit, topition));
create table txn_produce_offset (
  id int generated by default as identity primary key,
  txn_topition int references txn_topition (id) on delete cascade unique,
  offset_start bigint,
  offset_end bigint,
  last_updated timestamptz default current_timestamp not null,
  created_at timestamptz default current_timestamp not null);
SQL
}

# _hs_secure_reset_db NAME: a fresh database with the Tansu schema.
_hs_secure_reset_db() {
  local name="$1" db
  db="$(_hs_secure_db "$name")"
  {
    echo "=== $(date -Is) recreating database $db"
    PGCONNECT_TIMEOUT=5 psql "$_hs_pg_url" -XAtq -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER hindsight" &&
      _hs_tansu_pg_schema | PGCONNECT_TIMEOUT=5 psql "${_hs_pg_url%/*}/$db" -Xq -v ON_ERROR_STOP=1
  } >>"$_hs_state_dir/$name.log" 2>&1 ||
    _hs_fail "$name" "creating its PostgreSQL database $db failed" "$_hs_state_dir/$name.log"
}

# _hs_secure_broker_start NAME LISTEN ADVERTISED KIND: start one Tansu of the
# secured set unless its port already answers.
_hs_secure_broker_start() {
  local name="$1" listen="$2" adv="$3" kind="$4" pid storage args=() schema
  schema="$(_hs_tansu_pg_schema | sha256sum | cut -c1-16)"
  if _hs_port_open "$listen"; then
    # A SASL broker whose database was made with an older schema is
    # restarted (which recreates its database).
    if [[ "$kind" != sasl ]] || [[ "$(cat "$_hs_state_dir/$name.schema" 2>/dev/null || true)" == "$schema" ]]; then
      _hs_log "$name: port $listen already answers"
      return 0
    fi
    _hs_log "$name: its database schema changed; restarting it"
  fi
  pid="$(cat "$_hs_state_dir/$name.pid" 2>/dev/null || true)"
  if _hs_pid_matches "$pid" "listener-url tcp://127.0.0.1:$listen"; then
    _hs_log "$name: stopping pid $pid to restart it"
    kill "$pid" 2>/dev/null || true
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
    local waited=0
    while _hs_port_open "$listen" && ((waited < 20)); do
      sleep 0.25
      waited=$((waited + 1))
    done
  fi
  if _hs_port_open "$listen"; then
    _hs_fail "$name" "127.0.0.1:$listen still answers, but not by a broker this script started; stop it" \
      "$_hs_state_dir/$name.log"
  fi
  if [[ "$kind" == sasl ]]; then
    _hs_secure_reset_db "$name"
    echo "$schema" >"$_hs_state_dir/$name.schema"
    storage="$(_hs_secure_db_url "$name")"
    args=(--authentication)
    _hs_secure_fresh+=("$name")
  else
    storage=memory://tansu/
  fi
  _hs_log "$name: starting broker on 127.0.0.1:$listen, advertised 127.0.0.1:$adv (${storage%%:*} storage${args[*]:+, SASL})"
  echo "=== $(date -Is) starting $_hs_tansu_cmd broker ($name)" >>"$_hs_state_dir/$name.log"
  nohup setsid "$_hs_tansu_cmd" broker "${args[@]}" \
    --cluster-id "$name" \
    --listener-url "tcp://127.0.0.1:$listen" \
    --advertised-listener-url "tcp://127.0.0.1:$adv" \
    --storage-engine "$storage" \
    </dev/null >>"$_hs_state_dir/$name.log" 2>&1 &
  echo $! >"$_hs_state_dir/$name.pid"
}

# _hs_secure_create_users NAME...: SCRAM-SHA-256 and -512 credentials for
# hindsight/hindsight-secret in each SASL broker's cluster, made through a
# temporary broker without --authentication on the same database.
_hs_secure_create_users() {
  local name pid m log="$_hs_state_dir/tansu-users.log" port="$_hs_secure_admin_port" deadline
  for name in "$@"; do
    _hs_log "$name: creating SCRAM user $_hs_secure_user (SHA-256, SHA-512)"
    if _hs_port_open "$port"; then
      _hs_fail "$name" "127.0.0.1:$port (temporary broker for creating users) is already in use" "$log"
    fi
    echo "=== $(date -Is) temporary broker for $name users" >>"$log"
    nohup setsid "$_hs_tansu_cmd" broker --cluster-id "$name" \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$(_hs_secure_db_url "$name")" </dev/null >>"$log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + 30))
    until _hs_port_open "$port"; do
      if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
        kill "$pid" 2>/dev/null || true
        _hs_fail "$name" "the temporary broker for creating users did not come up on $port" "$log"
      fi
      sleep 0.2
    done
    for m in scram256 scram512; do
      if ! timeout 30 "$_hs_tansu_cmd" user create "$_hs_secure_user" "$_hs_secure_password" \
        --broker "tcp://127.0.0.1:$port" --mechanism "$m" >>"$log" 2>&1; then
        kill "$pid" 2>/dev/null || true
        _hs_fail "$name" "tansu user create $_hs_secure_user --mechanism $m failed" "$log"
      fi
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# Write the stunnel configuration; returns 0 when it changed.
_hs_stunnel_write_conf() {
  local spec svc accept connect cert mtls content
  content="; Managed by Hindsight scripts/services.sh (fixtures $(_hs_tls_fingerprint)).
foreground = yes
pid =
syslog = no
debug = notice"
  for spec in "${_hs_stunnel_services[@]}"; do
    read -r svc accept connect cert mtls <<<"$spec"
    content+="

[$svc]
accept = 127.0.0.1:$accept
connect = 127.0.0.1:$connect
cert = $_hs_tls_dir/$cert.pem
key = $_hs_tls_dir/$cert.key"
    if [[ "$mtls" == yes ]]; then
      content+="
CAfile = $_hs_tls_dir/ca.pem
verifyChain = yes
requireCert = yes"
    fi
  done
  if [[ -f "$_hs_stunnel_conf" ]] && [[ "$(cat "$_hs_stunnel_conf")" == "$content" ]]; then
    return 1
  fi
  printf '%s\n' "$content" >"$_hs_stunnel_conf"
}

_hs_stunnel_ports() {
  local spec svc accept rest
  for spec in "${_hs_stunnel_services[@]}"; do
    read -r svc accept rest <<<"$spec"
    echo "$accept"
  done
}

_hs_stunnel_start() {
  local bin pid conf_changed=0 port all_open=1 deadline
  bin="$(command -v stunnel4 || command -v stunnel || true)"
  [[ -n "$bin" ]] || _hs_fail stunnel "stunnel4 is not installed" "$_hs_state_dir/apt.log"
  if _hs_stunnel_write_conf; then conf_changed=1; fi
  for port in $(_hs_stunnel_ports); do
    _hs_port_open "$port" || all_open=0
  done
  pid="$(cat "$_hs_state_dir/stunnel.pid" 2>/dev/null || true)"
  if _hs_pid_matches "$pid" stunnel; then
    if [[ $conf_changed -eq 0 && $all_open -eq 1 ]]; then
      _hs_log "stunnel: already running (pid $pid)"
      return 0
    fi
    _hs_log "stunnel: restarting pid $pid to apply $_hs_stunnel_conf"
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  elif [[ $all_open -eq 1 && $conf_changed -eq 0 ]]; then
    _hs_log "stunnel: ports $(_hs_stunnel_ports | paste -sd' ') already answer; using them"
    return 0
  fi
  for port in $(_hs_stunnel_ports); do
    if _hs_port_open "$port"; then
      _hs_fail stunnel "127.0.0.1:$port is already in use by a process this script did not start" \
        "$_hs_state_dir/stunnel.log"
    fi
  done
  _hs_log "stunnel: starting TLS ports $(_hs_stunnel_ports | paste -sd' ')"
  echo "=== $(date -Is) starting $bin $_hs_stunnel_conf" >>"$_hs_state_dir/stunnel.log"
  nohup setsid "$bin" "$_hs_stunnel_conf" </dev/null >>"$_hs_state_dir/stunnel.log" 2>&1 &
  echo $! >"$_hs_state_dir/stunnel.pid"
}

_hs_secure_start() {
  _hs_ensure_debs stunnel4
  command -v psql >/dev/null 2>&1 || _hs_apt_install postgresql-client
  _hs_tansu_ensure_bin
  _hs_secure_fresh=()
  local spec name listen adv kind
  # The SASL brokers need PostgreSQL, so _hs_secure_wait starts those.
  for spec in "${_hs_secure_brokers[@]}"; do
    read -r name listen adv kind <<<"$spec"
    if [[ "$kind" == plain ]]; then
      _hs_secure_broker_start "$name" "$listen" "$adv" "$kind"
    fi
  done
  _hs_stunnel_start
}

# Every broker of the set with the client settings it needs: metadata
# names the advertised TLS/SASL port, a wrong SCRAM password and an mTLS
# client without a certificate are refused, and ports 9593/9693 fail the
# certificate check for the reason they exist.
_hs_secure_probe() {
  _hs_python
  timeout 60 "$_hs_py" - "$_hs_tls_dir" "$_hs_secure_user" "$_hs_secure_password" \
    <<'PY' >>"$_hs_state_dir/secure-probe.log" 2>&1
import re, socket, ssl, sys, time
from concurrent.futures import ThreadPoolExecutor
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

tls, user, password = sys.argv[1:4]
ca = {"ssl.ca.location": f"{tls}/ca.pem"}
cert = {"ssl.certificate.location": f"{tls}/client.pem", "ssl.key.location": f"{tls}/client.key"}

def scram(mech, pw=password):
    return {"sasl.mechanism": mech, "sasl.username": user, "sasl.password": pw}

# name, port, security.protocol, settings, should it work?
kafka = [
    ("tansu-sasl SCRAM-SHA-512", 9192, "SASL_PLAINTEXT", scram("SCRAM-SHA-512"), True),
    ("tansu-sasl SCRAM-SHA-256", 9192, "SASL_PLAINTEXT", scram("SCRAM-SHA-256"), True),
    ("tansu-sasl wrong password", 9192, "SASL_PLAINTEXT", scram("SCRAM-SHA-512", "wrong-password"), False),
    ("tansu-ssl", 9293, "SSL", ca, True),
    ("tansu-sasl-ssl SCRAM-SHA-512", 9393, "SASL_SSL", {**ca, **scram("SCRAM-SHA-512")}, True),
    ("tansu-sasl-ssl SCRAM-SHA-256", 9393, "SASL_SSL", {**ca, **scram("SCRAM-SHA-256")}, True),
    ("tansu-mtls client certificate", 9493, "SSL", {**ca, **cert}, True),
    ("tansu-mtls no client certificate", 9493, "SSL", ca, False),
]

def kafka_check(check):
    name, port, protocol, settings, want = check
    errors = []
    # log_level 0: the errors reach error_cb and are summed up below.
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": protocol,
                         "error_cb": errors.append, "log_level": 0, **settings})
    deadline = time.monotonic() + 15
    while True:
        try:
            md = admin.list_topics(timeout=1)
            brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
            if brokers != [f"127.0.0.1:{port}"]:
                return name, False, f"metadata names brokers {brokers}, not 127.0.0.1:{port}"
            return name, want, f"metadata ok, broker {brokers[0]}"
        except KafkaException as e:
            admin.poll(0)
            detail = "; ".join(sorted({re.sub(r" \(after \d+ms in state \w+\)", "", err.str())
                                       for err in errors})) or e.args[0].str()
            if not want and errors:
                return name, True, f"refused as expected: {detail}"
            # A refused login does not get better by waiting (no user yet?).
            if any(err.code() == KafkaError._AUTHENTICATION for err in errors) or \
                    time.monotonic() >= deadline:
                return name, not want, f"failed: {detail}"

def tls_check(port, expect):
    ctx = ssl.create_default_context(cafile=f"{tls}/ca.pem")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                return f"tls {port}", False, "handshake verified, expected a failure"
    except ssl.SSLCertVerificationError as e:
        return f"tls {port}", expect in str(e), f"refused: {e.verify_message}"
    except OSError as e:
        return f"tls {port}", False, f"no TLS handshake: {e}"

with ThreadPoolExecutor(len(kafka) + 2) as pool:
    futures = [pool.submit(kafka_check, c) for c in kafka]
    futures.append(pool.submit(tls_check, 9593, "IP address mismatch"))
    futures.append(pool.submit(tls_check, 9693, "certificate has expired"))
    results = [f.result() for f in futures]
bad = 0
for name, ok, detail in results:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
}

_hs_secure_wait() {
  local deadline=$((SECONDS + _hs_timeout)) spec name listen adv kind pid recreated=0
  local sasl=()
  until pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      _hs_fail secure "the SASL brokers keep their users in PostgreSQL, and 127.0.0.1:5432 does not answer" \
        "$_hs_state_dir/postgres-setup.log"
    fi
    sleep 0.5
  done
  for spec in "${_hs_secure_brokers[@]}"; do
    read -r name listen adv kind <<<"$spec"
    if [[ "$kind" == sasl ]]; then
      sasl+=("$name")
      _hs_secure_broker_start "$name" "$listen" "$adv" "$kind"
    fi
  done
  for spec in "${_hs_secure_brokers[@]}"; do
    read -r name listen adv kind <<<"$spec"
    pid="$(cat "$_hs_state_dir/$name.pid" 2>/dev/null || true)"
    until _hs_port_open "$listen"; do
      if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && ! _hs_port_open "$listen"; then
        _hs_fail "$name" "the tansu broker process (pid $pid) exited" "$_hs_state_dir/$name.log"
      fi
      if ((SECONDS >= deadline)); then
        _hs_fail "$name" "port 127.0.0.1:$listen not answering after ${_hs_timeout}s" "$_hs_state_dir/$name.log"
      fi
      sleep 0.3
    done
  done
  pid="$(cat "$_hs_state_dir/stunnel.pid" 2>/dev/null || true)"
  for listen in $(_hs_stunnel_ports); do
    until _hs_port_open "$listen"; do
      if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        _hs_fail stunnel "the stunnel process (pid $pid) exited" "$_hs_state_dir/stunnel.log"
      fi
      if ((SECONDS >= deadline)); then
        _hs_fail stunnel "port 127.0.0.1:$listen not answering after ${_hs_timeout}s" "$_hs_state_dir/stunnel.log"
      fi
      sleep 0.3
    done
  done
  # Brokers started above have an empty database: give them their users.
  if [[ ${#_hs_secure_fresh[@]} -gt 0 ]]; then
    _hs_secure_create_users "${_hs_secure_fresh[@]}"
  fi
  echo "=== $(date -Is) probe" >>"$_hs_state_dir/secure-probe.log"
  until _hs_secure_probe; do
    if [[ $recreated -eq 0 ]]; then
      # A running broker whose users are gone (its database was reset by
      # hand): creating them again is an upsert, harmless where they exist.
      _hs_secure_create_users "${sasl[@]}"
      recreated=1
      continue
    fi
    if ((SECONDS >= deadline)); then
      _hs_fail secure "a Kafka client (confluent_kafka) does not get the expected answers from the secured brokers (broker logs: $_hs_state_dir/tansu-*.log)" \
        "$_hs_state_dir/secure-probe.log" "$_hs_state_dir/stunnel.log" "$_hs_state_dir/tansu-users.log"
    fi
    sleep 1
  done
  _hs_log "secure: ready (SASL 9192, SSL 9293, SASL_SSL 9393, mTLS 9493, wrong host 9593, expired 9693)"
}

_hs_secure_stop() {
  local spec name listen rest
  _hs_pidfile_stop stunnel stunnel
  for spec in "${_hs_secure_brokers[@]}"; do
    read -r name listen rest <<<"$spec"
    _hs_pidfile_stop "$name" "listener-url tcp://127.0.0.1:$listen"
  done
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

# _hs_enabled pg|rabbit|tansu|moto|secure: false when listed in
# HINDSIGHT_SERVICES_SKIP (as postgres, rabbitmq, tansu, moto or secure).
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
  _hs_ensure_build_deps
  _hs_ensure_nextest
  _hs_ensure_web_tools
  if _hs_enabled rabbit || _hs_enabled secure; then
    _hs_tls_ensure
  fi
  local svc
  for svc in pg rabbit tansu moto secure; do
    if _hs_enabled "$svc"; then
      "_hs_${svc}_start"
    else
      _hs_log "$(_hs_svc_name "$svc"): skipped (HINDSIGHT_SERVICES_SKIP)"
    fi
  done
  for svc in pg rabbit tansu moto secure; do
    if _hs_enabled "$svc"; then "_hs_${svc}_wait"; fi
  done
  _hs_log "all services ready in $((SECONDS - _hs_t0))s"
}

# _hs_status_line NAME ADDRESS CHECK...: print NAME up/DOWN ADDRESS by CHECK.
_hs_status_line() {
  local name="$1" address="$2"
  shift 2
  if "$@"; then
    printf '%-15s up    %s\n' "$name" "$address"
  else
    printf '%-15s DOWN  %s\n' "$name" "$address"
    return 1
  fi
}

_hs_pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; }

_hs_status() {
  local rc=0 line name port
  _hs_status_line postgres 127.0.0.1:5432 _hs_pg_ready || rc=1
  _hs_status_line rabbitmq 127.0.0.1:5672 _hs_port_open 5672 || rc=1
  _hs_status_line tansu 127.0.0.1:9092 _hs_port_open 9092 || rc=1
  _hs_status_line moto 127.0.0.1:5000 _hs_moto_ok || rc=1
  # The TLS/SASL ports (a port check only; `up` runs the client probes).
  for line in "rabbitmq-tls 5671" "tansu-sasl 9192" "tansu-ssl 9292" "tansu-sasl-ssl 9392" \
    "tansu-mtls 9492" "stunnel 9293" "stunnel 9393" "stunnel 9493" "stunnel 9593" "stunnel 9693"; do
    read -r name port <<<"$line"
    _hs_status_line "$name" "127.0.0.1:$port" _hs_port_open "$port" || rc=1
  done
  return $rc
}

# Stops what this script started, except the services named in
# HINDSIGHT_SERVICES_SKIP.
_hs_stop() {
  if _hs_enabled secure; then _hs_secure_stop; fi
  if _hs_enabled tansu; then _hs_pidfile_stop tansu tansu; fi
  if _hs_enabled moto; then _hs_pidfile_stop moto moto; fi
  if _hs_enabled rabbit; then _hs_rabbit_stop; fi
  if _hs_enabled pg; then _hs_pg_stop; fi
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
