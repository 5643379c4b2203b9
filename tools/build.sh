#!/usr/bin/env bash
# Build a pinned Go tool from its module under tools/<tool>/ into a cache directory outside the
# clone, keyed by version (plus a stamp: a hash of go.mod, go.sum and the build recipe):
#
#   ${TASKQ_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskq-tools}/<tool>-<version>/bin/
#
# A warm cache makes this a no-op (a few milliseconds). Each binary is also symlinked into
# <repo>/.state/bin/ (git-ignored) so scripts and tests find them in one place.
#
#   tools/build.sh kube etcd kwok     build (if needed) and print each tool's bin directory
#   tools/build.sh all                the same for every tool (of the control plane and helm)
#   tools/build.sh terraform          tofu and its providers (used through terraform/mirror.sh)
#   tools/build.sh jaeger             the trace receiver and store of the tracing tests
#   tools/build.sh node               the real node: kubelet, kube-proxy, containerd, runc, CNI plugins, crictl (runc
#                                     needs cgo: gcc and libseccomp-dev, `make node-tools`)
#   tools/build.sh --path kube        print the bin directory without building (may not exist)
#   tools/build.sh --no-link ...      do not touch .state/bin/
#   tools/build.sh --go               print the Go used for builds (fetching it first if needed)
#
# Go's module cache and build cache stay at Go's defaults (GOPATH, GOCACHE), outside the repo.
set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$TOOLS_DIR")
CACHE_ROOT=${TASKQ_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskq-tools}
LINK_DIR=$REPO_DIR/.state/bin
ALL_TOOLS=(kube etcd kwok helm)
# Built only on request (`tools/build.sh terraform`, `make terraform-tools`), not by `all`.
TERRAFORM_TOOLS=(tofu terraform-provider-kubernetes terraform-provider-helm terraform-provider-random)
# Built only on request (`tools/build.sh jaeger`, by the tracing tests): the trace receiver.
TRACE_TOOLS=(jaeger)
# Built only on request (`tools/build.sh node`, `make node-tools`): the local cluster's real node.
NODE_TOOLS=(kubelet kube-proxy containerd runc cni crictl)
NO_LINK=0

log() { echo "tools/build.sh: $*" >&2; }

# A Go toolchain for the builds: go on PATH or in the usual places if it is Go >= 1.26, else the
# pinned toolchain fetched once from the module proxy into the cache (tools/fetch_go.py).
GO_BOOTSTRAP_VERSION=1.26.8
declare -A GO_BOOTSTRAP_SHA256=(
    [amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
    [arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)

go_is_recent() {   # go_is_recent GO: is GO at least Go 1.26?
    local v major minor
    v=$(GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null) || return 1
    v=${v#go}
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%[!0-9]*}
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
    (( major > 1 || (major == 1 && minor >= 26) ))
}

find_go() {
    local g arch dest
    if [[ -z ${TASKQ_TOOLS_BOOTSTRAP_GO:-} ]]; then
        for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
            if [[ -n $g && -x $g ]] && go_is_recent "$g"; then echo "$g"; return; fi
        done
    fi
    case $(uname -m) in
        x86_64) arch=amd64 ;;
        aarch64|arm64) arch=arm64 ;;
        *) log "no Go >= 1.26 found and no pinned toolchain for $(uname -m)"; exit 1 ;;
    esac
    dest=$CACHE_ROOT/go-$GO_BOOTSTRAP_VERSION
    if [[ ! -x $dest/bin/go ]]; then
        log "no Go >= 1.26 found; fetching go$GO_BOOTSTRAP_VERSION from the Go module proxy"
        mkdir -p "$CACHE_ROOT"
        python3 "$TOOLS_DIR/fetch_go.py" "$GO_BOOTSTRAP_VERSION" "$arch" \
            "${GO_BOOTSTRAP_SHA256[$arch]}" "$dest" >&2
    fi
    echo "$dest/bin/go"
}

# The version of module $2 required in tools/$1/go.mod.
required_version() {
    awk -v m="$2" '($1 == m) && ($2 ~ /^v/) { print $2; exit } ($1 == "require") && ($2 == m) { print $3; exit }' \
        "$TOOLS_DIR/$1/go.mod"
}

# The package of the (single-line) `tool` directive in tools/$1/go.mod.
tool_directive() { awk '$1 == "tool" { print $2; exit }' "$TOOLS_DIR/$1/go.mod"; }

# tool -> main module whose version names the cache dir; packages to build; ldflags.
tool_version() {
    case $1 in
        kube) required_version kube k8s.io/kubernetes ;;
        kubelet) required_version kubelet k8s.io/kubernetes ;;
        kube-proxy) required_version kube-proxy k8s.io/kubernetes ;;
        etcd) required_version etcd go.etcd.io/etcd/server/v3 ;;
        kwok) required_version kwok sigs.k8s.io/kwok ;;
        helm) required_version helm helm.sh/helm/v3 ;;
        tofu) required_version tofu github.com/opentofu/opentofu ;;
        jaeger) required_version jaeger github.com/jaegertracing/jaeger ;;
        containerd) required_version containerd github.com/containerd/containerd/v2 ;;
        runc) required_version runc github.com/opencontainers/runc ;;
        cni) required_version cni github.com/containernetworking/plugins ;;
        crictl) required_version crictl sigs.k8s.io/cri-tools ;;
        terraform-provider-*) required_version "$1" "$(tool_directive "$1")" ;;
        *) log "unknown tool: $1 (known: ${ALL_TOOLS[*]} ${TERRAFORM_TOOLS[*]} ${TRACE_TOOLS[*]} ${NODE_TOOLS[*]})"; exit 2 ;;
    esac
}

tool_packages() {
    case $1 in
        kube) echo k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
                   k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
        kubelet) echo k8s.io/kubernetes/cmd/kubelet ;;
        kube-proxy) echo k8s.io/kubernetes/cmd/kube-proxy ;;
        etcd) echo go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 ;;
        kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
        tofu) echo github.com/opentofu/opentofu/cmd/tofu ;;
        jaeger) echo github.com/jaegertracing/jaeger/cmd/jaeger ;;
        containerd) local c=github.com/containerd/containerd/v2/cmd
                    echo "$c/containerd $c/ctr $c/containerd-shim-runc-v2" ;;
        runc) echo github.com/opencontainers/runc ;;
        cni) local p=github.com/containernetworking/plugins/plugins
             echo "$p/main/bridge $p/ipam/host-local $p/main/loopback" ;;
        crictl) echo sigs.k8s.io/cri-tools/cmd/crictl ;;
        terraform-provider-*) tool_directive "$1" ;;
        helm) echo helm.sh/helm/v3/cmd/helm ;;
    esac
}

tool_ldflags() {
    local v=$2
    case $1 in
        kube|kubelet|kube-proxy)
            # What kubernetes' hack/lib/version.sh sets, so /version reports the real version.
            local major=${v#v}; major=${major%%.*}
            local minor=${v#v*.}; minor=${minor%%.*}
            local x
            for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
                x+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
                x+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
            done
            echo "-s -w$x" ;;
        etcd|jaeger) echo "-s -w" ;;
        containerd) local c=github.com/containerd/containerd/v2
            echo "-s -w -X $c/version.Version=$v -X $c/version.Package=$c" ;;
        runc) echo "-s -w" ;;   # runc's version is its embedded VERSION file
        cni) echo "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" ;;
        crictl) echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" ;;
        kwok) echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" ;;
        tofu) echo "-s -w -X github.com/opentofu/opentofu/version.dev=no" ;;   # version: its VERSION file
        terraform-provider-*) echo "-s -w" ;;
        helm)
            # What helm's Makefile sets: the release version, and the Kubernetes version helm
            # assumes for rendering (.Capabilities) from the client-go it was built with.
            local cg; cg=$(required_version helm k8s.io/client-go); cg=${cg#v0.}; cg=${cg%%.*}
            local hv=helm.sh/helm/v3
            echo "-s -w -X $hv/internal/version.version=$v -X $hv/internal/version.metadata=" \
                 "-X $hv/internal/version.gitTreeState=clean" \
                 "-X $hv/pkg/lint/rules.k8sVersionMajor=1 -X $hv/pkg/lint/rules.k8sVersionMinor=$cg" \
                 "-X $hv/pkg/chartutil.k8sVersionMajor=1 -X $hv/pkg/chartutil.k8sVersionMinor=$cg" ;;
    esac
}

tool_tags() {
    case $1 in
        kube|kubelet|kube-proxy) echo "notest,grpcnotrace" ;;
        # what containerd's and runc's Makefiles set (runc without libpathrs: a Rust library)
        containerd) echo "urfave_cli_no_docs" ;;
        runc) echo "seccomp,urfave_cli_no_docs" ;;
        *) echo "" ;;
    esac
}

# runc is built with cgo (its nsenter is C; seccomp links libseccomp), like runc's own Makefile;
# everything else is pure Go.
tool_cgo() {
    case $1 in
        runc) echo 1 ;;
        *) echo 0 ;;
    esac
}

# What a build depends on besides the Go toolchain: the module files and the recipe.
stamp_of() {
    {
        cat "$TOOLS_DIR/$1/go.mod" "$TOOLS_DIR/$1/go.sum"
        echo "packages: $(tool_packages "$1")"
        echo "ldflags: $(tool_ldflags "$1" "$(tool_version "$1")")"
        echo "tags: $(tool_tags "$1")"
        [[ $(tool_cgo "$1") == 0 ]] || echo "cgo: $(tool_cgo "$1")"
    } | sha256sum | cut -c1-16
}

bin_dir() { echo "$CACHE_ROOT/$1-$(tool_version "$1")/bin"; }

link_bins() {
    local dir=$1 f
    [[ $NO_LINK == 0 ]] || return 0
    mkdir -p "$LINK_DIR"
    find "$LINK_DIR" -maxdepth 1 -xtype l -delete   # links left dangling by an older build
    for f in "$dir"/*; do
        ln -sfn "$f" "$LINK_DIR/$(basename "$f")"
    done
}

build_tool() {
    local tool=$1 version stamp out
    version=$(tool_version "$tool")
    stamp=$(stamp_of "$tool")
    out=$CACHE_ROOT/$tool-$version
    if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then
        link_bins "$out/bin"
        echo "$out/bin"
        return
    fi
    mkdir -p "$CACHE_ROOT"
    # One builder at a time per tool (make tools and a test session may race).
    exec 9>"$CACHE_ROOT/.$tool.lock"
    flock 9
    if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then
        exec 9>&-
        link_bins "$out/bin"
        echo "$out/bin"
        return
    fi
    local go tmp start
    go=$(find_go)
    if [[ $(tool_cgo "$tool") == 1 ]] && ! { command -v gcc >/dev/null && pkg-config --exists libseccomp 2>/dev/null; }; then
        log "$tool needs gcc, pkg-config and libseccomp's headers (Debian: apt-get install gcc pkg-config libseccomp-dev; make node-tools does)"
        exit 1
    fi
    tmp=$(mktemp -d "$CACHE_ROOT/.$tool-$version.XXXXXX")
    start=$(date +%s)
    log "building $tool $version into $out (cold builds take minutes; see docs/control-plane.md)"
    # shellcheck disable=SC2046
    # -mod=readonly: go.mod and go.sum are complete and must not change while building (a build
    # that would need to change them fails instead). GOTOOLCHAIN=auto lets an older Go (e.g.
    # Debian's) fetch the go1.26 toolchain that go.mod asks for from the module proxy.
    (cd "$TOOLS_DIR/$tool" && CGO_ENABLED=$(tool_cgo "$tool") GOFLAGS="-mod=readonly -buildvcs=false" \
        GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
        "$go" build -trimpath -tags "$(tool_tags "$tool")" -ldflags "$(tool_ldflags "$tool" "$version")" \
        -o "$tmp/bin/" $(tool_packages "$tool"))
    if [[ $tool == etcd ]]; then
        mv "$tmp/bin/server" "$tmp/bin/etcd"   # go.etcd.io/etcd/server/v3 builds a binary named "server"
    fi
    echo "$stamp" >"$tmp/stamp"
    rm -rf "$out"
    mv "$tmp" "$out"
    exec 9>&-
    log "built $tool $version in $(( $(date +%s) - start ))s: $(ls "$out/bin" | tr '\n' ' ')"
    link_bins "$out/bin"
    echo "$out/bin"
}

main() {
    local path_only=0 tools=()
    for a in "$@"; do
        case $a in
            --path) path_only=1 ;;
            --no-link) NO_LINK=1 ;;
            --go) find_go; exit 0 ;;
            all) tools+=("${ALL_TOOLS[@]}") ;;
            terraform) tools+=("${TERRAFORM_TOOLS[@]}") ;;
            node) tools+=("${NODE_TOOLS[@]}") ;;
            -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) tools+=("$a") ;;
        esac
    done
    [[ ${#tools[@]} -gt 0 ]] || { log "usage: $0 [--path] all|${ALL_TOOLS[*]// /|}"; exit 2; }
    for t in "${tools[@]}"; do
        if [[ $path_only == 1 ]]; then bin_dir "$t"; else build_tool "$t"; fi
    done
}

main "$@"; exit  # on one line: bash reads scripts lazily, so edits during a long build stay harmless
