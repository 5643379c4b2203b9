#!/usr/bin/env bash
# Generate the local cluster's PKI with openssl into $PKI. Each item is made only if missing, so
# later starts reuse what exists (and a newly added item appears without touching the others):
#   ca                  self-signed CA that signs the certs below (and is the client CA)
#   apiserver           serving cert for 127.0.0.1 / localhost / the in-cluster service names (and
#                       the real node's bridge address, $TASKQ_APISERVER_BRIDGE_IP, when set)
#   admin               client cert, group system:masters (the kubeconfig handed to users and tests)
#   controller-manager, scheduler   client certs with the identities the default RBAC roles expect
#   kwok                client cert, group system:masters (kwok writes node and pod status)
#   kubelet             client cert system:node:taskq-node, group system:nodes (the real node)
#   apiserver-kubelet-client   the API server's client cert towards the kubelet (logs, exec)
#   kube-proxy          client cert system:kube-proxy (bound to system:node-proxier by default)
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
# The real node's pods reach the API server on their bridge's host address (cluster/node-up.sh
# writes it to node.env first): a serving cert without it is made again, with it. The API server
# reloads its serving cert from the files, so a running one need not restart.
apiserver_sans="IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
if [[ -n ${TASKQ_APISERVER_BRIDGE_IP:-} ]]; then
    apiserver_sans+=",IP:$TASKQ_APISERVER_BRIDGE_IP"
    if [[ -f apiserver.crt ]] && ! openssl x509 -in apiserver.crt -noout -ext subjectAltName 2>/dev/null \
        | grep -q "IP Address:$TASKQ_APISERVER_BRIDGE_IP\(,\|\$\)"; then
        mv apiserver.crt apiserver.crt.old
        mv apiserver.key apiserver.key.old
    fi
fi
sign ca apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=$apiserver_sans"
rm -f apiserver.crt.old apiserver.key.old
sign ca admin "/O=system:masters/CN=taskq-admin" "extendedKeyUsage=clientAuth"
sign ca controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
sign ca scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
sign ca kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"
# The real node (cluster/node-up.sh): the kubelet's identity, which the Node authorizer and the
# NodeRestriction admission plugin know; and the API server's client cert for the kubelet's API.
sign ca kubelet "/O=system:nodes/CN=system:node:taskq-node" "extendedKeyUsage=clientAuth"
sign ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
sign ca kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
ca front-proxy-ca taskq-local-front-proxy-ca
sign front-proxy-ca front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth"

if [[ ! -f sa.pub ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key.tmp 2>/dev/null
    openssl pkey -in sa.key.tmp -pubout -out sa.pub.tmp 2>/dev/null
    mv sa.key.tmp sa.key
    mv sa.pub.tmp sa.pub
fi
rm -f ./*.tmp .complete
