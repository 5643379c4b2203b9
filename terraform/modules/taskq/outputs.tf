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
