variable "project_id" {
  description = "Google Cloud project of every resource."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project ID (6-30 characters, lowercase letters, digits and '-')."
  }
}

variable "region" {
  description = "Region of the cluster, the network and the database."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "name" {
  description = "Name (and prefix) of every resource: network, GKE cluster, Cloud SQL instance, secrets."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "subnet_cidr" {
  description = "Primary range of the nodes' subnet."
  type        = string
  default     = "10.10.0.0/20"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a CIDR block."
  }
}

variable "pods_cidr" {
  description = "Secondary range of the pods."
  type        = string
  default     = "10.20.0.0/14"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.pods_cidr, 0))
    error_message = "pods_cidr must be a CIDR block."
  }
}

variable "services_cidr" {
  description = "Secondary range of the Services."
  type        = string
  default     = "10.24.0.0/20"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.services_cidr, 0))
    error_message = "services_cidr must be a CIDR block."
  }
}

variable "master_cidr" {
  description = "/28 range of the GKE control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.master_cidr, 0)) && endswith(var.master_cidr, "/28")
    error_message = "master_cidr must be a /28 CIDR block."
  }
}

variable "master_authorized_cidrs" {
  description = "CIDRs allowed to reach the GKE API server. Empty: only from inside the VPC (private endpoint)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.master_authorized_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "master_authorized_cidrs must be valid CIDRs, and not 0.0.0.0/0."
  }
}

variable "node_machine_type" {
  description = "Machine type of the node pool."
  type        = string
  default     = "e2-standard-4"
  nullable    = false
}

variable "node_count" {
  description = "Autoscaling bounds of the node pool, per zone."
  type = object({
    min = number
    max = number
  })
  default  = { min = 1, max = 3 }
  nullable = false

  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.max
    error_message = "node_count must satisfy 1 <= min <= max."
  }
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
  nullable    = false

  validation {
    condition     = startswith(var.db_tier, "db-")
    error_message = "db_tier must be a Cloud SQL tier such as db-custom-2-7680."
  }
}

variable "db_version" {
  description = "Cloud SQL PostgreSQL version."
  type        = string
  default     = "POSTGRES_17"
  nullable    = false

  validation {
    condition     = contains(["POSTGRES_14", "POSTGRES_15", "POSTGRES_16", "POSTGRES_17", "POSTGRES_18"], var.db_version)
    error_message = "db_version must be POSTGRES_14 to POSTGRES_18 (taskq needs PostgreSQL >= 14)."
  }
}

variable "db_disk_size_gb" {
  description = "Initial disk size in GB (grows automatically)."
  type        = number
  default     = 20
  nullable    = false

  validation {
    condition     = var.db_disk_size_gb >= 10 && var.db_disk_size_gb <= 65536
    error_message = "db_disk_size_gb must be between 10 and 65536."
  }
}

variable "db_high_availability" {
  description = "Regional (high-availability) Cloud SQL instance."
  type        = bool
  default     = true
  nullable    = false
}

variable "db_name" {
  description = "Name of the database taskq uses."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be a lowercase identifier."
  }
}

variable "db_username" {
  description = "Database user taskq connects as."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && var.db_username != "postgres"
    error_message = "db_username must be a lowercase identifier other than postgres."
  }
}

variable "deletion_protection" {
  description = "Protect the GKE cluster and the Cloud SQL instance from deletion."
  type        = bool
  default     = true
  nullable    = false
}

variable "database_password_version" {
  description = "Bump to rotate the database password (database, secret store and the operator's Secret together)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.database_password_version >= 1 && floor(var.database_password_version) == var.database_password_version
    error_message = "database_password_version must be a positive integer."
  }
}

variable "namespace" {
  description = "Namespace of the taskq release."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "image" {
  description = "The operator image (repository, tag or digest); null keeps the chart's default."
  type = object({
    repository = string
    tag        = optional(string, "")
    digest     = optional(string, "")
  })
  default = null
}

variable "api" {
  description = "The REST API server, passed to modules/taskq (its `api` input: replicas, image, port, gRPC, Ingress host); null: not deployed."
  type        = any
  default     = null
}

variable "values" {
  description = "Chart values passed through to modules/taskq."
  type        = any
  default     = {}
  nullable    = false
}

variable "chart" {
  description = "Chart path or name (see modules/taskq); null: this repository's charts/taskq."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Chart repository URL (see modules/taskq)."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version (see modules/taskq)."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
  nullable    = false
}
