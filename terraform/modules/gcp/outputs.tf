output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "cluster_endpoint" {
  description = "Address of the GKE API server (private when `master_authorized_cidrs` is empty)."
  value       = google_container_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the GKE API server."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

output "network_id" {
  description = "ID of the VPC."
  value       = google_compute_network.this.id
}

output "database_instance" {
  description = "Name of the Cloud SQL instance."
  value       = google_sql_database_instance.this.name
}

output "database_private_ip" {
  description = "Private IP of the Cloud SQL instance (no public IP exists)."
  value       = google_sql_database_instance.this.private_ip_address
}

output "database_secret_id" {
  description = "Secret Manager secret holding the database credentials and DSN (the password itself is never an output)."
  value       = google_secret_manager_secret.db.id
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
