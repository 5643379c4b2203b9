output "resource_group_name" {
  description = "Resource group holding every resource."
  value       = azurerm_resource_group.this.name
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the AKS API server (private FQDN for a private cluster)."
  value       = local.private_cluster ? "https://${azurerm_kubernetes_cluster.this.private_fqdn}:443" : "https://${azurerm_kubernetes_cluster.this.fqdn}:443"
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the AKS API server."
  value       = azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate
  sensitive   = true
}

output "database_fqdn" {
  description = "Private FQDN of the PostgreSQL flexible server."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "key_vault_id" {
  description = "Key Vault holding the DSN secret."
  value       = azurerm_key_vault.this.id
}

output "database_secret_id" {
  description = "Versionless ID of the Key Vault secret holding the DSN (the password itself is never an output)."
  value       = azurerm_key_vault_secret.dsn.versionless_id
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
