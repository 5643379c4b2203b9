# Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) built from the pinned Go modules in tools/. Included by the root Makefile.
#   make tools          build (once per machine, cached by version outside the clone) kube-apiserver,
#                       kube-controller-manager, kube-scheduler, kubectl, etcd, etcdctl, kwok;
#                       quick no-op when cached. Binaries are symlinked into .state/bin/.
#   make cluster-up     start it (idempotent); prints the kubeconfig path
#   make cluster-down   stop every process it started (state kept for a warm start)
#   make cluster-purge  stop it and delete .state/cluster/ (certificates, etcd data, logs)
# Clients use the admin kubeconfig at $(CLUSTER_KUBECONFIG) (.state/cluster/kubeconfig) and
# $(CLUSTER_KUBECTL) (.state/bin/kubectl).

CLUSTER_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CLUSTER_REPO_DIR := $(abspath $(CLUSTER_MK_DIR)/..)
CLUSTER_KUBECONFIG := $(CLUSTER_REPO_DIR)/.state/cluster/kubeconfig
# kubectl of the same version as the server (built by `make tools`).
CLUSTER_KUBECTL := $(CLUSTER_REPO_DIR)/.state/bin/kubectl
export CLUSTER_KUBECONFIG CLUSTER_KUBECTL

.PHONY: tools cluster-up cluster-down cluster-purge

tools:
	@$(CLUSTER_REPO_DIR)/tools/build.sh all >/dev/null

cluster-up:
	@$(CLUSTER_REPO_DIR)/cluster/up.sh

cluster-down:
	@$(CLUSTER_REPO_DIR)/cluster/down.sh

cluster-purge:
	@$(CLUSTER_REPO_DIR)/cluster/down.sh --purge
