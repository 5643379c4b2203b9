# The variable contract of modules/aws, checked against its variables.tf alone (copied into an
# empty directory by tests/packaging/test_terraform.py): no resources, so no provider is needed.

variables {
  name               = "taskq-prod"
  vpc_id             = "vpc-0123456789abcdef0"
  private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

run "defaults" {
  command = plan

  assert {
    condition     = var.db_engine_version == "17" && var.db_multi_az && var.deletion_protection
    error_message = "defaults: PostgreSQL 17, Multi-AZ, deletion protection"
  }
  assert {
    condition     = length(var.endpoint_public_access_cidrs) == 0 && var.namespace == "taskq"
    error_message = "defaults: private API endpoint, namespace taskq"
  }
  assert {
    condition     = var.node_count == { min = 2, desired = 2, max = 5 }
    error_message = "default node group size"
  }
}

run "bad_name" {
  command = plan
  variables {
    name = "Taskq_Prod"
  }
  expect_failures = [var.name]
}

run "bad_vpc" {
  command = plan
  variables {
    vpc_id = "my-vpc"
  }
  expect_failures = [var.vpc_id]
}

run "one_subnet_is_not_enough" {
  command = plan
  variables {
    private_subnet_ids = ["subnet-0123456789abcdef0"]
  }
  expect_failures = [var.private_subnet_ids]
}

run "open_endpoint_refused" {
  command = plan
  variables {
    endpoint_public_access_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.endpoint_public_access_cidrs]
}

run "node_count_order" {
  command = plan
  variables {
    node_count = { min = 3, desired = 2, max = 5 }
  }
  expect_failures = [var.node_count]
}

run "old_postgres_refused" {
  command = plan
  variables {
    db_engine_version = "13"
  }
  expect_failures = [var.db_engine_version]
}

run "reserved_username_refused" {
  command = plan
  variables {
    db_username = "postgres"
  }
  expect_failures = [var.db_username]
}

run "backup_retention_bounds" {
  command = plan
  variables {
    db_backup_retention_days = 0
  }
  expect_failures = [var.db_backup_retention_days]
}
