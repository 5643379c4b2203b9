variable "kubeconfig" {
  description = "Path of the kubeconfig of the target cluster."
  type        = string
  default     = "../../../.state/cluster/kubeconfig"
  nullable    = false
}

variable "namespace" {
  description = "Namespace to install into (created and destroyed with the release)."
  type        = string
  default     = "tf-taskq"
  nullable    = false

  validation {
    condition     = startswith(var.namespace, "tf-")
    error_message = "On the shared local cluster, namespaces managed by Terraform start with tf-."
  }
}

variable "release_name" {
  description = "Name of the Helm release."
  type        = string
  default     = "tf-taskq"
  nullable    = false
}

variable "chart" {
  description = "Path of the chart; null: this repository's charts/taskq."
  type        = string
  default     = null
}

variable "crds_create" {
  description = "Install the CRDs with the release (false on a cluster where they exist already)."
  type        = bool
  default     = false
  nullable    = false
}

variable "database_dsn" {
  description = "DSN of the operator's default database (stored write-only in a Kubernetes Secret)."
  type        = string
  default     = "postgresql://taskq@127.0.0.1:5432/taskq"
  sensitive   = true
  ephemeral   = true
}
