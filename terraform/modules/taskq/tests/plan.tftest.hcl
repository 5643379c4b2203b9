# Plan-time checks of the module with mocked providers (`tofu test`): what it asks Helm and the
# API server for, and which inputs it refuses. The real install is tested by
# tests/packaging/test_terraform.py (apply + destroy on the local control plane).

mock_provider "helm" {}
mock_provider "kubernetes" {}

variables {
  namespace = "tf-plan"
}

run "defaults_watch_only_the_release_namespace" {
  command = plan

  assert {
    condition     = helm_release.this.name == "taskq" && helm_release.this.namespace == "tf-plan"
    error_message = "release name or namespace differ from the inputs"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).operator.watchNamespaces == ["tf-plan"]
    error_message = "the operator must watch only its own namespace by default"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).crds.create == true
    error_message = "CRDs are installed by default"
  }
  assert {
    condition     = !can(yamldecode(helm_release.this.values[1]).database) && !can(yamldecode(helm_release.this.values[1]).image)
    error_message = "no database or image values unless given"
  }
  assert {
    condition     = length(kubernetes_namespace_v1.this) == 1 && kubernetes_namespace_v1.this[0].metadata[0].labels["pod-security.kubernetes.io/enforce"] == "restricted"
    error_message = "the namespace is created with the restricted Pod Security profile"
  }
  assert {
    condition     = length(kubernetes_secret_v1.database) == 0
    error_message = "no Secret is created unless asked for"
  }
  assert {
    condition     = endswith(helm_release.this.chart, "charts/taskq")
    error_message = "the chart defaults to this repository's charts/taskq"
  }
  assert {
    condition     = !can(yamldecode(helm_release.this.values[1]).api) && output.api_url == null && output.api_grpc_address == null && output.api_ingress_url == null
    error_message = "the API is not deployed unless asked for"
  }
}

run "api_with_grpc_ingress_and_tls" {
  command = plan

  variables {
    api = {
      replicas           = 3
      image              = { repository = "registry.example/taskq-api", tag = "1.2.3" }
      grpc               = true
      ingress_host       = "taskq.example.com"
      ingress_class      = "nginx"
      ingress_tls_secret = "taskq-tls"
    }
  }

  assert {
    condition = yamldecode(helm_release.this.values[1]).api == {
      enabled  = true
      replicas = 3
      port     = 8000
      grpc     = { enabled = true, port = 9090 }
      image    = { repository = "registry.example/taskq-api", tag = "1.2.3", digest = "" }
      ingress = {
        enabled   = true
        className = "nginx"
        hosts     = ["taskq.example.com"]
        tls       = [{ hosts = ["taskq.example.com"], secretName = "taskq-tls" }]
      }
    }
    error_message = "api input not passed to the chart as its api values"
  }
  assert {
    condition     = output.api_url == "http://taskq-api.tf-plan.svc:8000" && output.api_grpc_address == "taskq-api.tf-plan.svc:9090"
    error_message = "the in-cluster addresses name the chart's API Service (release taskq: taskq-api)"
  }
  assert {
    condition     = output.api_ingress_url == "https://taskq.example.com"
    error_message = "with a TLS Secret the Ingress URL is https"
  }
}

run "api_defaults_and_the_charts_names" {
  command = plan

  variables {
    release_name = "queue"
    api          = {}
  }

  assert {
    condition     = yamldecode(helm_release.this.values[1]).api == { enabled = true, replicas = 2, port = 8000, grpc = { enabled = false, port = 9090 } }
    error_message = "api = {} deploys the API with the defaults, no image, ingress or gRPC"
  }
  assert {
    condition     = output.api_url == "http://queue-taskq-api.tf-plan.svc:8000" && output.api_grpc_address == null && output.api_ingress_url == null
    error_message = "release queue: the chart names the Service queue-taskq-api"
  }
}

run "api_service_name_follows_fullname_override" {
  command = plan

  variables {
    api    = { port = 8080 }
    values = { fullnameOverride = "tq" }
  }

  assert {
    condition     = output.api_url == "http://tq-api.tf-plan.svc:8080"
    error_message = "fullnameOverride renames the chart's objects, the API Service too"
  }
}

run "database_secret_image_and_values" {
  command = plan

  variables {
    release_name           = "queue"
    create_namespace       = false
    create_database_secret = true
    database_dsn           = "postgresql://taskq:not-a-real-password@db.example:5432/taskq"
    image                  = { repository = "registry.example/taskq-operator", tag = "1.2.3" }
    watch_namespaces       = ["team-a", "team-b"]
    crds_create            = false
    values                 = { operator = { statusInterval = 7 }, image = { pullPolicy = "Always" } }
  }

  assert {
    condition     = length(kubernetes_namespace_v1.this) == 0
    error_message = "create_namespace = false must not create the namespace"
  }
  assert {
    condition     = kubernetes_secret_v1.database[0].metadata[0].name == "queue-database" && kubernetes_secret_v1.database[0].metadata[0].namespace == "tf-plan"
    error_message = "the DSN Secret is <release>-database in the release namespace"
  }
  assert {
    condition     = kubernetes_secret_v1.database[0].data_wo == null
    error_message = "the DSN is write-only: it must not appear in the plan"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).database == { existingSecret = "queue-database", secretKey = "dsn" }
    error_message = "the chart must read the default DSN from the created Secret"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).image == { repository = "registry.example/taskq-operator", tag = "1.2.3", digest = "" }
    error_message = "image input not passed to the chart"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[0]) == { operator = { statusInterval = 7 }, image = { pullPolicy = "Always" } }
    error_message = "values must be passed through unchanged (module inputs go in a later values document)"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).operator.watchNamespaces == ["team-a", "team-b"] && yamldecode(helm_release.this.values[1]).crds.create == false
    error_message = "watch_namespaces / crds_create not passed to the chart"
  }
  assert {
    condition     = output.database_secret_name == "queue-database" && output.watch_namespaces == tolist(["team-a", "team-b"])
    error_message = "outputs do not match"
  }
}

run "pull_policy_and_placement_on_a_tainted_node" {
  command = plan

  variables {
    image         = { repository = "taskq-operator", tag = "0.1.0", pull_policy = "Never" }
    node_selector = { type = "real" }
    tolerations   = [{ key = "taskq.dev/real-node", operator = "Exists", effect = "NoSchedule" }]
    api           = {}
  }

  assert {
    condition     = yamldecode(helm_release.this.values[1]).image == { repository = "taskq-operator", tag = "0.1.0", digest = "", pullPolicy = "Never" }
    error_message = "image.pull_policy not passed to the chart as image.pullPolicy"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).nodeSelector == { type = "real" } && yamldecode(helm_release.this.values[1]).api.nodeSelector == { type = "real" }
    error_message = "node_selector must place the operator and the API pods"
  }
  assert {
    condition     = yamldecode(helm_release.this.values[1]).tolerations == [{ key = "taskq.dev/real-node", operator = "Exists", effect = "NoSchedule" }] && yamldecode(helm_release.this.values[1]).api.tolerations == yamldecode(helm_release.this.values[1]).tolerations
    error_message = "tolerations must reach both pods, without the unset fields"
  }
}

run "existing_secret_is_referenced_not_created" {
  command = plan

  variables {
    database_secret_name = "my-dsn"
    database_secret_key  = "url"
  }

  assert {
    condition     = length(kubernetes_secret_v1.database) == 0 && yamldecode(helm_release.this.values[1]).database == { existingSecret = "my-dsn", secretKey = "url" }
    error_message = "an existing Secret is referenced, not created"
  }
}

run "secret_without_dsn_is_refused" {
  command = plan
  variables {
    create_database_secret = true
  }
  expect_failures = [kubernetes_secret_v1.database]
}

run "invalid_namespace" {
  command = plan
  variables {
    namespace = "Not_A_Namespace"
  }
  expect_failures = [var.namespace]
}

run "invalid_release_name" {
  command = plan
  variables {
    release_name = "a-release-name-that-is-far-too-long-for-helm-to-accept-it"
  }
  expect_failures = [var.release_name]
}

run "invalid_digest" {
  command = plan
  variables {
    image = { repository = "taskq-operator", digest = "latest" }
  }
  expect_failures = [var.image]
}

run "values_must_be_an_object" {
  command = plan
  variables {
    values = ["not", "an", "object"]
  }
  expect_failures = [var.values]
}

run "invalid_watch_namespace" {
  command = plan
  variables {
    watch_namespaces = ["UPPER"]
  }
  expect_failures = [var.watch_namespaces]
}

run "invalid_repository_scheme" {
  command = plan
  variables {
    chart_repository = "http://charts.example"
  }
  expect_failures = [var.chart_repository]
}

run "invalid_api_replicas" {
  command = plan
  variables {
    api = { replicas = 0 }
  }
  expect_failures = [var.api]
}

run "invalid_api_ingress_host" {
  command = plan
  variables {
    api = { ingress_host = "Not A Host" }
  }
  expect_failures = [var.api]
}

run "invalid_api_image_digest" {
  command = plan
  variables {
    api = { image = { repository = "taskq-api", digest = "latest" } }
  }
  expect_failures = [var.api]
}

run "invalid_pull_policy" {
  command = plan
  variables {
    image = { repository = "taskq-operator", pull_policy = "Sometimes" }
  }
  expect_failures = [var.image]
}

run "invalid_node_selector" {
  command = plan
  variables {
    node_selector = { "not a label" = "x" }
  }
  expect_failures = [var.node_selector]
}

run "invalid_toleration" {
  command = plan
  variables {
    tolerations = [{ key = "taskq.dev/real-node", operator = "Exists", value = "true", effect = "Sometimes" }]
  }
  expect_failures = [var.tolerations]
}
