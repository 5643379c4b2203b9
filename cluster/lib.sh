# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings and helpers for cluster/up.sh and cluster/down.sh (sourced, not executed).
# Every server binds 127.0.0.1 only. Ports have defaults, can be set through the environment, and
# move to the next free ones when another process (another clone's cluster) holds them; the ports
# used are kept in the state directory, so a running cluster is found again.

CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$CLUSTER_SRC")
STATE=${TASKQ_CLUSTER_DIR:-$REPO_DIR/.state/cluster}
PKI=$STATE/pki
PIDS=$STATE/pids
LOGS=$STATE/logs
KUBECONFIG_OUT=$STATE/kubeconfig

# Ports set in the environment are used as they are; the others may move (cluster/up.sh).
EXPLICIT_PORTS=" ${TASKQ_ETCD_PORT:+ETCD_PORT} ${TASKQ_ETCD_PEER_PORT:+ETCD_PEER_PORT} \
${TASKQ_APISERVER_PORT:+APISERVER_PORT} ${TASKQ_KCM_PORT:+KCM_PORT} \
${TASKQ_SCHEDULER_PORT:+SCHEDULER_PORT} "
# Ports a previous cluster/up.sh used in this state directory (only where not set in the environment),
# so that a cluster started with overrides, or on ports it moved to, is found again.
if [[ -f $STATE/ports.env ]]; then
    # shellcheck source=/dev/null
    source "$STATE/ports.env"
fi
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

# http_ok URL [CA_FILE|insecure] [CERT KEY]: GET URL answers 2xx within 2s. curl if installed,
# else Python's urllib (a minimal Debian may lack curl; python3 is there for the project anyway).
http_ok() {
    local url=$1 ca=${2:-} cert=${3:-} key=${4:-}
    if command -v curl >/dev/null 2>&1; then
        local args=(-sf --max-time 2 -o /dev/null)
        if [[ $ca == insecure ]]; then args+=(-k); elif [[ -n $ca ]]; then args+=(--cacert "$ca"); fi
        [[ -z $cert ]] || args+=(--cert "$cert" --key "$key")
        curl "${args[@]}" "$url" 2>/dev/null
    else
        python3 - "$url" "$ca" "$cert" "$key" 2>/dev/null <<'PY'
import ssl, sys, urllib.request
url, ca, cert, key = sys.argv[1:5]
ctx = None
if url.startswith("https"):
    ctx = ssl.create_default_context(cafile=ca if ca not in ("", "insecure") else None)
    if ca == "insecure":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
    sys.exit(0 if 200 <= r.status < 300 else 1)
PY
    fi
}

apiserver_ready() {
    [[ -f $PKI/admin.crt ]] || return 1
    http_ok "https://127.0.0.1:$APISERVER_PORT/readyz" "$PKI/ca.crt" "$PKI/admin.crt" "$PKI/admin.key"
}

# Seconds since $start_ms (set by the script), e.g. 3.217s.
start_ms=$(date +%s%3N)
elapsed() { local ms=$(( $(date +%s%3N) - start_ms )); echo "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"; }

# start NAME BINARY ARGS...: run detached (own session), log to logs/NAME.log, pid to pids/NAME.pid.
start() {
    local name=$1 pid i
    shift
    pid=$(component_pid "$name")
    if [[ -n $pid ]]; then
        return 0
    fi
    {
        echo "=== $(date -u +%FT%TZ) starting: $*"
    } >>"$LOGS/$name.log"
    # fd 8 (the up.sh lock) must not leak into the daemons, or the next up.sh would block on it.
    setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 8>&- &
    pid=$!
    echo "$pid" >"$PIDS/$name.pid"
    # Until setsid has exec'd the binary, /proc/$pid/cmdline is still a copy of this script's, and
    # component_pid would call the component dead.
    for ((i = 0; i < 100; i++)); do
        [[ -n $(component_pid "$name") || ! -d /proc/$pid ]] && break
        sleep 0.02
    done
    log "started $name (pid $pid) at +$(elapsed)"
}

# wait_until DESCRIPTION SECONDS COMPONENT COMMAND...: poll COMMAND; fail early if COMPONENT died.
wait_until() {
    local what=$1 timeout=$2 comp=$3 deadline
    shift 3
    deadline=$(( $(date +%s) + timeout ))
    until "$@" >/dev/null 2>&1; do
        if [[ -z $(component_pid "$comp") ]]; then
            log "$comp exited while waiting for $what; last lines of $LOGS/$comp.log:"
            tail -n 30 "$LOGS/$comp.log" >&2
            exit 1
        fi
        if (( $(date +%s) >= deadline )); then
            log "timed out after ${timeout}s waiting for $what; last lines of $LOGS/$comp.log:"
            tail -n 30 "$LOGS/$comp.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "$what at +$(elapsed)"
}
