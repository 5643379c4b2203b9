#!/usr/bin/env bash
# Put the project's images (built by `make image-build` into the local Docker engine) into the real
# node's containerd, namespace k8s.io, where the kubelet finds them: pods use them with
# imagePullPolicy Never (or IfNotPresent), since no registry is reachable here.
#
#   cluster/node-images.sh [IMAGE...]    default: taskq-worker, taskq-operator, taskq-api :0.1.0
#
# An image is imported again only when Docker's image id differs from the one imported last time
# (kept in .state/cluster/node/images/). Needs the node running (cluster/node-up.sh) and root.
set -euo pipefail
# shellcheck source=cluster/node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(taskq-worker:0.1.0 taskq-operator:0.1.0 taskq-api:0.1.0)
[[ -n $(component_pid containerd) ]] || { log "the real node's containerd is not running: make node-up"; exit 1; }
command -v docker >/dev/null || { log "no docker client: the images come from make image-build"; exit 1; }
CONTAINERD_BIN=$("$REPO_DIR/tools/build.sh" --path containerd)
ctr() {
    "$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@" \
        2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2)
}
mkdir -p "$NODE_DIR/images"
for image in "${images[@]}"; do
    id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) \
        || { log "no image $image in the Docker engine: make image-build"; exit 1; }
    # Docker names it docker.io/library/NAME:TAG, as the kubelet does for a pod's "NAME:TAG".
    ref=docker.io/library/$image
    [[ $image == */* ]] && ref=$image
    mark=$NODE_DIR/images/${image//[\/:]/_}.id
    if [[ -f $mark && $(<"$mark") == "$id" ]] && ctr images ls -q "name==$ref" | grep -q .; then
        continue
    fi
    t0=$(date +%s%3N)
    docker save "$image" | ctr images import --local - >/dev/null
    echo "$id" >"$mark"
    log "imported $ref (${id:7:12}) in $(( $(date +%s%3N) - t0 ))ms"
done
