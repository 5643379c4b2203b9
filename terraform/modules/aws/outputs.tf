output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the EKS API server (for the kubernetes and helm providers)."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the EKS API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "database_address" {
  description = "Host name of the RDS instance (private)."
  value       = aws_db_instance.this.address
}

output "database_port" {
  description = "Port of the RDS instance."
  value       = aws_db_instance.this.port
}

output "database_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the database credentials and DSN (the password itself is never an output)."
  value       = aws_secretsmanager_secret.db.arn
}

output "database_security_group_id" {
  description = "Security group of the database (ingress: 5432 from the cluster security group only)."
  value       = aws_security_group.db.id
}

output "kms_key_arn" {
  description = "KMS key encrypting the cluster's Secrets, the database and its credentials."
  value       = aws_kms_key.this.arn
}

output "release_name" {
  description = "Name of the taskq Helm release."
  value       = module.taskq.release_name
}

output "namespace" {
  description = "Namespace of the taskq release."
  value       = module.taskq.namespace
}

output "database_k8s_secret_name" {
  description = "Kubernetes Secret (in `namespace`) holding the operator's default DSN."
  value       = module.taskq.database_secret_name
}

output "api_url" {
  description = "In-cluster URL of the REST API; null when it is not deployed."
  value       = module.taskq.api_url
}

output "api_ingress_url" {
  description = "URL of the REST API through its Ingress; null without one."
  value       = module.taskq.api_ingress_url
}
