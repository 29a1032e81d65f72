# shellcheck shell=bash
# Test certificates for the TLS/SASL services of scripts/services.sh, which
# sources this file (it defines functions only). Everything is made with the
# openssl CLI into $_hs_tls_dir ($HINDSIGHT_SERVICES_DIR/tls):
#
#   ca.pem / ca.key                          test CA ("Hindsight Test CA")
#   server.pem / server.key                  CN=localhost, SAN IP:127.0.0.1, DNS:localhost
#   client.pem / client.key                  CN=hindsight-client, extendedKeyUsage clientAuth
#   client-encrypted.key                     client.key as encrypted PKCS#8 (AES-256),
#                                            password "key-secret"
#   expired-client.pem / .key                CN=hindsight-client, valid 2020-01-01..2021-01-01
#   expired-server.pem / .key                server cert for 127.0.0.1/localhost, expired too
#   wrong-host-server.pem / .key             signed by the CA, SAN DNS:wrong.example only
#   other-ca.pem / other-ca.key              an unrelated CA
#   other-client.pem / other-client.key      CN=hindsight-client, signed by the other CA
#
# The set is regenerated (all of it, so it stays consistent) when a file is
# missing or a certificate that should be valid expires within 30 days.
# OpenSSL 3.0 (Debian 12) has no `x509 -not_before/-not_after`, so the
# expired certificates are signed with `openssl ca -startdate/-enddate`.

# shellcheck disable=SC2154 # _hs_state_dir (like _hs_log and _hs_fail) is services.sh's
_hs_tls_dir="$_hs_state_dir/tls"
_hs_tls_valid_days=825
_hs_tls_key_password="key-secret"

# Certificates that must stay valid (checked for expiry).
_hs_tls_live_certs=(ca server client wrong-host-server other-ca other-client)
_hs_tls_all_files=(
  ca.pem ca.key server.pem server.key client.pem client.key client-encrypted.key
  expired-client.pem expired-client.key expired-server.pem expired-server.key
  wrong-host-server.pem wrong-host-server.key other-ca.pem other-ca.key
  other-client.pem other-client.key
)

# True when every file exists and no live certificate expires within 30 days.
_hs_tls_ok() {
  local f
  for f in "${_hs_tls_all_files[@]}"; do
    [[ -s "$_hs_tls_dir/$f" ]] || return 1
  done
  for f in "${_hs_tls_live_certs[@]}"; do
    openssl x509 -noout -checkend $((30 * 24 * 3600)) -in "$_hs_tls_dir/$f.pem" \
      >/dev/null 2>&1 || return 1
  done
}

# _hs_tls_key DIR NAME: a fresh RSA key DIR/NAME.key (PKCS#8 PEM).
_hs_tls_key() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/$2.key" \
    >>"$_hs_state_dir/tls.log" 2>&1
}

# _hs_tls_ca DIR NAME CN: self-signed CA DIR/NAME.pem + DIR/NAME.key.
_hs_tls_ca() {
  local dir="$1" name="$2" cn="$3"
  _hs_tls_key "$dir" "$name" &&
    openssl req -x509 -new -sha256 -key "$dir/$name.key" -out "$dir/$name.pem" \
      -days 3650 -subj "/O=Hindsight tests/CN=$cn" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash" \
      >>"$_hs_state_dir/tls.log" 2>&1
}

# Extension lines for a server (with SAN) or client certificate.
_hs_tls_server_ext() {
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid,issuer" "subjectAltName=$1"
}
_hs_tls_client_ext() {
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid,issuer"
}

# _hs_tls_leaf DIR NAME CA CN EXTFILE: key + certificate DIR/NAME.{key,pem}
# signed by DIR/CA.{pem,key}, valid from now on.
_hs_tls_leaf() {
  local dir="$1" name="$2" ca="$3" cn="$4" ext="$5"
  _hs_tls_key "$dir" "$name" &&
    openssl req -new -sha256 -key "$dir/$name.key" -out "$dir/$name.csr" \
      -subj "/O=Hindsight tests/CN=$cn" >>"$_hs_state_dir/tls.log" 2>&1 &&
    openssl x509 -req -sha256 -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
      -CAcreateserial -days "$_hs_tls_valid_days" -extfile "$ext" -out "$dir/$name.pem" \
      >>"$_hs_state_dir/tls.log" 2>&1
}

# _hs_tls_expired_leaf DIR NAME CN EXTFILE: like _hs_tls_leaf with the test
# CA, but valid only from 2020-01-01 to 2021-01-01 (`openssl ca` can set both
# dates in OpenSSL 3.0).
_hs_tls_expired_leaf() {
  local dir="$1" name="$2" cn="$3" ext="$4" db="$1/ca-db"
  mkdir -p "$db/new"
  [[ -f "$db/index.txt" ]] || : >"$db/index.txt"
  [[ -f "$db/serial" ]] || openssl rand -hex 16 >"$db/serial"
  cat >"$db/ca.cnf" <<EOF
[ ca ]
default_ca = hs_ca
[ hs_ca ]
database = $db/index.txt
new_certs_dir = $db/new
serial = $db/serial
default_md = sha256
policy = hs_policy
unique_subject = no
copy_extensions = none
[ hs_policy ]
organizationName = optional
commonName = supplied
EOF
  _hs_tls_key "$dir" "$name" &&
    openssl req -new -sha256 -key "$dir/$name.key" -out "$dir/$name.csr" \
      -subj "/O=Hindsight tests/CN=$cn" >>"$_hs_state_dir/tls.log" 2>&1 &&
    openssl ca -batch -notext -config "$db/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca.key" \
      -in "$dir/$name.csr" -out "$dir/$name.pem" -extfile "$ext" \
      -startdate 20200101000000Z -enddate 20210101000000Z \
      >>"$_hs_state_dir/tls.log" 2>&1
}

_hs_tls_generate() {
  local tmp="$_hs_tls_dir.new"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "=== $(date -Is) generating test certificates in $_hs_tls_dir" >>"$_hs_state_dir/tls.log"
  _hs_tls_server_ext "IP:127.0.0.1,DNS:localhost" >"$tmp/server.ext"
  _hs_tls_server_ext "DNS:wrong.example" >"$tmp/wrong-host.ext"
  _hs_tls_client_ext >"$tmp/client.ext"
  {
    _hs_tls_ca "$tmp" ca "Hindsight Test CA" &&
      _hs_tls_leaf "$tmp" server ca localhost "$tmp/server.ext" &&
      _hs_tls_leaf "$tmp" client ca hindsight-client "$tmp/client.ext" &&
      openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$tmp/client.key" \
        -passout "pass:$_hs_tls_key_password" -out "$tmp/client-encrypted.key" \
        >>"$_hs_state_dir/tls.log" 2>&1 &&
      _hs_tls_leaf "$tmp" wrong-host-server ca wrong.example "$tmp/wrong-host.ext" &&
      _hs_tls_expired_leaf "$tmp" expired-client hindsight-client "$tmp/client.ext" &&
      _hs_tls_expired_leaf "$tmp" expired-server localhost "$tmp/server.ext" &&
      _hs_tls_ca "$tmp" other-ca "Hindsight Other Test CA" &&
      _hs_tls_leaf "$tmp" other-client other-ca hindsight-client "$tmp/client.ext"
  } || _hs_fail tls "generating the test certificates with openssl failed" "$_hs_state_dir/tls.log"
  # Sanity: the chains verify, and the expired ones are really expired.
  local n
  for n in server client wrong-host-server; do
    openssl verify -CAfile "$tmp/ca.pem" "$tmp/$n.pem" >>"$_hs_state_dir/tls.log" 2>&1 ||
      _hs_fail tls "$n.pem does not verify against ca.pem" "$_hs_state_dir/tls.log"
  done
  openssl verify -CAfile "$tmp/other-ca.pem" "$tmp/other-client.pem" >>"$_hs_state_dir/tls.log" 2>&1 ||
    _hs_fail tls "other-client.pem does not verify against other-ca.pem" "$_hs_state_dir/tls.log"
  for n in expired-client expired-server; do
    if openssl x509 -noout -checkend 0 -in "$tmp/$n.pem" >/dev/null 2>&1; then
      _hs_fail tls "$n.pem is not expired" "$_hs_state_dir/tls.log"
    fi
  done
  rm -rf "$tmp/ca-db" "$tmp"/*.csr "$tmp"/*.ext "$tmp"/*.srl
  chmod 0755 "$tmp"
  chmod 0644 "$tmp"/*
  rm -rf "$_hs_tls_dir"
  mv "$tmp" "$_hs_tls_dir"
}

# Make sure the fixtures exist and are fresh. Sets _hs_tls_changed=1 when
# they were (re)generated in this run.
_hs_tls_changed=0
_hs_tls_ensure() {
  command -v openssl >/dev/null 2>&1 || _hs_apt_install openssl
  if _hs_tls_ok; then
    return 0
  fi
  _hs_log "tls: generating test certificates in $_hs_tls_dir"
  _hs_tls_generate
  _hs_tls_changed=1
}

# A short fingerprint of the current fixtures, written into the configs that
# load them (stunnel), so that regenerated certificates restart those.
_hs_tls_fingerprint() {
  cat "$_hs_tls_dir"/*.pem | sha256sum | cut -c1-16
}
