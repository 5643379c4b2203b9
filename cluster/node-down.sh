#!/usr/bin/env bash
# Stop the real node of cluster/node-up.sh and remove everything it made on this machine: the
# kubelet, every pod sandbox and container (through CRI: the CNI plugins give back the addresses and
# the network namespaces go), containerd and any shim of it left, the mounts under the node's
# directories, kube-proxy and its iptables rules (`kube-proxy --cleanup`), the API server relay, the
# FORWARD and OUTPUT chains, the bridge and the cgroups. Kept, for a warm
# start: containerd's image store and the kubelet's directory (.state/cluster/node/), node.env.
# A no-op when nothing of the node exists. Also run by cluster/down.sh.
set -euo pipefail
# shellcheck source=cluster/node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

# Anything of this node on the machine?
present=0
for c in "${NODE_COMPONENTS[@]}"; do
    [[ -f $PIDS/$c.pid ]] && present=1
done
[[ -d $NODE_RUN ]] && present=1
ip link show "$BRIDGE" >/dev/null 2>&1 && present=1
[[ $present == 1 ]] || exit 0
[[ $(id -u) == 0 ]] || { log "removing the real node needs root"; exit 1; }

# stop_one NAME: SIGTERM, wait up to 30s, then SIGKILL.
stop_one() {
    local name=$1 pid t
    pid=$(component_pid "$name")
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((t = 0; t < 600; t++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.05
        done
        if [[ -d /proc/$pid ]]; then
            log "$name (pid $pid) ignored SIGTERM for 30s; killing"
            kill -KILL "$pid" 2>/dev/null || true
            while [[ -d /proc/$pid ]]; do sleep 0.05; done
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

# The kubelet first, so that it does not start again what is removed next.
stop_one kubelet
# kube-proxy leaves its rules in place when it stops; --cleanup removes every KUBE-* chain and jump
# (iptables, ip6tables and nftables). Those names are machine-wide: not while another clone's
# kube-proxy runs (node-up.sh refuses a second one, so that one's rules are its own).
had_kube_proxy=$(component_pid kube-proxy)
stop_one kube-proxy
kube_proxy=$("$REPO_DIR/tools/build.sh" --path kube-proxy)/kube-proxy
if other=$(foreign_kube_proxy) && [[ -n $other ]]; then
    log "another kube-proxy runs (pid $other): its KUBE-* rules are left alone"
elif [[ -x $kube_proxy ]] && { [[ -n $had_kube_proxy ]] || iptables -w -t nat -n -L KUBE-SERVICES >/dev/null 2>&1; }; then
    "$kube_proxy" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || log "kube-proxy --cleanup failed: see $LOGS/kube-proxy.log"
    # What --cleanup leaves: KUBE-FIREWALL (kube-proxy makes it since the kubelet stopped; cleanup
    # still counts it as the kubelet's) and the tables iptables-nft made for it, empty.
    for ipt in iptables ip6tables; do
        for parent in INPUT OUTPUT FORWARD; do
            while "$ipt" -w -D "$parent" -j KUBE-FIREWALL 2>/dev/null; do :; done
        done
        "$ipt" -w -F KUBE-FIREWALL 2>/dev/null && "$ipt" -w -X KUBE-FIREWALL
    done
    if [[ -f $NODE_DIR/nft-tables.before ]]; then
        nft list tables | while read -r _ family name; do
            grep -qx "table $family $name" "$NODE_DIR/nft-tables.before" && continue
            # only an empty one: base chains without a rule
            [[ -z $(nft list table "$family" "$name" | grep -vE '^\s*(table|chain|type|policy|\}|$)') ]] || continue
            nft delete table "$family" "$name" && log "removed the empty nftables table $family $name"
        done
        rm -f "$NODE_DIR/nft-tables.before"
    fi
    log "removed kube-proxy's rules"
fi

# Every pod sandbox, through containerd's CRI (stops the containers, tears the network down).
crictl=$("$REPO_DIR/tools/build.sh" --path crictl)/crictl
if [[ -n $(component_pid containerd) && -x $crictl ]]; then
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' \
        "$CONTAINERD_SOCK" "$CONTAINERD_SOCK" >"$NODE_DIR/crictl.yaml"
    cri() { "$crictl" --config "$NODE_DIR/crictl.yaml" "$@"; }
    if pods=$(cri pods -q 2>/dev/null) && [[ -n $pods ]]; then
        # shellcheck disable=SC2086  # one id per word
        cri stopp $pods >/dev/null || log "crictl stopp failed; removing by force"
        # shellcheck disable=SC2086
        cri rmp -f $pods >/dev/null || log "crictl rmp failed; the mounts and shims are removed below"
        log "removed $(wc -w <<<"$pods") pod sandboxes"
    fi
fi
stop_one containerd

# Shims of this containerd that outlived it (a shim serves its container independently of the
# daemon): only those whose command line names this node's socket.
for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK( |\$)" || true); do
    kill -KILL "$pid" 2>/dev/null && log "killed leftover shim $pid"
done

# Container processes left without their shim (containerd killed, say): whatever still runs in the
# node's cgroups, which hold the pods and nothing else.
mapfile -t left < <(find /sys/fs/cgroup/*/"$CGROUP_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
if ((${#left[@]} > 0)); then
    kill -KILL "${left[@]}" 2>/dev/null || true
    for pid in "${left[@]}"; do   # gone, or a zombie (no longer in its cgroup); 10 s at most
        for ((t = 0; t < 200; t++)); do
            [[ -d /proc/$pid && $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
            sleep 0.05
        done
    done
    log "killed ${#left[@]} container processes left in the cgroup $CGROUP_PARENT"
fi

# Mounts under the node's directories (container root filesystems, the kubelet's volumes,
# network namespaces), deepest first.
mapfile -t mounts < <(findmnt -rn -o TARGET | awk -v a="$NODE_DIR/" -v b="$NODE_RUN/" \
    'index($0, a) == 1 || index($0, b) == 1' | sort -r)
for m in "${mounts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
done
((${#mounts[@]} == 0)) || log "unmounted ${#mounts[@]} mounts"

stop_one socat

for parent_chain in FORWARD:"$FW_CHAIN" OUTPUT:"$FW_OUT_CHAIN"; do
    parent=${parent_chain%%:*}
    chain=${parent_chain#*:}
    while iptables -w -C "$parent" -j "$chain" 2>/dev/null; do
        iptables -w -D "$parent" -j "$chain"
    done
    if iptables -w -n -L "$chain" >/dev/null 2>&1; then
        iptables -w -F "$chain"
        iptables -w -X "$chain"
        log "removed iptables chain $chain"
    fi
done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE"
    log "removed bridge $BRIDGE"
fi

# The cgroups (empty once every container is gone), deepest first.
for h in /sys/fs/cgroup/*/; do
    [[ -d $h$CGROUP_PARENT ]] || continue
    find "$h$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null \
        || log "could not remove every cgroup under $h$CGROUP_PARENT: $(find "$h$CGROUP_PARENT" -type d | head -3 | tr '\n' ' ')"
done

# The kubelet's links to container logs in /var/log/containers that point into this node.
if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/*" -delete
fi
# The shims' sockets live in /run/containerd/s/ whatever the daemon's state dir (containerd's shim
# code fixes it), named by the sha256 of "<containerd socket>/<namespace>/<id>". A shim removes its
# own when it exits, not when it was killed: those of the task bundles still here go. The
# directories go too once empty (another containerd's would not be).
for b in "$NODE_RUN"/containerd/io.containerd.runtime.v2.task/*/*/; do
    [[ -d $b ]] || continue
    id=$(basename "$b")
    ns=$(basename "$(dirname "$b")")
    rm -f "/run/containerd/s/$(printf '%s' "$CONTAINERD_SOCK/$ns/$id" | sha256sum | cut -c1-64)"
done
rmdir /run/containerd/s /run/containerd 2>/dev/null || true
# The addresses host-local handed out belong to sandboxes that are gone now.
rm -rf --one-file-system "$NODE_DIR/cni/ipam" "$NODE_RUN"
log "real node removed"
