# The variable contract of modules/azure, checked against its variables.tf alone (copied into an
# empty directory by tests/packaging/test_terraform.py): no resources, so no provider is needed.

variables {
  name     = "taskq-prod"
  location = "westeurope"
}

run "defaults" {
  command = plan

  assert {
    condition     = var.db_version == "16" && var.db_high_availability && var.db_storage_mb == 32768
    error_message = "defaults: PostgreSQL 16, zone-redundant, 32 GiB"
  }
  assert {
    condition     = length(var.api_server_authorized_cidrs) == 0 && length(var.admin_cidrs) == 0 && var.kubernetes_version == null
    error_message = "defaults: private cluster, no Key Vault firewall exceptions"
  }
}

run "name_too_long_for_key_vault" {
  command = plan
  variables {
    name = "a-name-that-is-much-too-long"
  }
  expect_failures = [var.name]
}

run "bad_location" {
  command = plan
  variables {
    location = "West Europe"
  }
  expect_failures = [var.location]
}

run "open_api_server_refused" {
  command = plan
  variables {
    api_server_authorized_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.api_server_authorized_cidrs]
}

run "bad_sku" {
  command = plan
  variables {
    db_sku_name = "Standard_D2s_v3"
  }
  expect_failures = [var.db_sku_name]
}

run "storage_size_from_the_offered_list" {
  command = plan
  variables {
    db_storage_mb = 40000
  }
  expect_failures = [var.db_storage_mb]
}

run "reserved_login_refused" {
  command = plan
  variables {
    db_username = "azure_superuser"
  }
  expect_failures = [var.db_username]
}

run "backup_retention_bounds" {
  command = plan
  variables {
    db_backup_retention_days = 3
  }
  expect_failures = [var.db_backup_retention_days]
}

run "kubernetes_version_format" {
  command = plan
  variables {
    kubernetes_version = "1.33.2"
  }
  expect_failures = [var.kubernetes_version]
}
