output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.this.name
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.this.namespace
}

output "chart_version" {
  description = "Version of the installed chart."
  value       = helm_release.this.metadata.version
}

output "app_version" {
  description = "taskq version (the chart's appVersion)."
  value       = helm_release.this.metadata.app_version
}

output "watch_namespaces" {
  description = "Namespaces the operator watches (empty: all)."
  value       = local.watch_namespaces
}

output "database_secret_name" {
  description = "Name of the Secret holding the default database DSN (empty: none). The DSN itself is never an output."
  value       = local.database_secret
}

output "api_url" {
  description = "In-cluster URL of the REST API (`http://<service>.<namespace>.svc:<port>`); null when the API is not deployed."
  value       = var.api == null ? null : "http://${local.api_host}:${var.api.port}"
}

output "api_grpc_address" {
  description = "In-cluster address (`host:port`) of the API's gRPC port; null without the API or its gRPC port."
  value       = var.api == null ? null : (var.api.grpc ? "${local.api_host}:${var.api.grpc_port}" : null)
}

output "api_ingress_url" {
  description = "URL of the REST API through the Ingress (https with `ingress_tls_secret`); null without an Ingress."
  value       = try(var.api.ingress_host, null) == null ? null : "${var.api.ingress_tls_secret == null ? "http" : "https"}://${var.api.ingress_host}"
}
