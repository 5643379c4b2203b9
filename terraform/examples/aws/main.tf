# taskq on AWS: EKS + RDS PostgreSQL + the chart, in an existing VPC with private subnets (that
# reach the internet through a NAT gateway, to pull images).
#
#   tofu init && tofu apply -var vpc_id=vpc-... -var 'private_subnet_ids=["subnet-...","subnet-..."]'
#
# The state holds the generated database password (marked sensitive): keep it in an encrypted
# backend (S3 with SSE-KMS, or OpenTofu state encryption). The kubernetes and helm providers get a
# short-lived token from `aws eks get-token`, so no credential is written anywhere.

terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90.0, < 7.0.0"
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

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the VPC (two or more availability zones)."
  type        = list(string)
}

provider "aws" {
  region = var.region
}

locals {
  name = "taskq-example"
}

provider "kubernetes" {
  host                   = module.taskq_aws.cluster_endpoint
  cluster_ca_certificate = base64decode(module.taskq_aws.cluster_certificate_authority_data)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", local.name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.taskq_aws.cluster_endpoint
    cluster_ca_certificate = base64decode(module.taskq_aws.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", local.name, "--region", var.region]
    }
  }
}

module "taskq_aws" {
  source = "../../modules/aws"

  name               = local.name
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  image              = { repository = "ghcr.io/taskq/taskq-operator", tag = "0.1.0" }
  values = {
    metrics = { serviceMonitor = { enabled = false } }
  }
  tags = { environment = "example" }
}

output "cluster_name" {
  value = module.taskq_aws.cluster_name
}

output "database_secret_arn" {
  value = module.taskq_aws.database_secret_arn
}
