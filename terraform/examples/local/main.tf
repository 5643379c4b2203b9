# taskq on an existing cluster reached through a kubeconfig, e.g. the project's local control
# plane (`make cluster-up`; kubeconfig .state/cluster/kubeconfig). The operator watches only its
# own namespace; the API server serves the same database. `make terraform-apply-local` applies
# this and destroys it again.

provider "kubernetes" {
  config_path = var.kubeconfig
}

provider "helm" {
  kubernetes = {
    config_path = var.kubeconfig
  }
}

module "taskq" {
  source = "../../modules/taskq"

  namespace    = var.namespace
  release_name = var.release_name
  chart        = var.chart
  image        = { repository = "taskq-operator", tag = "dev" }
  # CRDs are cluster-wide and kept on uninstall: on a shared cluster they are managed once, elsewhere.
  crds_create            = var.crds_create
  create_database_secret = true
  database_dsn           = var.database_dsn
  values = {
    metrics = { service = { enabled = true } }
  }
  # The REST API too: two pods (so a PodDisruptionBudget), gRPC, an Ingress (no ingress
  # controller runs on the local cluster: the object only).
  api = {
    image        = { repository = "taskq-api", tag = "dev" }
    grpc         = true
    ingress_host = "taskq.local.test"
  }
  timeout = 180
}
