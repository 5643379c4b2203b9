output "release_name" {
  description = "Name of the Helm release."
  value       = module.taskq.release_name
}

output "namespace" {
  description = "Namespace of the release."
  value       = module.taskq.namespace
}

output "database_secret_name" {
  description = "Secret holding the default DSN (the DSN is not an output)."
  value       = module.taskq.database_secret_name
}

output "api_url" {
  description = "In-cluster URL of the REST API."
  value       = module.taskq.api_url
}

output "api_grpc_address" {
  description = "In-cluster address of the API's gRPC port."
  value       = module.taskq.api_grpc_address
}
