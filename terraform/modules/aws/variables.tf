variable "name" {
  description = "Name (and prefix) of every resource: the EKS cluster, the RDS instance, roles, groups."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster and the database."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for the nodes and the database."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids needs at least two subnet IDs (subnet-...)."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (major.minor)."
  type        = string
  default     = "1.33"
  nullable    = false

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must be major.minor, e.g. 1.33."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API endpoint from the internet. Empty: the endpoint is private only (reachable from the VPC)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs must be valid CIDRs, and not 0.0.0.0/0."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]
  nullable    = false

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types must not be empty."
  }
}

variable "node_count" {
  description = "Size of the managed node group."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default  = { min = 2, desired = 2, max = 5 }
  nullable = false

  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.desired && var.node_count.desired <= var.node_count.max
    error_message = "node_count must satisfy 1 <= min <= desired <= max."
  }
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
  nullable    = false

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "17"
  nullable    = false

  validation {
    condition     = contains(["14", "15", "16", "17", "18"], var.db_engine_version)
    error_message = "db_engine_version must be one of 14 to 18 (taskq needs PostgreSQL >= 14)."
  }
}

variable "db_allocated_storage" {
  description = "Initial storage in GiB (storage autoscaling may grow it up to four times)."
  type        = number
  default     = 20
  nullable    = false

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 16384
    error_message = "db_allocated_storage must be between 20 and 16384 GiB."
  }
}

variable "db_multi_az" {
  description = "Run the database with a standby in another availability zone."
  type        = bool
  default     = true
  nullable    = false
}

variable "db_backup_retention_days" {
  description = "Days of automated backups."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  description = "Protect the database from deletion (and take a final snapshot when it is deleted)."
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
    error_message = "db_name must be a lowercase identifier (letters, digits, _), starting with a letter."
  }
}

variable "db_username" {
  description = "Master user of the database (taskq connects as this user)."
  type        = string
  default     = "taskq"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && !contains(["admin", "postgres", "rdsadmin"], var.db_username)
    error_message = "db_username must be a lowercase identifier and not a reserved name (admin, postgres, rdsadmin)."
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
