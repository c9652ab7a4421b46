#!/usr/bin/env bash
# make_ca.sh OUTDIR NAME... -- TEST ONLY.
# Creates a throwaway CA and one server certificate for the fake EWS server:
#   OUTDIR/ca.pem, OUTDIR/ca.key         the CA (trust ca.pem in the client under test)
#   OUTDIR/server.pem, OUTDIR/server.key server cert (SAN = every NAME + IP 127.0.0.1), signed by the CA
#   OUTDIR/server-chain.pem              server.pem followed by ca.pem
# Example: make_ca.sh /tmp/pki mail.contoso.test autodiscover.contoso.test
# Uses only the openssl CLI. RSA-2048 / SHA-256, like a typical Exchange certificate.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUTDIR NAME [NAME...]" >&2
  exit 2
fi
out=$1; shift
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=${MAKE_CA_DAYS:-30}

san=""
for n in "$@"; do san="${san:+$san,}DNS:$n"; done
san="$san,IP:127.0.0.1"

cat > "$tmp/ca.ext" <<EXT
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
EXT
cat > "$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EXT

openssl genrsa -out "$out/ca.key" 2048 2>/dev/null
openssl req -new -key "$out/ca.key" -subj "/O=mslink test/CN=mslink fake EWS test CA $(date +%s)-$$" \
  -out "$tmp/ca.csr"
openssl x509 -req -in "$tmp/ca.csr" -signkey "$out/ca.key" -sha256 -days "$days" \
  -extfile "$tmp/ca.ext" -out "$out/ca.pem" 2>/dev/null

openssl genrsa -out "$out/server.key" 2048 2>/dev/null
openssl req -new -key "$out/server.key" -subj "/O=mslink test/CN=$1" -out "$tmp/server.csr"
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
  -CAserial "$tmp/ca.srl" -sha256 -days "$days" -extfile "$tmp/server.ext" -out "$out/server.pem" 2>/dev/null
cat "$out/server.pem" "$out/ca.pem" > "$out/server-chain.pem"
chmod 600 "$out/ca.key" "$out/server.key"
openssl verify -CAfile "$out/ca.pem" "$out/server.pem" >/dev/null
echo "$out/ca.pem $out/server.pem $out/server.key"
