# The variable contract of modules/gcp, checked against its variables.tf alone (copied into an
# empty directory by tests/packaging/test_terraform.py): no resources, so no provider is needed.

variables {
  project_id = "taskq-prod-123"
  region     = "europe-west1"
  name       = "taskq-prod"
}

run "defaults" {
  command = plan

  assert {
    condition     = var.db_version == "POSTGRES_17" && var.db_high_availability && var.deletion_protection
    error_message = "defaults: PostgreSQL 17, regional, deletion protection"
  }
  assert {
    condition     = length(var.master_authorized_cidrs) == 0 && var.master_cidr == "172.16.0.0/28"
    error_message = "defaults: private endpoint only"
  }
}

run "bad_project" {
  command = plan
  variables {
    project_id = "P"
  }
  expect_failures = [var.project_id]
}

run "bad_region" {
  command = plan
  variables {
    region = "Europe West"
  }
  expect_failures = [var.region]
}

run "master_cidr_must_be_a_28" {
  command = plan
  variables {
    master_cidr = "172.16.0.0/24"
  }
  expect_failures = [var.master_cidr]
}

run "open_api_server_refused" {
  command = plan
  variables {
    master_authorized_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.master_authorized_cidrs]
}

run "bad_cidr" {
  command = plan
  variables {
    pods_cidr = "10.20.0.0/33"
  }
  expect_failures = [var.pods_cidr]
}

run "old_postgres_refused" {
  command = plan
  variables {
    db_version = "POSTGRES_13"
  }
  expect_failures = [var.db_version]
}

run "node_count_order" {
  command = plan
  variables {
    node_count = { min = 4, max = 3 }
  }
  expect_failures = [var.node_count]
}
