# Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) built from the pinned Go modules in tools/. Included by the root Makefile.
#   make tools          build (once per machine, cached by version outside the clone) kube-apiserver,
#                       kube-controller-manager, kube-scheduler, kubectl, etcd, etcdctl, kwok;
#                       quick no-op when cached. Binaries are symlinked into .state/bin/.
#   make cluster-up     start it (idempotent); prints the kubeconfig path. As root it starts the
#                       real node too (node-up below; node-tools built on first use), so the
#                       cluster has one node that runs pods; TASKQ_CLUSTER_NODE=0 leaves it out.
#                       Not root: the control plane alone, and it says so
#   make node-tools     build the real node's tools (kubelet, kube-proxy, containerd, runc, CNI
#                       plugins, crictl; installs gcc, libseccomp-dev, socat, iptables, nftables
#                       from Debian when missing)
#   make node-up        cluster-up, plus a real node (containerd + kubelet, root; cluster/node-up.sh)
#   make node-images    import the project's images (make image-build) into the node's containerd
#   make node-down      stop the real node and remove what it made (the control plane stays)
#   make cluster-down   stop every process it started, the real node included (state kept for a
#                       warm start)
#   make cluster-purge  stop it and delete .state/cluster/ (certificates, etcd data, logs)
# Clients use the admin kubeconfig at $(CLUSTER_KUBECONFIG) (.state/cluster/kubeconfig) and
# $(CLUSTER_KUBECTL) (.state/bin/kubectl).

CLUSTER_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CLUSTER_REPO_DIR := $(abspath $(CLUSTER_MK_DIR)/..)
CLUSTER_KUBECONFIG := $(CLUSTER_REPO_DIR)/.state/cluster/kubeconfig
# kubectl of the same version as the server (built by `make tools`).
CLUSTER_KUBECTL := $(CLUSTER_REPO_DIR)/.state/bin/kubectl
export CLUSTER_KUBECONFIG CLUSTER_KUBECTL

.PHONY: tools node-tools node-system cluster-up node-up node-images node-down cluster-down cluster-purge

tools:
	@$(CLUSTER_REPO_DIR)/tools/build.sh all >/dev/null

# Debian packages the real node needs besides the Go tools: gcc and libseccomp's headers (runc is
# built with cgo; the pause binary is C), socat (the API server relay), iptables, iproute2, nft
# (node-down.sh removes the empty tables iptables-nft made for kube-proxy).
node-system:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	pkg-config --exists libseccomp 2>/dev/null || missing="$$missing pkg-config libseccomp-dev"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

node-tools: node-system
	@$(CLUSTER_REPO_DIR)/tools/build.sh node >/dev/null
	@$(CLUSTER_REPO_DIR)/cluster/pause-image.sh >/dev/null

# The real node needs root (cgroups, a bridge, iptables): without it cluster-up starts the kwok
# control plane alone and says why, rather than failing for what the kwok tiers do not need.
cluster-up:
	@case "$${TASKQ_CLUSTER_NODE:-1}" in 0|1) ;; *) \
	  echo "cluster-up: TASKQ_CLUSTER_NODE=$${TASKQ_CLUSTER_NODE} is neither 0 (control plane only) nor 1 (with the real node, the default)"; exit 2;; esac; \
	if [ "$${TASKQ_CLUSTER_NODE:-1}" = 0 ]; then \
	  $(CLUSTER_REPO_DIR)/cluster/up.sh; \
	elif [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory node-up; \
	else \
	  $(CLUSTER_REPO_DIR)/cluster/up.sh && \
	  echo "cluster-up: control plane only: the real node needs root (run make cluster-up as root; TASKQ_CLUSTER_NODE=0 skips it)"; \
	fi

node-up: node-tools
	@$(CLUSTER_REPO_DIR)/cluster/node-up.sh

node-images: image-build
	@$(CLUSTER_REPO_DIR)/cluster/node-images.sh

node-down:
	@$(CLUSTER_REPO_DIR)/cluster/node-down.sh

cluster-down:
	@$(CLUSTER_REPO_DIR)/cluster/down.sh

cluster-purge:
	@$(CLUSTER_REPO_DIR)/cluster/down.sh --purge
