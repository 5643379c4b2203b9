# taskq on Google Cloud: a VPC, a private GKE cluster, Cloud SQL for PostgreSQL (private IP) and
# the chart.
#
#   tofu init && tofu apply -var project_id=my-project -var 'master_authorized_cidrs=["203.0.113.0/24"]'
#
# The state holds the generated database password (marked sensitive): keep it in an encrypted
# backend (GCS with CMEK, or OpenTofu state encryption). The kubernetes and helm providers use
# the caller's short-lived Google access token.

terraform {
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 8.0.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 3.0.0, < 4.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }
}

variable "project_id" {
  description = "Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region."
  type        = string
  default     = "europe-west1"
}

variable "master_authorized_cidrs" {
  description = "Where tofu runs from (to reach the API server); empty: run tofu inside the VPC."
  type        = list(string)
  default     = []
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_client_config" "current" {}

provider "kubernetes" {
  host                   = "https://${module.taskq_gcp.cluster_endpoint}"
  cluster_ca_certificate = base64decode(module.taskq_gcp.cluster_ca_certificate)
  token                  = data.google_client_config.current.access_token
}

provider "helm" {
  kubernetes = {
    host                   = "https://${module.taskq_gcp.cluster_endpoint}"
    cluster_ca_certificate = base64decode(module.taskq_gcp.cluster_ca_certificate)
    token                  = data.google_client_config.current.access_token
  }
}

module "taskq_gcp" {
  source = "../../modules/gcp"

  project_id              = var.project_id
  region                  = var.region
  name                    = "taskq-example"
  master_authorized_cidrs = var.master_authorized_cidrs
  image                   = { repository = "ghcr.io/taskq/taskq-operator", tag = "0.1.0" }
  labels                  = { environment = "example" }
}

output "cluster_name" {
  value = module.taskq_gcp.cluster_name
}

output "database_secret_id" {
  value = module.taskq_gcp.database_secret_id
}
