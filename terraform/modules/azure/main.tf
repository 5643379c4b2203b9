# taskq on Azure: a virtual network, an AKS cluster (Entra ID RBAC, no local accounts, Cilium
# network policy), an Azure Database for PostgreSQL flexible server injected into a delegated
# subnet (no public access) whose network security group admits 5432 only from the cluster's
# subnet, the credentials in Key Vault, and the taskq chart (modules/taskq) whose default
# database is that server. The kubernetes and helm providers are configured by the caller from
# this module's cluster outputs (see examples/azure).

data "azurerm_client_config" "current" {}

# Key Vault and PostgreSQL server names are global: a short random suffix keeps them unique.
resource "random_id" "suffix" {
  byte_length = 3
}

locals {
  tags            = merge({ "app.kubernetes.io/part-of" = "taskq", "taskq-stack" = var.name }, var.tags)
  suffix          = random_id.suffix.hex
  aks_subnet      = cidrsubnet(var.vnet_cidr, 4, 0)
  postgres_subnet = cidrsubnet(var.vnet_cidr, 8, 32)
  private_cluster = length(var.api_server_authorized_cidrs) == 0
}

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = local.tags
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

resource "azurerm_virtual_network" "this" {
  name                = var.name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "aks" {
  name                 = "aks"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.aks_subnet]
}

resource "azurerm_subnet" "postgres" {
  name                 = "postgres"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.postgres_subnet]

  delegation {
    name = "postgres-flexible-server"
    service_delegation {
      name    = "Microsoft.DBforPostgreSQL/flexibleServers"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

# The database subnet admits PostgreSQL from the AKS subnet only; everything else from the
# virtual network is denied (above the default AllowVnetInBound rule).
resource "azurerm_network_security_group" "postgres" {
  name                = "${var.name}-postgres"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "postgres-from-aks"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = local.aks_subnet
    source_port_range          = "*"
    destination_address_prefix = local.postgres_subnet
    destination_port_range     = "5432"
  }
  security_rule {
    name                       = "deny-vnet-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "VirtualNetwork"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

# The nodes' subnet gets Azure's default rules (VNet and load balancer inbound, no internet
# inbound); AKS manages its own rules in the node resource group.
resource "azurerm_network_security_group" "aks" {
  name                = "${var.name}-aks"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_subnet_network_security_group_association" "aks" {
  subnet_id                 = azurerm_subnet.aks.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

resource "azurerm_subnet_network_security_group_association" "postgres" {
  subnet_id                 = azurerm_subnet.postgres.id
  network_security_group_id = azurerm_network_security_group.postgres.id
}

resource "azurerm_private_dns_zone" "postgres" {
  name                = "${var.name}-${local.suffix}.private.postgres.database.azure.com"
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  name                  = "${var.name}-postgres"
  resource_group_name   = azurerm_resource_group.this.name
  private_dns_zone_name = azurerm_private_dns_zone.postgres.name
  virtual_network_id    = azurerm_virtual_network.this.id
  tags                  = local.tags
}

# ---------------------------------------------------------------------------------------------
# AKS
# ---------------------------------------------------------------------------------------------

resource "azurerm_log_analytics_workspace" "this" {
  name                = var.name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = local.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  # Ephemeral OS disks live on the VM's cache/temp disk, so there is no managed OS disk for a
  # disk encryption set; host encryption covers them (host_encryption_enabled).
  #checkov:skip=CKV_AZURE_117:ephemeral OS disks with encryption at host; no managed OS disk to attach a disk encryption set to
  name                = var.name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  dns_prefix          = var.name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"
  tags                = local.tags

  private_cluster_enabled   = local.private_cluster
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"
  local_account_disabled    = true
  azure_policy_enabled      = true
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  dynamic "api_server_access_profile" {
    for_each = local.private_cluster ? [] : [1]
    content {
      authorized_ip_ranges = var.api_server_authorized_cidrs
    }
  }

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled = true
    tenant_id          = data.azurerm_client_config.current.tenant_id
  }

  # System pods only; the operator and the workers run on the `workers` pool.
  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_node_vm_size
    vnet_subnet_id               = azurerm_subnet.aks.id
    node_count                   = 2
    max_pods                     = 50
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 64
    host_encryption_enabled      = true
    only_critical_addons_enabled = true
    tags                         = local.tags
    upgrade_settings {
      max_surge = "33%"
    }
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_policy      = "cilium"
    network_data_plane  = "cilium"
    load_balancer_sku   = "standard"
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "workers" {
  name                    = "workers"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  vm_size                 = var.node_vm_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  auto_scaling_enabled    = true
  min_count               = var.node_count.min
  max_count               = var.node_count.max
  max_pods                = 50
  os_disk_type            = "Ephemeral"
  os_disk_size_gb         = 64
  host_encryption_enabled = true
  mode                    = "User"
  tags                    = local.tags
  upgrade_settings {
    max_surge = "33%"
  }
}

# Whoever runs tofu administers the cluster through Entra ID (no local admin account exists).
resource "azurerm_role_assignment" "aks_admin" {
  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = data.azurerm_client_config.current.object_id
}

# ---------------------------------------------------------------------------------------------
# Azure Database for PostgreSQL flexible server: VNet-injected, no public access.
# ---------------------------------------------------------------------------------------------

# Bumping var.database_password_version generates a new password, which the database, the
# cloud secret store and the Kubernetes Secret (database_dsn_version) all receive on that apply.
resource "random_password" "db" {
  keepers          = { version = var.database_password_version }
  length           = 40
  special          = true
  override_special = "-_.~!*" # need no URL-encoding in the DSN
}

resource "azurerm_postgresql_flexible_server" "this" {
  #checkov:skip=CKV2_AZURE_57:VNet injection (delegated subnet, public access disabled) is the private alternative to a private endpoint
  name                          = "${var.name}-${local.suffix}"
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  version                       = var.db_version
  sku_name                      = var.db_sku_name
  storage_mb                    = var.db_storage_mb
  auto_grow_enabled             = true
  backup_retention_days         = var.db_backup_retention_days
  geo_redundant_backup_enabled  = true
  delegated_subnet_id           = azurerm_subnet.postgres.id
  private_dns_zone_id           = azurerm_private_dns_zone.postgres.id
  public_network_access_enabled = false
  administrator_login           = var.db_username
  administrator_password        = random_password.db.result
  zone                          = "1"
  tags                          = local.tags

  dynamic "high_availability" {
    for_each = var.db_high_availability ? [1] : []
    content {
      mode                      = "ZoneRedundant"
      standby_availability_zone = "2"
    }
  }

  depends_on = [
    azurerm_private_dns_zone_virtual_network_link.postgres,
    azurerm_subnet_network_security_group_association.postgres,
  ]
}

resource "azurerm_postgresql_flexible_server_configuration" "tls" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_checkpoints" {
  name      = "log_checkpoints"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "connection_throttling" {
  name      = "connection_throttle.enable"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_database" "this" {
  name      = var.db_name
  server_id = azurerm_postgresql_flexible_server.this.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

locals {
  dsn = "postgresql://${var.db_username}:${random_password.db.result}@${azurerm_postgresql_flexible_server.this.fqdn}:5432/${var.db_name}?sslmode=require"
}

# ---------------------------------------------------------------------------------------------
# Key Vault: the database credentials (RBAC authorization, purge protection, firewalled).
# ---------------------------------------------------------------------------------------------

resource "azurerm_key_vault" "this" {
  # Nothing in the cluster reads the vault (the DSN reaches it as a Kubernetes Secret); the only
  # client is whoever runs tofu, admitted by IP (admin_cidrs) through a default-deny firewall.
  #checkov:skip=CKV_AZURE_189:public access is on only when admin_cidrs is set, behind a default-deny firewall
  #checkov:skip=CKV2_AZURE_32:no in-VNet client reads the vault; tofu reaches it through its firewall
  name                          = "${var.name}-${local.suffix}"
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 30
  public_network_access_enabled = length(var.admin_cidrs) > 0
  tags                          = local.tags

  network_acls {
    default_action             = "Deny"
    bypass                     = "AzureServices"
    ip_rules                   = var.admin_cidrs
    virtual_network_subnet_ids = []
  }
}

resource "azurerm_role_assignment" "kv_officer" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_secret" "dsn" {
  name            = "taskq-database-dsn"
  key_vault_id    = azurerm_key_vault.this.id
  value           = local.dsn
  content_type    = "text/uri"
  expiration_date = timeadd(plantimestamp(), "8760h")
  tags            = local.tags

  lifecycle {
    ignore_changes = [expiration_date]
  }
  depends_on = [azurerm_role_assignment.kv_officer]
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

  depends_on = [azurerm_kubernetes_cluster_node_pool.workers, azurerm_role_assignment.aks_admin, azurerm_postgresql_flexible_server_database.this]
}
