#!/usr/bin/env bash
# The pod sandbox ("pause") image of the real node, built here because no registry is reachable:
# pause.c from the pinned k8s.io/kubernetes module (tools/kubelet, build/pause/linux/pause.c, the
# source of registry.k8s.io/pause) compiled statically with gcc as kubernetes' build/pause/Makefile
# does, and packed by hand as a one-layer OCI image archive that `ctr images import` reads.
#
#   cluster/pause-image.sh     build if needed; print the archive's path
#
# Cached next to the Go tools: ${TASKQ_TOOLS_CACHE:-~/.cache/taskq-tools}/pause-<version>/.
# The image is named $PAUSE_IMAGE (cluster/node-lib.sh), not registry.k8s.io/pause: it is our build.
set -euo pipefail
# shellcheck source=cluster/node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

out=$TOOLS_CACHE/pause-$PAUSE_VERSION
if [[ -f $out/pause.oci.tar ]]; then
    echo "$out/pause.oci.tar"
    exit 0
fi
command -v gcc >/dev/null || { log "the pause image needs gcc (Debian: apt-get install gcc)"; exit 1; }
go=$("$REPO_DIR/tools/build.sh" --go)
kube_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3; exit }' "$REPO_DIR/tools/kubelet/go.mod")
src=$(cd "$REPO_DIR/tools/kubelet" && GOFLAGS=-mod=readonly "$go" mod download -json "k8s.io/kubernetes@$kube_version" \
    | awk -F'"' '$2 == "Dir" { print $4 }')
[[ -f $src/build/pause/linux/pause.c ]] || { log "no build/pause/linux/pause.c in $src"; exit 1; }

mkdir -p "$TOOLS_CACHE"
tmp=$(mktemp -d "$TOOLS_CACHE/.pause.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root" "$tmp/oci/blobs/sha256"
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-taskq" -o "$tmp/root/pause" "$src/build/pause/linux/pause.c"
strip "$tmp/root/pause"

# blob FILE: store FILE in the layout under its digest; print "sha256:<hex> <size>".
blob() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    cp "$1" "$tmp/oci/blobs/sha256/$d"
    echo "sha256:$d $s"
}
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$tmp/root" -cf "$tmp/layer.tar" pause
read -r layer_digest layer_size < <(blob "$tmp/layer.tar")
printf '%s' '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535","WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["'"$layer_digest"'"]}}' >"$tmp/config.json"
read -r config_digest config_size < <(blob "$tmp/config.json")
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'"$config_digest"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"'"$layer_digest"'","size":'"$layer_size"'}]}' >"$tmp/manifest.json"
read -r manifest_digest manifest_size < <(blob "$tmp/manifest.json")
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"'"$manifest_digest"'","size":'"$manifest_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$PAUSE_IMAGE"'","org.opencontainers.image.ref.name":"'"$PAUSE_VERSION"'"}}]}' >"$tmp/oci/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci/oci-layout"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$tmp/oci" -cf "$tmp/pause.oci.tar" .
mkdir -p "$out"
mv "$tmp/pause.oci.tar" "$out/pause.oci.tar.tmp"
mv "$out/pause.oci.tar.tmp" "$out/pause.oci.tar"
log "built $PAUSE_IMAGE from $src/build/pause/linux/pause.c: $out/pause.oci.tar"
echo "$out/pause.oci.tar"
