#!/usr/bin/env bash
# Makes the TLS test fixtures of tests/es_simulator.rs with the openssl CLI:
# two CAs (ca-a, ca-b), an HTTP certificate and node certificates signed by
# ca-a, and a node certificate signed by ca-b ("another CA"). Keys are ECDSA
# P-256 in PKCS#8 PEM ("BEGIN PRIVATE KEY"), as the operator makes them.
# Everything is valid for 100 years. Run from anywhere; writes beside itself.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")"
DAYS=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # NAME CN
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/O=swarmlog test/CN=$2" -days "$DAYS" -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$1.crt"
}

leaf() { # NAME CN CA SAN
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/O=swarmlog test/CN=$2" -out "$tmp/$1.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$4" >"$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days "$DAYS" -sha256 \
        -extfile "$tmp/$1.ext" -out "$1.crt" 2>/dev/null
}

ca ca-a "swarmlog test CA A"
ca ca-b "swarmlog test CA B"
leaf http http ca-a "DNS:localhost,IP:127.0.0.1"
for n in es-a es-b es-c; do leaf "$n" "$n" ca-a "DNS:$n,DNS:localhost,IP:127.0.0.1"; done
leaf es-rogue es-rogue ca-b "DNS:es-rogue,DNS:localhost,IP:127.0.0.1"
# A certificate valid only for another name (full verification refuses it
# on 127.0.0.1, certificate verification takes it).
leaf elsewhere elsewhere ca-a "DNS:elsewhere.invalid"
cat ca-a.crt ca-b.crt >ca-both.crt
rm -f ca-a.srl ca-b.srl ca-a.key ca-b.key
