# taskq on Azure: a virtual network, AKS, Azure Database for PostgreSQL flexible server
# (VNet-injected) with the DSN in Key Vault, and the chart.
#
#   tofu init && tofu apply -var 'api_server_authorized_cidrs=["203.0.113.0/24"]' -var 'admin_cidrs=["203.0.113.0/24"]'
#
# The state holds the generated database password (marked sensitive): keep it in an encrypted
# backend (azurerm with a CMK-encrypted storage account, or OpenTofu state encryption). Local
# accounts are disabled on the cluster: the kubernetes and helm providers authenticate through
# Entra ID with kubelogin.

terraform {
  required_version = ">= 1.11.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0.0, < 5.0.0"
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

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "api_server_authorized_cidrs" {
  description = "Where tofu runs from (to reach the API server); empty: a private cluster."
  type        = list(string)
  default     = []
}

variable "admin_cidrs" {
  description = "Where tofu runs from (to write the Key Vault secret)."
  type        = list(string)
  default     = []
}

provider "azurerm" {
  features {}
}

locals {
  kubelogin = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "kubelogin"
    # 6dae42f8-...: the AKS AAD server application ID, the same in every tenant.
    args = ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630"]
  }
}

provider "kubernetes" {
  host                   = module.taskq_azure.cluster_endpoint
  cluster_ca_certificate = base64decode(module.taskq_azure.cluster_ca_certificate)
  exec {
    api_version = local.kubelogin.api_version
    command     = local.kubelogin.command
    args        = local.kubelogin.args
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.taskq_azure.cluster_endpoint
    cluster_ca_certificate = base64decode(module.taskq_azure.cluster_ca_certificate)
    exec                   = local.kubelogin
  }
}

module "taskq_azure" {
  source = "../../modules/azure"

  name                        = "taskq-example"
  location                    = var.location
  api_server_authorized_cidrs = var.api_server_authorized_cidrs
  admin_cidrs                 = var.admin_cidrs
  image                       = { repository = "ghcr.io/taskq/taskq-operator", tag = "0.1.0" }
  tags                        = { environment = "example" }
}

output "cluster_name" {
  value = module.taskq_azure.cluster_name
}

output "database_secret_id" {
  value = module.taskq_azure.database_secret_id
}
