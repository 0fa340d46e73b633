#!/usr/bin/env bash
# Makes the certificates of a small test mesh named "default" into DIR:
#
#   mesh-ca.crt              the mesh CA every sidecar trusts
#   redis.crt/.key           the sidecar's identity, URI SAN spiffe://default/redis
#   demo-app.crt/.key        a mesh client, URI SAN spiffe://default/demo-app
#   untrusted-ca.crt         a CA the sidecar does not trust
#   untrusted.crt/.key       a client signed by it, same SAN as demo-app
#   wrong-san.crt/.key       signed by the mesh CA, but for another trust domain
#                            (spiffe://other/demo-app), so Kuma's SAN prefix check fails
#
# The sidecar certificate also carries IP:127.0.0.1: Kuma's own clients check the
# server's SPIFFE URI, while the test clients verify the server the ordinary way,
# by the address they dial.
#
# Usage: certs.sh DIR
set -euo pipefail

dir=${1:?usage: certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
}

new_ca() {
  local name=$1
  new_key "$name"
  openssl req -x509 -new -key "$name.key" -subj "/O=strictly-test/CN=$name" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$name.crt" 2>/dev/null
}

# new_leaf NAME CA SAN...
new_leaf() {
  local name=$1 ca=$2 san
  shift 2
  san=$(IFS=,; echo "$*")
  new_key "$name"
  openssl req -new -key "$name.key" -subj "/O=strictly-test/CN=$name" -out "$name.csr" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=$san" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -days 2 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

new_ca mesh-ca
new_ca untrusted-ca
new_leaf redis mesh-ca URI:spiffe://default/redis IP:127.0.0.1
new_leaf demo-app mesh-ca URI:spiffe://default/demo-app
new_leaf untrusted untrusted-ca URI:spiffe://default/demo-app
new_leaf wrong-san mesh-ca URI:spiffe://other/demo-app
