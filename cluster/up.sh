#!/usr/bin/env bash
# Start the local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok (fake nodes), all on 127.0.0.1, all state under .state/cluster/ (git-ignored):
#   kubeconfig   admin kubeconfig (embedded client cert, group system:masters)
#   pki/ etcd/   certificates and etcd data, kept across restarts
#   pids/ logs/  one pid file and one log file per process
# Idempotent: when everything already runs and is healthy it returns at once; a component that is
# down is (re)started, the others are left alone. Binaries come from tools/build.sh (built once per
# machine, cached by version outside the clone).
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for cmd in openssl base64 setsid flock; do
    command -v "$cmd" >/dev/null || { log "needs $cmd (Debian: apt-get install openssl util-linux coreutils)"; exit 1; }
done

all_running() {
    local c
    for c in "${COMPONENTS[@]}"; do
        [[ -n $(component_pid "$c") ]] || return 1
    done
    [[ -f $STATE/.nodes-ready ]] && apiserver_ready
}

# Fast path: nothing to do.
if all_running; then
    echo "$KUBECONFIG_OUT"
    exit 0
fi

start_ms=$(date +%s%3N)
mkdir -p "$STATE" "$PIDS" "$LOGS"
exec 8>"$STATE/.up.lock"
flock 8          # one cluster/up.sh at a time per state directory
if all_running; then   # another up.sh finished while this one waited for the lock
    echo "$KUBECONFIG_OUT"
    exit 0
fi

BIN=$("$REPO_DIR/tools/build.sh" kube)
ETCD_BIN=$("$REPO_DIR/tools/build.sh" etcd)
KWOK_BIN=$("$REPO_DIR/tools/build.sh" kwok)
KUBECTL=$BIN/kubectl

port_free() {
    ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}
CHOSEN=" "
choose_port() {   # a port another process holds (another clone's cluster?) moves to the next free
                  # one, unless it was set in the environment
    local component=$1 var=$2 port=${!2} candidate
    if [[ -n $(component_pid "$component") ]] || ! command -v ss >/dev/null \
        || { port_free "$port" && [[ $CHOSEN != *" $port "* ]]; }; then
        CHOSEN+="$port "
        return
    fi
    if [[ $EXPLICIT_PORTS == *" $var "* ]]; then
        log "port 127.0.0.1:$port for $component (TASKQ_$var) is taken by another process"
        exit 1
    fi
    candidate=$port
    while ! port_free "$candidate" || [[ $CHOSEN == *" $candidate "* ]]; do
        candidate=$((candidate + 1))
        if ((candidate > port + 200)); then
            log "no free port near $port for $component; set TASKQ_$var"
            exit 1
        fi
    done
    log "port 127.0.0.1:$port for $component is taken by another process; using $candidate"
    printf -v "$var" '%s' "$candidate"
    CHOSEN+="$candidate "
}
choose_port etcd ETCD_PORT
choose_port etcd ETCD_PEER_PORT
choose_port kube-apiserver APISERVER_PORT
choose_port kube-controller-manager KCM_PORT
choose_port kube-scheduler SCHEDULER_PORT

cat >"$STATE/ports.env" <<EOF
: "\${TASKQ_ETCD_PORT:=$ETCD_PORT}" "\${TASKQ_ETCD_PEER_PORT:=$ETCD_PEER_PORT}"
: "\${TASKQ_APISERVER_PORT:=$APISERVER_PORT}" "\${TASKQ_KCM_PORT:=$KCM_PORT}"
: "\${TASKQ_SCHEDULER_PORT:=$SCHEDULER_PORT}"
EOF

"$CLUSTER_SRC/certs.sh"

# write_kubeconfig FILE USER: a kubeconfig with the CA and USER's client cert embedded.
write_kubeconfig() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: taskq-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: taskq-local
  context:
    cluster: taskq-local
    user: $2
current-context: taskq-local
EOF
    chmod 600 "$tmp"
    mv "$tmp" "$1"
}
write_kubeconfig "$STATE/admin.kubeconfig" admin
write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler
write_kubeconfig "$STATE/kwok.kubeconfig" kwok

mkdir -p "$STATE/etcd"
chmod 700 "$STATE/etcd"
start etcd "$ETCD_BIN/etcd" \
    --name=taskq-local \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="taskq-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=2147483648 \
    --log-level=warn
wait_until "etcd health" 30 etcd http_ok "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    --event-ttl=1h
wait_until "kube-apiserver /readyz" 120 kube-apiserver apiserver_ready

write_kubeconfig "$KUBECONFIG_OUT" admin

start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --cert-dir="$STATE/controller-manager-certs" \
    --leader-elect=false \
    --root-ca-file="$PKI/ca.crt" \
    --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --profiling=false

start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$STATE/scheduler-certs" \
    --leader-elect=false \
    --profiling=false

k() { "$KUBECTL" --kubeconfig="$KUBECONFIG_OUT" "$@"; }
node_names=()
for ((i = 0; i < KWOK_NODES; i++)); do node_names+=("kwok-node-$i"); done

# A kwok instance only manages a node (and its pods) while it holds the node's Lease. Leases left by
# a previous kwok carry that instance's holder identity, and a new kwok would wait for them to expire
# (up to --node-lease-duration-seconds) before making any pod Running: drop them first.
if [[ -z $(component_pid kwok) ]]; then
    k -n kube-node-lease delete lease "${node_names[@]}" --ignore-not-found >/dev/null
fi

# kwok manages only Nodes annotated kwok.x-k8s.io/node=fake and the pods bound to them; it opens no
# port (--server-address unset) and the pod IPs it invents are never contacted.
start kwok "$KWOK_BIN/kwok" \
    --kubeconfig="$STATE/kwok.kubeconfig" \
    --config="$CLUSTER_SRC/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr=10.0.0.1/16 \
    --node-ip=10.0.0.1

healthz() { http_ok "https://127.0.0.1:$1/healthz" insecure; }
wait_until "kube-controller-manager /healthz" 60 kube-controller-manager healthz "$KCM_PORT"
wait_until "kube-scheduler /healthz" 60 kube-scheduler healthz "$SCHEDULER_PORT"

# Fake nodes: plain Node objects; kwok's node-initialize stage makes them Ready. Untainted, so
# the scheduler places any pod on them.
nodes_yaml=""
for ((i = 0; i < KWOK_NODES; i++)); do
    nodes_yaml+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: \"32\", memory: 256Gi, pods: \"110\"}
  capacity: {cpu: \"32\", memory: 256Gi, pods: \"110\"}
"
done
rm -f "$STATE/.nodes-ready"
echo "$nodes_yaml" | k apply -f - >/dev/null
wait_until "kwok node Leases" 60 kwok k -n kube-node-lease get lease "${node_names[@]}"
wait_until "kwok nodes Ready" 60 kwok k wait --for=condition=Ready node "${node_names[@]}" --timeout=2s
# The serviceaccount controller has run once its "default" ServiceAccount exists: pods can be created.
wait_until "default ServiceAccount" 60 kube-controller-manager k -n default get serviceaccount default
touch "$STATE/.nodes-ready"

log "ready in $(elapsed); kubeconfig: $KUBECONFIG_OUT"
echo "$KUBECONFIG_OUT"
