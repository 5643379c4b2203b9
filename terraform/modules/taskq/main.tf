locals {
  chart            = coalesce(var.chart, "${path.module}/../../../charts/taskq")
  watch_namespaces = var.watch_namespaces == null ? [var.namespace] : var.watch_namespaces
  database_secret  = var.database_secret_name != null ? var.database_secret_name : (var.create_database_secret ? "${var.release_name}-database" : "")

  # The inputs of this module, applied on top of var.values (Helm merges values files in order,
  # deeply, the later winning). Keys are set only for the inputs that were given.
  module_values = merge(
    {
      crds     = { create = var.crds_create }
      operator = { watchNamespaces = local.watch_namespaces }
    },
    local.database_secret == "" ? {} : {
      database = { existingSecret = local.database_secret, secretKey = var.database_secret_key }
    },
    var.image == null ? {} : {
      image = merge(
        { repository = var.image.repository, tag = var.image.tag, digest = var.image.digest },
        var.image.pull_policy == "" ? {} : { pullPolicy = var.image.pull_policy },
      )
    },
    local.placement,
    var.api == null ? {} : { api = local.api_values },
  )

  # Where the chart's pods run (the operator's; the API's too, through api_values). Unset
  # toleration fields are left out rather than sent as nulls.
  tolerations = [
    for t in var.tolerations : {
      for k, v in {
        key               = t.key
        operator          = t.operator
        value             = t.value
        effect            = t.effect
        tolerationSeconds = t.toleration_seconds
      } : k => v if v != null
    }
  ]
  placement = merge(
    length(var.node_selector) == 0 ? {} : { nodeSelector = var.node_selector },
    length(local.tolerations) == 0 ? {} : { tolerations = local.tolerations },
  )

  api_values = var.api == null ? null : merge(
    {
      enabled  = true
      replicas = var.api.replicas
      port     = var.api.port
      grpc     = { enabled = var.api.grpc, port = var.api.grpc_port }
    },
    var.api.image == null ? {} : {
      image = { repository = var.api.image.repository, tag = var.api.image.tag, digest = var.api.image.digest }
    },
    local.placement,
    var.api.ingress_host == null ? {} : {
      ingress = {
        enabled   = true
        className = var.api.ingress_class
        hosts     = [var.api.ingress_host]
        tls       = var.api.ingress_tls_secret == null ? [] : [{ hosts = [var.api.ingress_host], secretName = var.api.ingress_tls_secret }]
      }
    },
  )

  # The chart's names (`taskq.fullname` and `taskq.apiName` in charts/taskq/templates/_helpers.tpl),
  # for the outputs: the in-cluster address of the API's Service. The apply test checks them
  # against the Service the chart made.
  chart_name = try(var.values.nameOverride, "") != "" ? var.values.nameOverride : "taskq"
  fullname = trimsuffix(substr(
    try(var.values.fullnameOverride, "") != "" ? var.values.fullnameOverride : (
      strcontains(var.release_name, local.chart_name) ? var.release_name : "${var.release_name}-${local.chart_name}"
    ), 0, 63
  ), "-")
  api_host = "${trimsuffix(substr("${local.fullname}-api", 0, 63), "-")}.${var.namespace}.svc"
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/managed-by"       = "opentofu"
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
    }
  }
}

# The operator's default database DSN. `data_wo` is write-only: the DSN goes to the API server
# but is kept neither in the plan nor in the state.
resource "kubernetes_secret_v1" "database" {
  count = var.create_database_secret ? 1 : 0

  metadata {
    name      = local.database_secret
    namespace = var.namespace
    labels = {
      "app.kubernetes.io/managed-by" = "opentofu"
      "app.kubernetes.io/part-of"    = "taskq"
    }
  }
  type             = "Opaque"
  data_wo          = { (var.database_secret_key) = var.database_dsn }
  data_wo_revision = var.database_dsn_version

  lifecycle {
    precondition {
      condition     = !var.create_database_secret || var.database_dsn != null
      error_message = "create_database_secret is true but database_dsn is null."
    }
  }

  depends_on = [kubernetes_namespace_v1.this]
}

resource "helm_release" "this" {
  name       = var.release_name
  namespace  = var.namespace
  chart      = local.chart
  repository = var.chart_repository
  version    = var.chart_version

  values = [yamlencode(var.values), yamlencode(local.module_values)]

  wait            = var.wait
  timeout         = var.timeout
  cleanup_on_fail = true

  depends_on = [kubernetes_namespace_v1.this, kubernetes_secret_v1.database]
}
