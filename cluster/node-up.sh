#!/usr/bin/env bash
# Start the local cluster's real node: containerd and a kubelet registered as Node "taskq-node"
# with the control plane of cluster/up.sh (started first if it is not running), next to the kwok
# nodes. Needs root (cgroups, a bridge, network namespaces, mounts, iptables).
#
#   bridge tq-<id>    10.244.N.1/24 (N: the first /24 of 10.244.0.0/16 no route of this machine
#                     covers, kept in .state/cluster/node.env); pods get addresses from it through
#                     the CNI bridge + host-local plugins, each in its own network namespace
#   iptables          one chain TASKQ-FWD-<id>, jumped to first from FORWARD: pod <-> pod on the
#                     bridge accepted, anything else forwarded from or to the bridge, or to where a
#                     Service address was translated, dropped; TASKQ-OUT-<id> in OUTPUT: this
#                     machine's connections to a Service reach the bridge or loopback only (nothing
#                     is routed beyond this machine)
#   apiserver relay   socat on 10.244.N.1:<API server port> -> 127.0.0.1:<port> (the API server binds
#                     one address: 127.0.0.1); TLS passes through, the serving cert names 10.244.N.1
#   containerd        root .state/cluster/node/containerd, state and socket /run/taskq-<id>/
#   kubelet           cgroupfs driver, cgroup v1 allowed (failCgroupV1: false), pods under the
#                     cgroup /taskq-<id>; root dir .state/cluster/node/kubelet; serves on
#                     10.244.N.1:10250 (x509 or token clients, authorized by the API server)
#   kube-proxy        iptables mode, clusterCIDR the bridge's subnet, NodePorts on the bridge
#                     address only, healthz and metrics on 127.0.0.1; the `kubernetes` Service's
#                     EndpointSlice points at the relay (the API server reconciles none). One per
#                     machine: its KUBE-* chains are machine-wide
#
# The node carries the taint taskq.dev/real-node=true:NoSchedule and the label type=real: only a
# pod that tolerates the taint lands there; the kwok nodes stay for what needs many nodes.
# Idempotent; cluster/node-down.sh (and cluster/down.sh) remove everything this made.
set -euo pipefail
# shellcheck source=cluster/node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

[[ $(id -u) == 0 ]] || { log "the real node needs root (cgroups, a bridge, network namespaces, iptables)"; exit 1; }
for cmd in ip iptables nft socat findmnt; do
    command -v "$cmd" >/dev/null || {
        log "the real node needs $cmd (Debian: apt-get install iproute2 iptables nftables socat util-linux; make node-tools)"
        exit 1
    }
done
if other=$(foreign_kube_proxy) && [[ -n $other ]]; then
    log "another kube-proxy runs (pid $other: $(tr '\0' ' ' <"/proc/$other/cmdline" | cut -c1-120)):"
    log "its iptables chains (KUBE-*) are machine-wide, and two kube-proxies delete each other's"
    log "Service rules; stop that node first (make node-down in its clone)"
    exit 1
fi
if [[ -n $(swapon --noheadings --show 2>/dev/null) ]]; then
    log "swap is on (swapon --show): the kubelet refuses to start with swap (failSwapOn); swapoff -a first"
    exit 1
fi

KUBECONFIG_PATH=$("$CLUSTER_SRC/up.sh")
# up.sh may have moved the ports (another clone's cluster holds the defaults): read them again.
# shellcheck source=/dev/null
source "$STATE/ports.env"
APISERVER_PORT=$TASKQ_APISERVER_PORT
start_ms=$(date +%s%3N)
KUBECTL=$("$REPO_DIR/tools/build.sh" --path kube)/kubectl
k() { "$KUBECTL" --kubeconfig="$KUBECONFIG_PATH" "$@"; }

# first_rule CHAIN TARGET: the jump to TARGET is CHAIN's first rule. Ours must come before
# kube-proxy's KUBE-FORWARD, which accepts whatever it marked for masquerading (Service traffic
# from outside the pod range) wherever it goes.
first_rule() { [[ $(iptables -w -S "$1" 1 2>/dev/null) == "-A $1 -j $2" ]]; }
# Fast path: every piece is there and the node is Ready.
node_running() {
    local c
    for c in "${NODE_COMPONENTS[@]}"; do
        [[ -n $(component_pid "$c") ]] || return 1
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && first_rule FORWARD "$FW_CHAIN" \
        && first_rule OUTPUT "$FW_OUT_CHAIN" \
        && [[ $(k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
if node_running; then
    echo "$KUBECONFIG_PATH"
    exit 0
fi

mkdir -p "$NODE_DIR" "$NODE_RUN" "$PIDS" "$LOGS"
exec 8>"$STATE/.node-up.lock"
flock 8

apiserver_pid=$(component_pid kube-apiserver)
if ! tr '\0' ' ' <"/proc/$apiserver_pid/cmdline" | grep -q -- "--authorization-mode=Node,RBAC"; then
    log "the running kube-apiserver (pid $apiserver_pid) was started without the Node authorizer and the"
    log "kubelet client cert the real node needs (an older cluster/up.sh): make cluster-down, then again"
    exit 1
fi

# The pod subnet: kept from an earlier start, else the first 10.244.N.0/24 that no route of this
# machine covers (other than the default route) and no other clone's bridge uses.
subnet_taken() {
    local n=$1
    ip -4 route show match "$(bridge_ip "$n")" | grep -v '^default' | grep -qv "dev $BRIDGE "
}
if [[ -z $POD_SUBNET_INDEX ]] || { subnet_taken "$POD_SUBNET_INDEX" && [[ -z ${TASKQ_POD_SUBNET_INDEX:-} ]]; }; then
    for ((n = 0; n < 256; n++)); do
        subnet_taken "$n" || break
    done
    ((n < 256)) || { log "no free /24 in 10.244.0.0/16 for the pod bridge; set TASKQ_POD_SUBNET_INDEX"; exit 1; }
    POD_SUBNET_INDEX=$n
elif subnet_taken "$POD_SUBNET_INDEX"; then
    log "$(pod_subnet "$POD_SUBNET_INDEX") (TASKQ_POD_SUBNET_INDEX) overlaps a route of this machine: $(ip -4 route show match "$(bridge_ip "$POD_SUBNET_INDEX")" | grep -v '^default')"
    exit 1
fi
BRIDGE_IP=$(bridge_ip "$POD_SUBNET_INDEX")
POD_SUBNET=$(pod_subnet "$POD_SUBNET_INDEX")

port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
if [[ -z $(component_pid kubelet) ]]; then   # a running kubelet holds its ports itself
    for var in KUBELET_PORT KUBELET_HEALTHZ_PORT; do
        p=${!var}
        while ! port_free "$p"; do
            [[ -z ${TASKQ_KUBELET_PORT:-}${TASKQ_KUBELET_HEALTHZ_PORT:-} ]] || { log "port $p ($var) is taken"; exit 1; }
            p=$((p + 1))
        done
        [[ $p == "${!var}" ]] || log "port ${!var} for the kubelet is taken by another process; using $p"
        printf -v "$var" '%s' "$p"
    done
fi
if [[ -z $(component_pid kube-proxy) ]]; then
    for var in KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT; do
        p=${!var}
        while ! port_free "$p" || [[ $var == KUBE_PROXY_METRICS_PORT && $p == "$KUBE_PROXY_HEALTHZ_PORT" ]]; do
            [[ -z ${TASKQ_KUBE_PROXY_HEALTHZ_PORT:-}${TASKQ_KUBE_PROXY_METRICS_PORT:-} ]] || { log "port $p ($var) is taken"; exit 1; }
            p=$((p + 1))
        done
        [[ $p == "${!var}" ]] || log "port ${!var} for kube-proxy is taken by another process; using $p"
        printf -v "$var" '%s' "$p"
    done
fi
cat >"$NODE_ENV" <<EOF
: "\${POD_SUBNET_INDEX:=$POD_SUBNET_INDEX}" "\${KUBELET_PORT:=$KUBELET_PORT}" "\${KUBELET_HEALTHZ_PORT:=$KUBELET_HEALTHZ_PORT}"
: "\${KUBE_PROXY_HEALTHZ_PORT:=$KUBE_PROXY_HEALTHZ_PORT}" "\${KUBE_PROXY_METRICS_PORT:=$KUBE_PROXY_METRICS_PORT}"
EOF

# Tools (built once per machine), the pause image, the certificates (the API server's serving cert
# must name the bridge address; it reloads the files by itself).
KUBELET_BIN=$("$REPO_DIR/tools/build.sh" kubelet)
KUBE_PROXY_BIN=$("$REPO_DIR/tools/build.sh" kube-proxy)
CONTAINERD_BIN=$("$REPO_DIR/tools/build.sh" containerd)
RUNC_BIN=$("$REPO_DIR/tools/build.sh" runc)
CNI_BIN=$("$REPO_DIR/tools/build.sh" cni)
"$REPO_DIR/tools/build.sh" crictl >/dev/null
PAUSE_TAR=$("$CLUSTER_SRC/pause-image.sh")
TASKQ_APISERVER_BRIDGE_IP=$BRIDGE_IP "$CLUSTER_SRC/certs.sh"
log "tools ready at +$(elapsed)"

# --- network: the bridge, the FORWARD chain, the relay to the API server
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    log "created bridge $BRIDGE"
fi
ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
# rule CHAIN ARGS...: append the rule unless the chain has it (an older node-up's chain gains the
# rules added since; a new chain gets them in this order).
rule() { iptables -w -C "$@" 2>/dev/null || iptables -w -A "$@"; }
iptables -w -n -L "$FW_CHAIN" >/dev/null 2>&1 || iptables -w -N "$FW_CHAIN"
rule "$FW_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
rule "$FW_CHAIN" -i "$BRIDGE" -j DROP
rule "$FW_CHAIN" -o "$BRIDGE" -j DROP
# Service traffic (kube-proxy's DNAT) forwarded anywhere but bridge -> bridge: e.g. from docker0
# to an endpoint kwok invented (10.0.0.x), which would leave through the default route.
rule "$FW_CHAIN" -m conntrack --ctstate DNAT --ctorigdst "$SERVICE_CIDR" -j DROP
iptables -w -n -L "$FW_OUT_CHAIN" >/dev/null 2>&1 || iptables -w -N "$FW_OUT_CHAIN"
rule "$FW_OUT_CHAIN" -o lo -j RETURN
rule "$FW_OUT_CHAIN" -o "$BRIDGE" -j RETURN
rule "$FW_OUT_CHAIN" -m conntrack --ctstate DNAT --ctorigdst "$SERVICE_CIDR" -j DROP
# jump_first CHAIN TARGET: make the jump to TARGET CHAIN's first rule (kube-proxy prepends its own
# jumps when they are missing, so ours is moved back in front once kube-proxy has started).
jump_first() {
    first_rule "$1" "$2" && return 0
    iptables -w -D "$1" -j "$2" 2>/dev/null || true
    iptables -w -I "$1" 1 -j "$2"
}
jump_first FORWARD "$FW_CHAIN"
jump_first OUTPUT "$FW_OUT_CHAIN"

# The relay is started for this cluster's API server port: `socat` in its command line is what
# component_pid checks, the pid file says which socat.
start socat socat "TCP-LISTEN:$APISERVER_PORT,bind=$BRIDGE_IP,reuseaddr,fork" "TCP:127.0.0.1:$APISERVER_PORT"
wait_until "API server relay on $BRIDGE_IP:$APISERVER_PORT" 10 socat \
    http_ok "https://$BRIDGE_IP:$APISERVER_PORT/readyz" "$PKI/ca.crt" "$PKI/admin.crt" "$PKI/admin.key"
# The API server runs with --endpoint-reconciler-type=none (it binds 127.0.0.1, which no endpoint
# may be): the `kubernetes` Service (10.96.0.1:443) gets its EndpointSlice from here, the relay.
k apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: node-up.taskq.dev
addressType: IPv4
endpoints:
- addresses: ["$BRIDGE_IP"]
  conditions: {ready: true}
ports:
- {name: https, port: $APISERVER_PORT, protocol: TCP}
EOF

# --- cgroups: the parent of the kubelet's kubepods, in every v1 hierarchy and the unified one
for h in /sys/fs/cgroup/*/; do
    [[ -d $h ]] || continue
    mkdir -p "$h$CGROUP_PARENT"
    if [[ -f $h/cpuset.cpus && ! -s $h$CGROUP_PARENT/cpuset.cpus ]]; then
        cat "$h/cpuset.cpus" >"$h$CGROUP_PARENT/cpuset.cpus"
        cat "$h/cpuset.mems" >"$h$CGROUP_PARENT/cpuset.mems"
    fi
done

# --- containerd
mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$NODE_DIR/containerd" "$NODE_RUN/containerd"
cat >"$NODE_DIR/cni/net.d/10-taskq.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "taskq",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    }
  ]
}
EOF
cat >"$NODE_DIR/containerd.toml" <<EOF
version = 4
root = "$NODE_DIR/containerd"
state = "$NODE_RUN/containerd"
imports = []            # not the machine's /etc/containerd/conf.d

[debug]
  level = "info"

[plugins]
  # (config version 4: the servers are plugins; every socket under /run/taskq-<id>/, none on TCP)
  [plugins."io.containerd.server.v1.grpc"]
    address = "$CONTAINERD_SOCK"
  [plugins."io.containerd.server.v1.ttrpc"]
    address = "$CONTAINERD_SOCK.ttrpc"
  [plugins."io.containerd.server.v1.debug"]
    address = ""
  [plugins."io.containerd.server.v1.metrics"]
    address = ""
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "$PAUSE_IMAGE"
  [plugins."io.containerd.cri.v1.runtime"]
    netns_mounts_under_state_dir = true
    # No CAP_SYS_RESOURCE may be had here (this VM's root lacks it): the kubelet's -998 for the
    # pod sandbox makes runc fail with "failed to update /proc/self/oom_score_adj: Permission
    # denied". Scores below containerd's own (0) are raised to it, as for rootless containerd.
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = "$RUNC_BIN/runc"
          Root = "$NODE_RUN/runc"
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["$CNI_BIN"]
      conf_dir = "$NODE_DIR/cni/net.d"
      max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$NODE_DIR/containerd-opt"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
EOF
# The shim (containerd-shim-runc-v2) is looked up on PATH: ours first.
start containerd env PATH="$CONTAINERD_BIN:$PATH" "$CONTAINERD_BIN/containerd" --config "$NODE_DIR/containerd.toml"
# (ctr warns on stderr, at every call, that cgroup v1 is deprecated: that line is dropped)
ctr() {
    "$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@" \
        2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2)
}
wait_until "containerd" 30 containerd ctr version
if ! ctr images ls -q "name==$PAUSE_IMAGE" | grep -q .; then
    ctr images import --local "$PAUSE_TAR" >/dev/null
    log "imported $PAUSE_IMAGE"
fi

# --- kubelet
# write_kubeconfig_node PATH NAME: a kubeconfig with the client cert $PKI/NAME.crt.
write_kubeconfig_node() {
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
  context: {cluster: taskq-local, user: $2}
current-context: taskq-local
EOF
    chmod 600 "$tmp"
    mv "$tmp" "$1"
}
write_kubeconfig_node "$NODE_DIR/kubelet.kubeconfig" kubelet
mkdir -p "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs"
cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PARENT
failCgroupV1: false
failSwapOn: true
# No KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT chains: they serve kube-proxy (none
# here yet) and are machine-wide, shared by every kubelet, so no node-down could remove them safely.
makeIPTablesUtilChains: false
oomScoreAdj: 0          # its default -999 needs CAP_SYS_RESOURCE, which this VM's root lacks
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $NODE_DIR/pod-logs
resolvConf: ""
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%
  imagefs.available: 5%
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
start kubelet "$KUBELET_BIN/kubelet" \
    --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$BRIDGE_IP" \
    --node-labels="$NODE_LABEL"
wait_until "kubelet /healthz" 60 kubelet http_ok "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
wait_until "node $NODE_NAME Ready" 90 kubelet \
    k wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s

# --- kube-proxy: the Services' ClusterIPs for the pods
write_kubeconfig_node "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy
cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $NODE_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $BRIDGE_IP           # the node's IP (kube-proxy binds nothing to it)
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
mode: iptables
clusterCIDR: $POD_SUBNET          # Service traffic from outside it is marked for masquerading
detectLocalMode: ClusterCIDR
nodePortAddresses: ["$BRIDGE_IP/32"]
iptables:
  localhostNodePorts: false       # would set route_localnet, a machine-wide sysctl
  masqueradeAll: false
# 0: leave the machine's conntrack sysctls as they are
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
oomScoreAdj: 0                    # its default -999 needs CAP_SYS_RESOURCE, which this VM's root lacks
EOF
# The nftables tables before kube-proxy (iptables-nft makes ip mangle and ip6 * for it, empty
# after its --cleanup): node-down.sh removes the new ones if still empty. The first start's list.
if [[ -z $(component_pid kube-proxy) && ! -f $NODE_DIR/nft-tables.before ]]; then
    nft list tables >"$NODE_DIR/nft-tables.before"
fi
start kube-proxy "$KUBE_PROXY_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
wait_until "kube-proxy /healthz" 60 kube-proxy http_ok "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
kubernetes_service_rules() { iptables -w -t nat -S KUBE-SERVICES | grep -q 'default/kubernetes:https cluster IP'; }
wait_until "the kubernetes Service's rules" 30 kube-proxy kubernetes_service_rules
jump_first FORWARD "$FW_CHAIN"
jump_first OUTPUT "$FW_OUT_CHAIN"
log "real node ready in $(elapsed) (bridge $BRIDGE $BRIDGE_IP/24, containerd $CONTAINERD_SOCK)"
echo "$KUBECONFIG_PATH"
