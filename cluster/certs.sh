#!/usr/bin/env bash
# Generate the local cluster's PKI with openssl into $PKI (once; reused by later starts):
#   ca            self-signed CA that signs everything below (and is the client CA)
#   apiserver     serving cert for 127.0.0.1 / localhost / the in-cluster service names
#   admin         client cert, group system:masters (the kubeconfig handed to users and tests)
#   controller-manager, scheduler   client certs with the identities the default RBAC roles expect
#   kwok          client cert, group system:masters (kwok writes node and pod status of every node)
#   sa            RSA key pair that signs and verifies service-account tokens
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -f $PKI/.complete ]]; then
    exit 0
fi

mkdir -p "$STATE"
tmp=$(mktemp -d "$STATE/.pki.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
days=3650

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# sign NAME SUBJECT EXTENSIONS
sign() {
    newkey "$1"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" >"$1.ext"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

newkey ca
openssl req -x509 -new -key ca.key -subj "/CN=taskq-local-ca" -days $days -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null

sign apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=taskq-admin" "extendedKeyUsage=clientAuth"
sign controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
sign scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
sign kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
rm -f ca.srl
chmod 600 ./*.key
touch .complete

rm -rf "$PKI"
mkdir -p "$(dirname "$PKI")"
mv "$tmp" "$PKI"
trap - EXIT
