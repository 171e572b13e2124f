#!/usr/bin/env bash
# Test keys for quorum TLS on one host: a CA (ca.pem) and one member key + certificate
# chain (member.pem, an unencrypted PKCS#8 EC key then the certificate) whose subject
# alternative names are 127.0.0.1-127.0.0.3 and localhost, usable by every member of a
# loopback ensemble, corral or the reference (PEM stores). Prints the zoo.cfg lines.
#
#   scripts/quorum-tls-keys.sh DIR
set -euo pipefail
dir="${1:?usage: scripts/quorum-tls-keys.sh DIR}"
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=corral quorum test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=member" -keyout member.key -out member.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > member.ext
openssl x509 -req -in member.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile member.ext -out member.crt 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in member.key -out member.pk8
cat member.pk8 member.crt > member.pem
rm -f member.csr member.ext member.key member.pk8 ca.srl
abs="$(pwd)"
cat <<CFG
sslQuorum=true
ssl.quorum.keyStore.location=$abs/member.pem
ssl.quorum.keyStore.type=PEM
ssl.quorum.trustStore.location=$abs/ca.pem
ssl.quorum.trustStore.type=PEM
CFG
