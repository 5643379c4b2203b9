variable "name" {
  description = "Name (and prefix) of every resource: resource group, network, AKS cluster, PostgreSQL server, Key Vault."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name))
    error_message = "name must be 3-16 characters: lowercase letters, digits and '-', starting with a letter (Key Vault names are short)."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be a region name such as westeurope."
  }
}

variable "vnet_cidr" {
  description = "Address space of the virtual network."
  type        = string
  default     = "10.30.0.0/16"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.vnet_cidr, 0))
    error_message = "vnet_cidr must be a CIDR block."
  }
}

variable "api_server_authorized_cidrs" {
  description = "CIDRs allowed to reach the AKS API server. Empty: a private cluster (API server reachable only from the virtual network)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.api_server_authorized_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "api_server_authorized_cidrs must be valid CIDRs, and not 0.0.0.0/0."
  }
}

variable "admin_cidrs" {
  description = "CIDRs (of whoever runs tofu) allowed through the Key Vault firewall to write the database secret."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs must be valid CIDRs, and not 0.0.0.0/0."
  }
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (major.minor); null: the region's default."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]{2}$", coalesce(var.kubernetes_version, "1.33")))
    error_message = "kubernetes_version must be major.minor, e.g. 1.33."
  }
}

variable "system_node_vm_size" {
  description = "VM size of the two system nodes (critical add-ons only)."
  type        = string
  default     = "Standard_D2ds_v5"
  nullable    = false
}

variable "node_vm_size" {
  description = "VM size of the `workers` node pool (the operator and the workers)."
  type        = string
  default     = "Standard_D4ds_v5"
  nullable    = false
}

variable "node_count" {
  description = "Autoscaling bounds of the `workers` node pool."
  type = object({
    min = number
    max = number
  })
  default  = { min = 2, max = 5 }
  nullable = false

  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.max && var.node_count.max <= 1000
    error_message = "node_count must satisfy 1 <= min <= max <= 1000."
  }
}

variable "db_sku_name" {
  description = "SKU of the PostgreSQL flexible server."
  type        = string
  default     = "GP_Standard_D2ds_v5"
  nullable    = false

  validation {
    condition     = can(regex("^(B|GP|MO)_", var.db_sku_name))
    error_message = "db_sku_name must be a flexible-server SKU such as GP_Standard_D2ds_v5 (B_, GP_ or MO_)."
  }
}

variable "db_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
  nullable    = false

  validation {
    condition     = contains(["14", "15", "16", "17", "18"], var.db_version)
    error_message = "db_version must be one of 14 to 18 (taskq needs PostgreSQL >= 14)."
  }
}

variable "db_storage_mb" {
  description = "Storage of the server in MB."
  type        = number
  default     = 32768
  nullable    = false

  validation {
    condition     = contains([32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 4194304, 8388608, 16777216, 33553408], var.db_storage_mb)
    error_message = "db_storage_mb must be one of the sizes the flexible server offers (32768, 65536, ...)."
  }
}

variable "db_backup_retention_days" {
  description = "Days of backups."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 7 and 35."
  }
}

variable "db_high_availability" {
  description = "Zone-redundant standby (not available with burstable B_ SKUs)."
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
  description = "Administrator login of the server (taskq connects as this user)."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && !contains(["admin", "administrator", "azure_superuser", "azure_pg_admin", "root", "guest", "public", "postgres"], var.db_username)
    error_message = "db_username must be a lowercase identifier and not a name Azure reserves (admin, postgres, root, ...)."
  }
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

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
  nullable    = false
}
