#!/usr/bin/env bash
# Make tofu and its providers available without contacting any registry:
#
#   1. build (or reuse) tofu and the kubernetes, helm and random providers with tools/build.sh
#      (pinned Go tool modules under tools/, binaries cached per user);
#   2. lay the providers out as an unpacked filesystem mirror in .state/terraform/mirror/
#      (HOST/hashicorp/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION, symlinks);
#   3. write a CLI configuration, .state/terraform/tofurc, whose provider_installation has only
#      that filesystem_mirror (no `direct {}`), so `tofu init` never contacts a registry.
#
# Prints `export` lines for TF_CLI_CONFIG_FILE and the tofu binary:  eval "$(terraform/mirror.sh)"
#
# Providers found in TASKQ_TF_PLUGIN_DIRS (colon-separated unpacked mirrors, default /opt/tf-plugins)
# are linked in as well: this is how the aws provider is used on machines that have one. They are
# optional; nothing here downloads them.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$REPO_DIR/.state/terraform
MIRROR=$STATE/mirror
HOST=registry.opentofu.org

# The provider releases the pinned commits correspond to (see tools/terraform-provider-*/go.mod
# and docs/terraform.md): the versions under which tofu sees them.
PROVIDERS=(kubernetes helm random)
declare -A PROVIDER_VERSION=([kubernetes]=3.2.1 [helm]=3.2.0 [random]=3.9.0)

tofu_bin=$("$REPO_DIR/tools/build.sh" --no-link tofu)/tofu
case $(uname -m) in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
platform=$(uname -s | tr A-Z a-z)_$arch

mkdir -p "$STATE"
exec 8>"$STATE/.lock"   # concurrent callers (make, test sessions) take turns
flock 8
rm -rf "$MIRROR"
mkdir -p "$MIRROR"
for type in "${PROVIDERS[@]}"; do
    v=${PROVIDER_VERSION[$type]}
    bin=$("$REPO_DIR/tools/build.sh" --no-link "terraform-provider-$type")/terraform-provider-$type
    dir=$MIRROR/$HOST/hashicorp/$type/$v/$platform
    mkdir -p "$dir"
    ln -s "$bin" "$dir/terraform-provider-${type}_v$v"
done

IFS=: read -r -a extra <<<"${TASKQ_TF_PLUGIN_DIRS-/opt/tf-plugins}"
for d in "${extra[@]}"; do
    [[ -d $d ]] || continue
    # d/HOST/NAMESPACE/TYPE/VERSION/PLATFORM: re-home every provider under $HOST.
    while IFS= read -r pdir; do
        rel=${pdir#"$d"/}
        IFS=/ read -r _host ns type v plat <<<"$rel"
        [[ $plat == "$platform" && ! -e $MIRROR/$HOST/$ns/$type ]] || continue
        mkdir -p "$MIRROR/$HOST/$ns/$type/$v"
        ln -s "$pdir" "$MIRROR/$HOST/$ns/$type/$v/$plat"
    done < <(find "$d" -mindepth 5 -maxdepth 5 -type d)
done

cat >"$STATE/tofurc" <<CFG
# Written by terraform/mirror.sh. Providers come only from the local filesystem mirror; there is
# no direct {} block, so no registry is ever contacted.
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["$HOST/*/*"]
  }
}
CFG

echo "export TF_CLI_CONFIG_FILE=$STATE/tofurc"
echo "export TOFU=$tofu_bin"
