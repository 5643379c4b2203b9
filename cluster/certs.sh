#!/usr/bin/env bash
# Generate the local cluster's PKI with openssl into $PKI. Each item is made only if missing, so
# later starts reuse what exists (and a newly added item appears without touching the others):
#   ca                  self-signed CA that signs the certs below (and is the client CA)
#   apiserver           serving cert for 127.0.0.1 / localhost / the in-cluster service names
#   admin               client cert, group system:masters (the kubeconfig handed to users and tests)
#   controller-manager, scheduler   client certs with the identities the default RBAC roles expect
#   kwok                client cert, group system:masters (kwok writes node and pod status)
#   front-proxy-ca, front-proxy-client   the aggregation layer's request-header identity
#   sa                  RSA key pair that signs and verifies service-account tokens
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$PKI"
chmod 700 "$PKI"
cd "$PKI"
umask 077
days=3650

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# ca NAME CN: a self-signed CA, written as NAME.crt / NAME.key.
ca() {
    [[ -f $1.crt ]] && return 0
    newkey "$1.key.tmp"
    openssl req -x509 -new -key "$1.key.tmp" -subj "/CN=$2" -days $days -out "$1.crt.tmp" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    mv "$1.key.tmp" "$1.key"
    mv "$1.crt.tmp" "$1.crt"
}

# sign CA NAME SUBJECT EXTENSIONS: a leaf cert NAME.crt / NAME.key signed by CA.
sign() {
    local ca=$1 name=$2
    [[ -f $name.crt ]] && return 0
    newkey "$name.key.tmp"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "$4" >"$name.ext"
    openssl req -new -key "$name.key.tmp" -subj "$3" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days $days \
        -extfile "$name.ext" -out "$name.crt.tmp" 2>/dev/null
    rm -f "$name.csr" "$name.ext" "$ca.srl"
    mv "$name.key.tmp" "$name.key"
    mv "$name.crt.tmp" "$name.crt"
}

ca ca taskq-local-ca
sign ca apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign ca admin "/O=system:masters/CN=taskq-admin" "extendedKeyUsage=clientAuth"
sign ca controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
sign ca scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
sign ca kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"
ca front-proxy-ca taskq-local-front-proxy-ca
sign front-proxy-ca front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth"

if [[ ! -f sa.pub ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key.tmp 2>/dev/null
    openssl pkey -in sa.key.tmp -pubout -out sa.pub.tmp 2>/dev/null
    mv sa.key.tmp sa.key
    mv sa.pub.tmp sa.pub
fi
rm -f ./*.tmp .complete
