variable "namespace" {
  description = "Namespace of the release (and of the default database Secret)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "namespace must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."
  }
}

variable "create_namespace" {
  description = "Create the namespace (labelled for the `restricted` Pod Security profile). Set false when it exists already."
  type        = bool
  default     = true
  nullable    = false
}

variable "release_name" {
  description = "Name of the Helm release."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.release_name)) && length(var.release_name) <= 53
    error_message = "release_name must be a DNS-1123 label of at most 53 characters (Helm's limit)."
  }
}

variable "chart" {
  description = "The chart: a local path, or a chart name within `chart_repository`. Null: the chart of this repository (`charts/taskq`)."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Repository URL of the chart (`https://...` or `oci://...`); null for a local path."
  type        = string
  default     = null

  validation {
    condition     = var.chart_repository == null || can(regex("^(https|oci)://", var.chart_repository))
    error_message = "chart_repository must start with https:// or oci://."
  }
}

variable "chart_version" {
  description = "Chart version to install from `chart_repository`; null: the latest (not recommended)."
  type        = string
  default     = null
}

variable "image" {
  description = "The operator image. Null keeps the chart's defaults. `digest` (sha256:...) takes precedence over `tag`. `pull_policy` (Always, IfNotPresent or Never; empty: the chart's IfNotPresent): Never for an image imported into the nodes' runtime, where no registry is reachable."
  type = object({
    repository  = string
    tag         = optional(string, "")
    digest      = optional(string, "")
    pull_policy = optional(string, "")
  })
  default = null

  validation {
    condition     = var.image == null || try(length(trimspace(var.image.repository)) > 0, false)
    error_message = "image.repository must not be empty."
  }
  validation {
    condition     = var.image == null || try(var.image.digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.image.digest)), false)
    error_message = "image.digest must be empty or sha256: followed by 64 lowercase hex digits."
  }
  validation {
    condition     = var.image == null || try(contains(["", "Always", "IfNotPresent", "Never"], var.image.pull_policy), false)
    error_message = "image.pull_policy must be empty, Always, IfNotPresent or Never."
  }
}

variable "node_selector" {
  description = "Node labels the chart's pods (the operator's and, with `api`, the API server's) must match, as a pod's nodeSelector. Empty: the chart's default (none)."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for k, v in var.node_selector : can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-._A-Za-z0-9]{0,61}[A-Za-z0-9])?$", k)) && can(regex("^([A-Za-z0-9]([-._A-Za-z0-9]{0,61}[A-Za-z0-9])?)?$", v))])
    error_message = "node_selector must map label keys ([prefix/]name) to label values (at most 63 characters of letters, digits, '-', '_', '.')."
  }
}

variable "tolerations" {
  description = "Tolerations of the chart's pods (the operator's and, with `api`, the API server's), as in a pod spec: `operator` Equal (with `value`) or Exists, `effect` NoSchedule, PreferNoSchedule, NoExecute or null (all), `toleration_seconds` for NoExecute. Empty: the chart's default (none)."
  type = list(object({
    key                = optional(string)
    operator           = optional(string, "Equal")
    value              = optional(string)
    effect             = optional(string)
    toleration_seconds = optional(number)
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for t in var.tolerations : contains(["Equal", "Exists"], t.operator) && (t.operator == "Exists" ? t.value == null : t.key != null)])
    error_message = "tolerations: operator must be Equal (with a key) or Exists (without a value)."
  }
  validation {
    condition     = alltrue([for t in var.tolerations : t.effect == null || contains(["NoSchedule", "PreferNoSchedule", "NoExecute"], coalesce(t.effect, "-"))])
    error_message = "tolerations: effect must be NoSchedule, PreferNoSchedule, NoExecute or null."
  }
  validation {
    condition     = alltrue([for t in var.tolerations : t.toleration_seconds == null || (t.effect == "NoExecute" && try(floor(t.toleration_seconds) == t.toleration_seconds, false))])
    error_message = "tolerations: toleration_seconds is a whole number, and only for the NoExecute effect."
  }
}

variable "api" {
  description = "Deploy the REST API server (the chart's `api` values). Null: not deployed. `replicas` pods behind a Service on `port`; `image` null keeps the chart's default; `grpc` adds the gRPC port `grpc_port` to the pods and the Service; `ingress_host` makes an Ingress for that host (IngressClass `ingress_class`, empty: the cluster's default; TLS from the Secret `ingress_tls_secret` when set). The API reads the default database Secret. With `wait`, the apply waits until its pods are ready, i.e. until they reach the database."
  type = object({
    replicas = optional(number, 2)
    image = optional(object({
      repository = string
      tag        = optional(string, "")
      digest     = optional(string, "")
    }))
    port               = optional(number, 8000)
    grpc               = optional(bool, false)
    grpc_port          = optional(number, 9090)
    ingress_host       = optional(string)
    ingress_class      = optional(string, "")
    ingress_tls_secret = optional(string)
  })
  default = null

  validation {
    condition     = var.api == null || try(var.api.replicas >= 1 && floor(var.api.replicas) == var.api.replicas, false)
    error_message = "api.replicas must be a whole number of at least 1."
  }
  validation {
    condition     = var.api == null || try(alltrue([for p in [var.api.port, var.api.grpc_port] : p >= 1 && p <= 65535 && floor(p) == p]), false)
    error_message = "api.port and api.grpc_port must be ports (1 to 65535)."
  }
  validation {
    condition     = var.api == null || try(var.api.image == null || (length(trimspace(var.api.image.repository)) > 0 && (var.api.image.digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.api.image.digest)))), false)
    error_message = "api.image.repository must not be empty, and api.image.digest must be empty or sha256: followed by 64 lowercase hex digits."
  }
  validation {
    condition     = var.api == null || try(var.api.ingress_host == null || can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", var.api.ingress_host)), false)
    error_message = "api.ingress_host must be a DNS name (lowercase letters, digits, '-' and '.')."
  }
}

variable "values" {
  description = "Chart values (an object, as in values.yaml), passed through. The inputs of this module are applied on top."
  type        = any
  default     = {}
  nullable    = false

  validation {
    condition     = can(keys(var.values))
    error_message = "values must be an object (a map of chart values), not a list or a scalar."
  }
}

variable "watch_namespaces" {
  description = "Namespaces the operator watches. Null: only `namespace` (least privilege: namespaced Roles only). An empty list: every namespace (cluster-wide RBAC)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.watch_namespaces == null || alltrue([for n in coalesce(var.watch_namespaces, []) : can(regex("^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$", n))])
    error_message = "watch_namespaces must hold namespace names or globs such as team-*."
  }
}

variable "crds_create" {
  description = "Install the TaskQueue and WorkerPool CRDs with the chart (they are kept on uninstall). False when they are managed elsewhere."
  type        = bool
  default     = true
  nullable    = false
}

variable "database_secret_name" {
  description = "Name of the Secret (in `namespace`) holding the operator's default database DSN. Null: no default database, unless `create_database_secret` is true (then `<release_name>-database`)."
  type        = string
  default     = null

  validation {
    condition     = var.database_secret_name == null || can(regex("^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", coalesce(var.database_secret_name, "x")))
    error_message = "database_secret_name must be a DNS-1123 subdomain."
  }
}

variable "database_secret_key" {
  description = "Key of the DSN in the default database Secret."
  type        = string
  default     = "dsn"
  nullable    = false

  validation {
    condition     = can(regex("^[-._a-zA-Z0-9]+$", var.database_secret_key))
    error_message = "database_secret_key must be a valid Secret key ([-._a-zA-Z0-9]+)."
  }
}

variable "create_database_secret" {
  description = "Create the default database Secret from `database_dsn`."
  type        = bool
  default     = false
  nullable    = false
}

variable "database_dsn" {
  description = "The default database DSN (postgresql://user:password@host:5432/db), written to the Secret as a write-only attribute: it is stored neither in the state nor in the plan. Required when `create_database_secret` is true."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "database_dsn_version" {
  description = "Bump to rewrite the Secret with a new `database_dsn` (write-only values are sent only when this changes)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.database_dsn_version >= 1 && floor(var.database_dsn_version) == var.database_dsn_version
    error_message = "database_dsn_version must be a positive integer."
  }
}

variable "wait" {
  description = "Wait until the operator's Deployment is available before marking the release successful."
  type        = bool
  default     = true
  nullable    = false
}

variable "timeout" {
  description = "Seconds to wait for Helm operations."
  type        = number
  default     = 300
  nullable    = false

  validation {
    condition     = var.timeout >= 30 && var.timeout <= 3600
    error_message = "timeout must be between 30 and 3600 seconds."
  }
}
