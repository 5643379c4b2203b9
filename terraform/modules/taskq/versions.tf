terraform {
  # Write-only attributes (the DSN reaches the Kubernetes Secret without being stored in the
  # state) need OpenTofu >= 1.11 (or Terraform >= 1.11).
  required_version = ">= 1.11.0"

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 3.0.0, < 4.0.0"
    }
  }
}
