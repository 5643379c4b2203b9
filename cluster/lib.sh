# Shared settings and helpers for cluster/up.sh and cluster/down.sh (sourced, not executed).
# Every server binds 127.0.0.1 only. Ports are fixed (so a running cluster can be found again) and
# can be overridden through the environment, e.g. when two clones run clusters side by side.

CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$CLUSTER_SRC")
STATE=${TASKQ_CLUSTER_DIR:-$REPO_DIR/.state/cluster}
PKI=$STATE/pki
PIDS=$STATE/pids
LOGS=$STATE/logs
KUBECONFIG_OUT=$STATE/kubeconfig

ETCD_PORT=${TASKQ_ETCD_PORT:-23790}
ETCD_PEER_PORT=${TASKQ_ETCD_PEER_PORT:-23800}
APISERVER_PORT=${TASKQ_APISERVER_PORT:-26443}
KCM_PORT=${TASKQ_KCM_PORT:-26257}
SCHEDULER_PORT=${TASKQ_SCHEDULER_PORT:-26259}
KWOK_NODES=${TASKQ_KWOK_NODES:-2}
SERVICE_CIDR=10.96.0.0/16

# Start order; cluster/down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { echo "cluster: $*" >&2; }

# pid of a running component, or nothing. The pid file is trusted only if that pid still runs the
# component's binary (guards against pid reuse after a reboot or a crash).
component_pid() {
    local f=$PIDS/$1.pid pid
    [[ -f $f ]] || return 0
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1"; then
        echo "$pid"
    fi
}

apiserver_ready() {
    [[ -f $PKI/admin.crt ]] || return 1
    curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}
