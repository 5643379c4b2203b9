#!/usr/bin/env bash
# Stop every process cluster/up.sh started, by its pid file: the real node of cluster/node-up.sh if
# there is one (cluster/node-down.sh), the API server's clients, then the API server, then etcd; wait for each to exit (SIGTERM, then SIGKILL after 15s). Certificates and etcd data are kept, so the next
# cluster/up.sh is a warm start with the same objects. --purge also deletes .state/cluster/.
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=0
for a in "$@"; do
    case $a in
        --purge) purge=1 ;;
        *) log "usage: $0 [--purge]"; exit 2 ;;
    esac
done

# stop NAME...: SIGTERM them all at once, wait for each (SIGKILL after 15s), drop the pid files.
stop() {
    local c pid t
    local -A pids=()
    for c in "$@"; do
        pid=$(component_pid "$c")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids[$c]=$pid
        fi
    done
    for c in "${!pids[@]}"; do
        pid=${pids[$c]}
        for ((t = 0; t < 300; t++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.05
        done
        if [[ -d /proc/$pid ]]; then
            log "$c (pid $pid) ignored SIGTERM for 15s; killing"
            kill -KILL "$pid" 2>/dev/null || true
            while [[ -d /proc/$pid ]]; do sleep 0.05; done
        fi
        log "stopped $c (pid $pid)"
    done
    for c in "$@"; do
        rm -f "$PIDS/$c.pid"
    done
}

rm -f "$STATE/.nodes-ready"
# The real node first, if one was started (cluster/node-up.sh): its pods, network and mounts go.
"$CLUSTER_SRC/node-down.sh"
# Clients of the API server first (together), then the API server, then etcd.
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

if [[ $purge == 1 ]]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
