# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings of the real node (cluster/node-up.sh, node-down.sh, pause-image.sh), sourced
# after cluster/lib.sh. Everything the node makes is named after this state directory (NODE_ID), so
# two clones' nodes on one machine do not meet: the bridge, the cgroup parent, the runtime dir.
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS_CACHE=${TASKQ_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskq-tools}
NODE_ID=$(printf '%s' "$STATE" | sha256sum | cut -c1-8)
NODE_DIR=$STATE/node                    # kubelet root, containerd root, configs, CNI state
# Sockets and runtime state, short paths (a unix socket path has at most 107 bytes).
NODE_RUN=/run/taskq-$NODE_ID
CONTAINERD_SOCK=$NODE_RUN/containerd/containerd.sock
NODE_NAME=taskq-node
BRIDGE=tq-$NODE_ID                      # 11 characters (an interface name has at most 15)
# iptables chain, jumped to from FORWARD: pods talk to each other and to the host, nothing else.
FW_CHAIN=TASKQ-FWD-$NODE_ID
# iptables chain, jumped to from OUTPUT: this machine's own connections to a Service address go to
# the bridge or loopback only (kube-proxy would DNAT them to any endpoint, kwok's invented ones too).
FW_OUT_CHAIN=TASKQ-OUT-$NODE_ID
# The cgroup (in every v1 hierarchy and in the unified one) that holds the kubelet's kubepods.
CGROUP_PARENT=taskq-$NODE_ID
# The taint and label that set the real node apart from the kwok nodes (untainted, type=kwok).
NODE_TAINT_KEY=taskq.dev/real-node
NODE_LABEL=type=real
PAUSE_VERSION=3.10.2                    # k8s.io/kubernetes v1.36.3 build/dependencies.yaml
PAUSE_IMAGE=taskq.local/pause:$PAUSE_VERSION
NODE_ENV=$STATE/node.env                # chosen subnet and ports, kept across restarts

# Components of the node, in start order (node-down.sh stops them in reverse).
NODE_COMPONENTS=(socat containerd kubelet kube-proxy)

# Node settings from a previous start (subnet, ports), where not set in the environment.
if [[ -f $NODE_ENV ]]; then
    # shellcheck source=/dev/null
    source "$NODE_ENV"
fi
KUBELET_PORT=${TASKQ_KUBELET_PORT:-${KUBELET_PORT:-10250}}
KUBELET_HEALTHZ_PORT=${TASKQ_KUBELET_HEALTHZ_PORT:-${KUBELET_HEALTHZ_PORT:-10248}}
KUBE_PROXY_HEALTHZ_PORT=${TASKQ_KUBE_PROXY_HEALTHZ_PORT:-${KUBE_PROXY_HEALTHZ_PORT:-10256}}
KUBE_PROXY_METRICS_PORT=${TASKQ_KUBE_PROXY_METRICS_PORT:-${KUBE_PROXY_METRICS_PORT:-10249}}
POD_SUBNET_INDEX=${TASKQ_POD_SUBNET_INDEX:-${POD_SUBNET_INDEX:-}}

# pod_subnet INDEX / bridge_ip INDEX: the node's pod range 10.244.INDEX.0/24 and its gateway.
pod_subnet() { echo "10.244.$1.0/24"; }
bridge_ip() { echo "10.244.$1.1"; }


# kube-proxy's iptables chains (KUBE-SERVICES, KUBE-FORWARD, ...) have fixed, machine-wide names,
# and one kube-proxy deletes the KUBE-SVC-* chains it does not know: one per machine. Prints the
# pid of a kube-proxy that is not this node's, if any.
foreign_kube_proxy() {
    local ours pid
    ours=$(component_pid kube-proxy)
    for pid in $(pgrep -x kube-proxy || true); do
        [[ $pid == "$ours" ]] || { echo "$pid"; return; }
    done
}
