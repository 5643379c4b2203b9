# taskq on Google Cloud: a dedicated VPC, a private GKE cluster (Workload Identity, network
# policy, shielded nodes), a Cloud SQL for PostgreSQL instance with a private IP only, TLS only,
# which firewall rules let only the cluster's nodes reach, and the taskq chart (modules/taskq)
# whose default database is that instance. The kubernetes and helm providers are configured by
# the caller from this module's cluster outputs (see examples/gcp).

locals {
  labels           = merge({ "app-kubernetes-io-part-of" = "taskq", "taskq-stack" = var.name }, var.labels)
  node_tag         = "${var.name}-gke-node"
  private_endpoint = length(var.master_authorized_cidrs) == 0
}

resource "google_project_service" "this" {
  for_each = toset([
    "compute.googleapis.com", "container.googleapis.com", "sqladmin.googleapis.com",
    "servicenetworking.googleapis.com", "secretmanager.googleapis.com",
  ])
  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  depends_on              = [google_project_service.this]
}

resource "google_compute_subnetwork" "nodes" {
  project                  = var.project_id
  name                     = "${var.name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes reach image registries through Cloud NAT.
resource "google_compute_router" "this" {
  project = var.project_id
  name    = var.name
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  project                            = var.project_id
  name                               = var.name
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Private services access: Cloud SQL gets an address from this range, peered into the VPC.
resource "google_compute_global_address" "sql" {
  project       = var.project_id
  name          = "${var.name}-sql"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.this.id
}

resource "google_service_networking_connection" "sql" {
  network                 = google_compute_network.this.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql.name]
}

# Only the GKE nodes (and their pods) may open connections to the database range, on 5432.
resource "google_compute_firewall" "sql_allow_nodes" {
  project            = var.project_id
  name               = "${var.name}-sql-allow-gke"
  network            = google_compute_network.this.id
  direction          = "EGRESS"
  priority           = 900
  target_tags        = [local.node_tag]
  destination_ranges = ["${google_compute_global_address.sql.address}/${google_compute_global_address.sql.prefix_length}"]

  allow {
    protocol = "tcp"
    ports    = ["5432"]
  }
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "sql_deny_others" {
  project            = var.project_id
  name               = "${var.name}-sql-deny-others"
  network            = google_compute_network.this.id
  direction          = "EGRESS"
  priority           = 1000
  destination_ranges = ["${google_compute_global_address.sql.address}/${google_compute_global_address.sql.prefix_length}"]

  deny {
    protocol = "all"
  }
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# ---------------------------------------------------------------------------------------------
# GKE
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-gke-nodes"
  display_name = "taskq ${var.name}: GKE nodes (logs and metrics only)"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer", "roles/artifactregistry.reader",
  ])
  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_12:NetworkPolicy is enforced by Dataplane V2 (ADVANCED_DATAPATH), which replaces the network_policy addon
  #checkov:skip=CKV_GCP_61:VPC flow logs are on (subnet log_config); intranode visibility is left off to bound log volume
  #checkov:skip=CKV_GCP_21:resource_labels is set (local.labels, a merge() checkov does not evaluate)
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain (authenticator_groups_config) the module cannot assume
  project  = var.project_id
  name     = var.name
  location = var.region

  network    = google_compute_network.this.id
  subnetwork = google_compute_subnetwork.nodes.id

  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection
  enable_shielded_nodes    = true
  datapath_provider        = "ADVANCED_DATAPATH" # Dataplane V2: NetworkPolicy enforcement
  resource_labels          = local.labels

  release_channel {
    channel = "REGULAR"
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = local.private_endpoint
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "authorized-${cidr_blocks.key}"
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  # The default node pool is removed at once; its settings only need to be safe while it exists.
  node_config {
    service_account = google_service_account.nodes.email
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_container_node_pool" "this" {
  project  = var.project_id
  name     = "default"
  cluster  = google_container_cluster.this.name
  location = var.region

  autoscaling {
    min_node_count = var.node_count.min
    max_node_count = var.node_count.max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.node_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    tags            = [local.node_tag]
    labels          = local.labels

    metadata = {
      disable-legacy-endpoints = "true"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Cloud SQL for PostgreSQL: private IP only, TLS only.
# ---------------------------------------------------------------------------------------------

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_6:TLS is required (ENCRYPTED_ONLY); client certificates would have to be distributed to every worker, and there is no public IP
  #checkov:skip=CKV_GCP_79:the major version is an input (14 to 18 allowed, default 17) so upgrades are deliberate
  #checkov:skip=CKV2_GCP_13:log_duration logs every statement of a queue's constant polling (and statement texts may carry payloads)
  project             = var.project_id
  name                = var.name
  region              = var.region
  database_version    = var.db_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.db_tier
    availability_type           = var.db_high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.this.id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      enable_private_path_for_google_cloud_services = false
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
    }

    insights_config {
      query_insights_enabled = true
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.sql]
}

resource "google_sql_database" "this" {
  project  = var.project_id
  name     = var.db_name
  instance = google_sql_database_instance.this.name
}

# Bumping var.database_password_version generates a new password, which the database, the
# cloud secret store and the Kubernetes Secret (database_dsn_version) all receive on that apply.
resource "random_password" "db" {
  keepers          = { version = var.database_password_version }
  length           = 40
  special          = true
  override_special = "-_.~!*" # need no URL-encoding in the DSN
}

resource "google_sql_user" "taskq" {
  project  = var.project_id
  name     = var.db_username
  instance = google_sql_database_instance.this.name
  password = random_password.db.result
}

locals {
  dsn = "postgresql://${var.db_username}:${random_password.db.result}@${google_sql_database_instance.this.private_ip_address}:5432/${var.db_name}?sslmode=require"
}

# The credentials in Secret Manager, for people and tools outside the cluster. Only the secret's
# ID is an output.
resource "google_secret_manager_secret" "db" {
  project   = var.project_id
  secret_id = "${var.name}-database"
  labels    = local.labels

  replication {
    auto {}
  }
  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "db" {
  secret = google_secret_manager_secret.db.id
  secret_data = jsonencode({
    host     = google_sql_database_instance.this.private_ip_address
    port     = 5432
    dbname   = var.db_name
    username = var.db_username
    password = random_password.db.result
    dsn      = local.dsn
  })
}

# ---------------------------------------------------------------------------------------------
# taskq: the chart, with the DSN in a Kubernetes Secret (write-only: not in the plan or state).
# ---------------------------------------------------------------------------------------------

module "taskq" {
  source = "../taskq"

  namespace              = var.namespace
  image                  = var.image
  api                    = var.api
  values                 = var.values
  chart                  = var.chart
  chart_repository       = var.chart_repository
  chart_version          = var.chart_version
  create_database_secret = true
  database_dsn           = local.dsn
  database_dsn_version   = var.database_password_version

  depends_on = [google_container_node_pool.this, google_sql_database.this, google_sql_user.taskq]
}
