# Plan-time checks of modules/aws with mocked providers (`tofu test`). Needs the aws provider's
# schema, so it runs where an aws provider is in the filesystem mirror (see docs/terraform.md).

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  # Computed ARNs the provider validates when they are passed on.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0" }
  }
  mock_resource "aws_eks_cluster" {
    defaults = { certificate_authority = [{ data = "bW9jaw==" }] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}
mock_provider "helm" {}
mock_provider "kubernetes" {}
mock_provider "random" {}

variables {
  name               = "taskq-test"
  vpc_id             = "vpc-0123456789abcdef0"
  private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

run "database_is_private_encrypted_and_tls_only" {
  command = plan

  assert {
    condition     = aws_db_instance.this.publicly_accessible == false && aws_db_instance.this.storage_encrypted == true
    error_message = "the database must be private and encrypted"
  }
  assert {
    condition     = aws_db_instance.this.engine == "postgres" && aws_db_instance.this.engine_version == "17"
    error_message = "PostgreSQL 17 by default"
  }
  assert {
    condition     = aws_db_instance.this.deletion_protection == true && aws_db_instance.this.skip_final_snapshot == false
    error_message = "deletion protection and a final snapshot by default"
  }
  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "rds.force_ssl"]) == "1"
    error_message = "rds.force_ssl must be on"
  }
  assert {
    condition     = aws_db_instance.this.iam_database_authentication_enabled && aws_db_instance.this.multi_az
    error_message = "IAM auth and Multi-AZ by default"
  }
}

run "database_reachable_only_from_the_cluster" {
  command = plan

  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_cluster.from_port == 5432 && aws_vpc_security_group_ingress_rule.db_from_cluster.to_port == 5432
    error_message = "only PostgreSQL's port is open"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_cluster.cidr_ipv4 == null && aws_vpc_security_group_ingress_rule.db_from_cluster.cidr_ipv6 == null
    error_message = "the database admits a security group (the cluster's), never a CIDR"
  }
  assert {
    condition     = aws_db_instance.this.db_subnet_group_name == "taskq-test-db"
    error_message = "the database lives in the private subnets"
  }
}

run "cluster_endpoint_private_and_secrets_encrypted" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_private_access && !aws_eks_cluster.this.vpc_config[0].endpoint_public_access
    error_message = "the API endpoint is private unless CIDRs are given"
  }
  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].resources == toset(["secrets"])
    error_message = "Kubernetes Secrets are encrypted with the stack's KMS key"
  }
  assert {
    condition     = aws_launch_template.node.metadata_options[0].http_tokens == "required" && aws_launch_template.node.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "nodes require IMDSv2 with hop limit 1"
  }
}

run "public_endpoint_only_for_given_cidrs" {
  command = plan
  variables {
    endpoint_public_access_cidrs = ["203.0.113.0/24"]
  }
  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access && aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["203.0.113.0/24"])
    error_message = "public access only from the given CIDRs"
  }
}

run "taskq_gets_the_dsn_secret" {
  command = plan

  assert {
    condition     = module.taskq.database_secret_name == "taskq-database"
    error_message = "the chart's default database is the module's DSN Secret"
  }
  assert {
    condition     = output.namespace == "taskq" && output.release_name == "taskq"
    error_message = "release outputs"
  }
}

run "api_is_passed_to_modules_taskq" {
  command = plan

  variables {
    api = { replicas = 3, ingress_host = "taskq.example.com" }
  }

  assert {
    condition     = output.api_url == "http://taskq-api.taskq.svc:8000" && output.api_ingress_url == "http://taskq.example.com"
    error_message = "the API's addresses come from modules/taskq"
  }
}
