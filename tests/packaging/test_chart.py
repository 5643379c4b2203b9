"""The Helm chart charts/taskq, with the real helm (built from tools/helm by tools/build.sh).

- Rendering: `helm lint --strict` and `helm template` with various values; the schema refuses bad
  values; least-privilege RBAC (no wildcards); the CRD copies and the README are up to date.
- The API server (`api.*`): off by default; its Deployment, Service, Ingress,
  PodDisruptionBudget, ServiceMonitor and NetworkPolicy when on.
- On the local control plane (tests/e2e/cluster.py): `helm install` into a namespace of its own,
  with the API on, the operator's and the API's pods Running (kwok), the RBAC exercised by running
  `python -m taskq_operator` locally as the chart's ServiceAccount (a token from `kubectl create
  token`), the API's init container and server run locally with the environment of its pods,
  `helm test`, `helm upgrade` and `helm uninstall` leaving the CRDs and the queues in place.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from devenv.api import LocalApi
from devenv.postgres import LocalPostgres

from taskq_api.server.settings import ApiSettings
from tests.conftest import fresh_database
from tests.e2e import cluster
from tests.e2e.operator import Operator, condition, get, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "taskq"
# The CRDs of the chart, by plural
PLURALS = ("taskqueues", "workerpools", "taskqapikeys", "taskschedules")
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
Doc = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> str:
    built = subprocess.run(
        [str(REPO / "tools" / "build.sh"), "helm"],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return str(Path(built.stdout.strip().splitlines()[-1]) / "helm")


def run_helm(helm: str, *args: str, check: bool = True, timeout: float = 120) -> Any:
    env = {**os.environ, "HELM_CACHE_HOME": str(REPO / ".state" / "helm" / "cache")}
    env["HELM_CONFIG_HOME"] = str(REPO / ".state" / "helm" / "config")
    env["HELM_DATA_HOME"] = str(REPO / ".state" / "helm" / "data")
    proc = subprocess.run(
        [helm, *args], check=False, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def render(helm: str, *args: str) -> list[Doc]:
    out = run_helm(helm, "template", "taskq", str(CHART), "--namespace", "taskq-system", *args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def env_of(deployment: Doc, container: str | None = None) -> dict[str, Any]:
    """The environment of the pod's first container, or of the (init) container named."""
    pod = deployment["spec"]["template"]["spec"]
    found = next(
        c
        for c in pod["containers"] + pod.get("initContainers", [])
        if container is None or c["name"] == container
    )
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in found["env"]}


# --- rendering ------------------------------------------------------------------------------


def test_lint_strict(helm: str) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    run_helm(helm, "lint", "--strict", str(CHART), "-f", str(ALL_FEATURES))


def test_operator_deployment_defaults(helm: str) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/taskq/taskq-operator:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 8080,
        "health": 8081,
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # the restricted Pod Security profile
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    env = env_of(deployment)
    assert env["TASKQ_OPERATOR_METRICS_HOST"] == "0.0.0.0"
    assert env["TASKQ_OPERATOR_LIVENESS_PORT"] == "8081"
    assert env["TASKQ_OPERATOR_NAMESPACES"] == ""
    assert env["TASKQ_OPERATOR_COUNT_CAP"] == "1000"
    assert env["TASKQ_OPERATOR_KEYS_NAMESPACE"] == "taskq-system"  # the release's namespace
    assert "TASKQ_OPERATOR_DEFAULT_DSN" not in env  # no default database configured
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    service = one(docs, "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics", "health"}
    assert not find(docs, "StatefulSet") and not find(docs, "NetworkPolicy")
    assert not find(docs, "ServiceMonitor") and not find(docs, "ConfigMap")
    # the API is off by default
    assert not [d for d in docs if d["metadata"]["name"].endswith("-api")]
    assert not find(docs, "Ingress") and not find(docs, "PodDisruptionBudget")


def test_default_database_from_an_existing_secret(helm: str) -> None:
    docs = render(helm, "--set", "database.existingSecret=db", "--set", "database.secretKey=url")
    env = env_of(one(docs, "Deployment"))
    assert env["TASKQ_OPERATOR_DEFAULT_DSN"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert not find(docs, "Secret")  # the chart never holds the DSN itself


def test_bundled_postgresql(helm: str) -> None:
    docs = render(helm, "--set", "postgresql.enabled=true", "--set", "postgresql.password=pw")
    statefulset = one(docs, "StatefulSet", "taskq-postgresql")
    secret = one(docs, "Secret", "taskq-postgresql")
    dsn = base64.b64decode(secret["data"]["dsn"]).decode()
    assert dsn == "postgresql://taskq:pw@taskq-postgresql.taskq-system.svc:5432/taskq"
    env = env_of(one(docs, "Deployment"))
    assert env["TASKQ_OPERATOR_DEFAULT_DSN"] == {
        "secretKeyRef": {"name": "taskq-postgresql", "key": "dsn"}
    }
    pg = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert pg["securityContext"]["allowPrivilegeEscalation"] is False
    # the password reaches PostgreSQL as a file from the Secret, not as an environment variable
    env_names = {e["name"]: e.get("value") for e in pg["env"]}
    assert "POSTGRES_PASSWORD" not in env_names
    assert env_names["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgresql/password"
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["password"]["secret"]["secretName"] == "taskq-postgresql"
    # an existing Secret wins over the bundled database
    docs = render(helm, "--set", "postgresql.enabled=true", "--set", "database.existingSecret=x")
    assert env_of(one(docs, "Deployment"))["TASKQ_OPERATOR_DEFAULT_DSN"]["secretKeyRef"] == {
        "name": "x",
        "key": "dsn",
    }


def all_rules(docs: list[Doc]) -> list[tuple[str, str, Doc]]:
    return [
        (d["kind"], d["metadata"]["name"], rule)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        for rule in d["rules"]
    ]


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_FEATURES)]], ids=["default", "all"])
def test_rbac_has_no_wildcards(helm: str, values: list[str]) -> None:
    rules = all_rules(render(helm, *values))
    assert rules
    for kind, name, rule in rules:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule.get(field, []), (kind, name, rule)
        assert not rule.get("nonResourceURLs"), rule
        # nothing the operator does not do
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule
    secrets_rules = [r for _, _, r in rules if "secrets" in r["resources"]]
    assert [sorted(r["verbs"]) for r in secrets_rules] == [["create", "get", "patch"]] * len(
        secrets_rules
    )


def test_rbac_all_namespaces_is_cluster_wide(helm: str) -> None:
    docs = render(helm)
    assert not find(docs, "Role")
    roles = {d["metadata"]["name"] for d in find(docs, "ClusterRole")}
    assert roles == {"taskq", "taskq-discovery"}
    assert {d["roleRef"]["name"] for d in find(docs, "ClusterRoleBinding")} == roles
    # a glob cannot be granted per namespace either
    docs = render(helm, "--set", "operator.watchNamespaces={team-*}")
    assert not find(docs, "Role") and len(find(docs, "ClusterRole")) == 2
    assert env_of(one(docs, "Deployment"))["TASKQ_OPERATOR_NAMESPACES"] == "team-*"


def test_rbac_exact_namespaces_get_a_role_each(helm: str) -> None:
    docs = render(helm, "--set", "operator.watchNamespaces={team-a,team-b}")
    assert env_of(one(docs, "Deployment"))["TASKQ_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert sorted(d["metadata"]["namespace"] for d in find(docs, "Role")) == ["team-a", "team-b"]
    bindings = find(docs, "RoleBinding")
    assert sorted(d["metadata"]["namespace"] for d in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "taskq", "namespace": "taskq-system"}
        ]
    # the only cluster-wide grant left: kopf's read-only discovery of CRDs and namespaces
    cluster_role = one(docs, "ClusterRole")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert {v for rule in cluster_role["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}


def test_rbac_off(helm: str) -> None:
    docs = render(helm, "--set", "rbac.create=false", "--set", "serviceAccount.create=false")
    assert not [d for d in docs if "Role" in d["kind"] or d["kind"] == "ServiceAccount"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def test_crds_are_kept_templates_behind_crds_create(helm: str) -> None:
    docs = render(helm)
    crds = find(docs, "CustomResourceDefinition")
    assert sorted(d["metadata"]["name"] for d in crds) == sorted(f"{p}.taskq.dev" for p in PLURALS)
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        plural = crd["spec"]["names"]["plural"]
        source = yaml.safe_load((REPO / "crds" / f"taskq.dev_{plural}.yaml").read_text())
        assert crd["spec"] == source["spec"]  # the rendered copy is the generated CRD, unchanged
    assert not find(render(helm, "--set", "crds.create=false"), "CustomResourceDefinition")


def test_chart_crd_copies_match_crds_dir() -> None:
    """charts/taskq/files/crds/ must be byte-identical to crds/: run `make crds`."""
    ours = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    theirs = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert ours == theirs, "run `make crds`"
    for name in theirs:
        assert (CHART / "files" / "crds" / name).read_bytes() == (
            REPO / "crds" / name
        ).read_bytes(), f"charts/taskq/files/crds/{name} drifted from crds/: run `make crds`"


def chart_docs_module() -> Any:
    spec = importlib.util.spec_from_file_location("chart_docs", REPO / "tools" / "chart_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_and_schema_are_generated_from_values() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "chart_docs.py"), "--check", str(CHART)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_schema_follows_values_yaml(tmp_path: Path) -> None:
    """Types come from the defaults, descriptions from `# --`, the rest from `# @schema`; an
    empty map or list must say what it holds."""
    chart_docs = chart_docs_module()
    (tmp_path / "Chart.yaml").write_text("name: demo\nversion: 0.1.0\n")
    (tmp_path / "values.yaml").write_text(
        "# -- How often.\n"
        '# @schema {"type": "number", "minimum": 0}\n'
        "interval: 2\n"
        "probe:\n"
        "  port: 80\n"
        '# @schema {"additionalProperties": {"type": "string"}}\n'
        "labels: {}\n"
    )
    schema = json.loads(chart_docs.render_schema(tmp_path))
    assert schema["additionalProperties"] is False
    assert schema["properties"]["interval"] == {
        "description": "How often.",
        "type": "number",
        "minimum": 0,
    }
    assert schema["properties"]["probe"] == {
        "type": "object",
        "properties": {"port": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    (tmp_path / "values.yaml").write_text("tolerations: []\n")
    with pytest.raises(ValueError, match="tolerations: an empty list needs"):
        chart_docs.render_schema(tmp_path)


def test_every_value_is_documented() -> None:
    chart_docs = chart_docs_module()
    documented = {
        p
        for p, text in chart_docs.documented_keys((CHART / "values.yaml").read_text().splitlines())
        if text
    }
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict) and node and prefix not in documented:
            for key, child in node.items():
                yield from leaves(child, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix

    missing = [p for p in leaves(values, "") if p not in documented]
    assert not missing, f"values without a `# --` comment: {missing}"


@pytest.mark.parametrize(
    "bad",
    [
        "image.pullPolicy=Sometimes",
        "operator.statusInterval=0",
        "operator.metricsPort=70000",
        "replicaCount=2",  # not a value of this chart: one operator only
        "postgresql.password=p@ss/word",  # would break the DSN
        "database.existingSecret=Not_A_Name",
        "livenessProbe.successThreshold=0",  # a key values.yaml leaves out, still checked
        "resources.gpus=1",  # requests, limits and claims only
        "api.replicas=0",
        "api.port=0",
        "api.grpc.port=70000",
        "api.service.type=ExternalName",
        "api.podDisruptionBudget.maxUnavailable=some",
        "api.ingress.paths[0].path=v1",  # a path starts with /
        "api.database.existingSecret=Not_A_Name",
        "api.dashboard.enabled=yes",
        "api.dashboard.sessionSecret.existingSecret=Not_A_Name",
        "api.dashboard.sessionSecret.existingSecret= ",
        "api.dashboard.sessionSecret.key=",
        "api.dashboard.sessionSecret.key=a/b",
        "api.dashboard.sessionSecret.generate=true",  # not a value of this chart
    ],
)
def test_schema_refuses_bad_values(helm: str, bad: str) -> None:
    proc = run_helm(helm, "template", "taskq", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower() or "values don't meet" in proc.stderr.lower()


def test_optional_parts(helm: str) -> None:
    docs = render(helm, "-f", str(ALL_FEATURES))
    monitor = one(docs, "ServiceMonitor", "taskq")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    api_monitor = one(docs, "ServiceMonitor", "taskq-api")
    assert api_monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = api_monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    api_labels = one(docs, "Service", "taskq-api")["metadata"]["labels"]
    assert api_monitor["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    policies = {d["metadata"]["name"]: d for d in find(docs, "NetworkPolicy")}
    assert set(policies) == {"taskq", "taskq-api", "taskq-postgresql"}
    operator_ingress = policies["taskq"]["spec"]["ingress"][0]
    assert {p["port"] for p in operator_ingress["ports"]} == {"metrics", "health"}
    assert operator_ingress["from"][0]["namespaceSelector"]
    api_ingress = policies["taskq-api"]["spec"]["ingress"][0]
    assert {p["port"] for p in api_ingress["ports"]} == {"http", "grpc"}
    assert len(api_ingress["from"]) == 2
    # the API's database is the bundled PostgreSQL here: its policy lets the API's pods in
    peers = policies["taskq-postgresql"]["spec"]["ingress"][0]["from"]
    components = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers]
    assert components == ["operator", "api"]
    image = one(docs, "Deployment", "taskq")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/taskq/taskq-operator@sha256:" + "0" * 64
    api = one(docs, "Deployment", "taskq-api")["spec"]["template"]["spec"]
    assert api["containers"][0]["image"] == "ghcr.io/taskq/taskq-api@sha256:" + "1" * 64
    assert api["initContainers"][0]["image"] == api["containers"][0]["image"]


def test_dashboard_configmap(helm: str) -> None:
    docs = render(helm, "--set", "dashboards.enabled=true")
    configmap = one(docs, "ConfigMap", "taskq-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["taskq.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    # prometheus_client adds _total to a Counter's declared name
    used = {m.removesuffix("_total") for m in re.findall(r"taskq_[a-z_]+", exprs)}
    metrics_source = (REPO / "operator" / "src" / "taskq_operator" / "metrics.py").read_text()
    exported = set(re.findall(r'"(taskq_[a-z_]+)"', metrics_source))
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("depth", "age", "throughput", "replicas"):
        assert word in titles


def test_helm_test_hook(helm: str) -> None:
    docs = render(helm)
    job = one(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "taskq-metrics.taskq-system.svc" in command[-1]
    # with the API, a second Job asks it through its Service, from its own image
    docs = render(helm, "--set", "api.enabled=true", "--set", "database.existingSecret=db")
    job = one(docs, "Job", "taskq-api-test")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/taskq/taskq-api:0.1.0"
    assert "http://taskq-api.taskq-system.svc:8000" in container["command"][-1]
    assert "/readyz" in container["command"][-1]


# --- the API server ---------------------------------------------------------------------------


def test_api_deployment_service_and_budget(helm: str) -> None:
    docs = render(helm, "--set", "api.enabled=true", "--set", "database.existingSecret=db")
    deployment = one(docs, "Deployment", "taskq-api")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/taskq/taskq-api:0.1.0"
    assert container["command"] == ["taskq-api"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000}
    # the restricted Pod Security profile, for the server and its init container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (migrate,) = pod["initContainers"]
    for each in (container, migrate):
        sc = each["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]
    env = env_of(deployment, "api")
    # the operator's default database, read by reference
    assert env == {
        "TASKQ_DSN": {"secretKeyRef": {"name": "db", "key": "dsn"}},
        "TASKQ_API_HOST": "0.0.0.0",
        "TASKQ_API_PORT": "8000",
        "TASKQ_API_GRPC_PORT": "0",  # no gRPC port the Service does not expose
    }
    assert migrate["command"] == ["taskq", "migrate"]
    assert env_of(deployment, "migrate") == {"TASKQ_DSN": env["TASKQ_DSN"]}

    service = one(docs, "Service", "taskq-api")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    # the operator's Service and the API's select disjoint pods
    operator_selector = one(docs, "Service", "taskq-metrics")["spec"]["selector"]
    assert not operator_selector.items() <= pod_labels.items()
    budget = one(docs, "PodDisruptionBudget", "taskq-api")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert not find(docs, "Ingress")


def test_api_options(helm: str) -> None:
    docs = render(
        helm,
        "--set", "api.enabled=true",
        "--set", "api.replicas=1",
        "--set", "api.migrate=false",
        "--set", "api.database.existingSecret=api-db",
        "--set", "api.database.secretKey=url",
        "--set", "api.grpc.enabled=true",
        "--set", "api.service.type=LoadBalancer",
        "--set", "api.ingress.enabled=true",
        "--set", "api.ingress.className=nginx",
        "--set", "api.ingress.hosts={taskq.example.com}",
        "--set", "api.ingress.tls[0].secretName=tls",
        "--set", "api.ingress.tls[0].hosts={taskq.example.com}",
        "--set", "api.extraEnv[0].name=TASKQ_API_LOG_LEVEL",
        "--set", "api.extraEnv[0].value=WARNING",
    )
    deployment = one(docs, "Deployment", "taskq-api")
    pod = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    container = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 9090,
    }
    env = env_of(deployment)
    assert env["TASKQ_DSN"] == {"secretKeyRef": {"name": "api-db", "key": "url"}}
    assert env["TASKQ_API_GRPC_PORT"] == "9090"
    assert env["TASKQ_API_LOG_LEVEL"] == "WARNING"
    service = one(docs, "Service", "taskq-api")
    assert service["spec"]["type"] == "LoadBalancer"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (8000, "http"),
        "grpc": (9090, "grpc"),
    }
    # one replica: a budget would only block node drains
    assert not find(docs, "PodDisruptionBudget")
    ingress = one(docs, "Ingress", "taskq-api")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "tls", "hosts": ["taskq.example.com"]}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "taskq.example.com"
    # the REST API only: /healthz, /readyz and /metrics need no key and stay in the cluster
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
        ("/v1", "Prefix"),
        ("/openapi.json", "Exact"),
    ]
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": "taskq-api", "port": {"name": "http"}}
    # an Ingress without hosts routes every host
    docs = render(
        helm, "--set", "api.enabled=true", "--set", "postgresql.enabled=true",
        "--set", "api.ingress.enabled=true",
    )
    assert "host" not in one(docs, "Ingress")["spec"]["rules"][0]
    # the bundled PostgreSQL is the API's database when nothing else is said
    assert env_of(one(docs, "Deployment", "taskq-api"))["TASKQ_DSN"] == {
        "secretKeyRef": {"name": "taskq-postgresql", "key": "dsn"}
    }


def test_api_environment_is_read_by_api_settings(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variables the chart sets mean to taskq-api what the chart means by them (its
    settings ignore unknown variables, so a misspelt one would pass unnoticed)."""
    docs = render(
        helm, "--set", "api.enabled=true", "--set", "database.existingSecret=db",
        "--set", "api.port=8080", "--set", "api.extraEnv[0].name=TASKQ_API_LOG_LEVEL",
        "--set", "api.extraEnv[0].value=WARNING",
    )
    for name in [n for n in os.environ if n.startswith("TASKQ_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(one(docs, "Deployment", "taskq-api")).items():
        # the Secret's value, as the kubelet would put it there
        monkeypatch.setenv(name, "postgresql://db/taskq" if "secretKeyRef" in value else value)
    settings = ApiSettings()  # the DSN comes from the environment
    assert settings.dsn.get_secret_value() == "postgresql://db/taskq"
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 8080, "WARNING")
    assert settings.grpc_port == 0  # off, as the chart's api.grpc.enabled says


def test_api_grpc_environment_is_read_by_api_settings(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(
        helm, "--set", "api.enabled=true", "--set", "database.existingSecret=db",
        "--set", "api.grpc.enabled=true", "--set", "api.grpc.port=9443",
    )
    for name in [n for n in os.environ if n.startswith("TASKQ_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(one(docs, "Deployment", "taskq-api")).items():
        monkeypatch.setenv(name, "postgresql://db/taskq" if "secretKeyRef" in value else value)
    assert ApiSettings().grpc_port == 9443


def test_api_without_a_database_is_refused(helm: str) -> None:
    proc = run_helm(
        helm, "template", "taskq", str(CHART), "--set", "api.enabled=true", check=False
    )
    assert proc.returncode != 0
    assert "api.enabled needs a database" in proc.stderr


# --- the dashboard (api.dashboard) -------------------------------------------------------------

API_ON = ("--set", "api.enabled=true", "--set", "database.existingSecret=db")
DASHBOARD_ON = (*API_ON, "--set", "api.dashboard.enabled=true")
GENERATED = "taskq-api-session"  # the session Secret the chart makes for the release taskq


def test_api_dashboard_with_a_generated_session_secret(helm: str) -> None:
    docs = render(helm, *DASHBOARD_ON, "--set", "api.replicas=3")
    deployment = one(docs, "Deployment", "taskq-api")
    env = env_of(deployment, "api")
    assert env["TASKQ_API_DASHBOARD"] == "true"
    # every pod reads the one Secret: a cookie signed by one replica is good at the others
    assert env["TASKQ_API_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "taskq-api-session", "key": "session-secret"}
    }
    # the migrate init container needs neither
    assert env_of(deployment, "migrate") == {"TASKQ_DSN": env["TASKQ_DSN"]}
    secret = one(docs, "Secret", "taskq-api-session")
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert set(secret["data"]) == {"session-secret"}
    value = base64.b64decode(secret["data"]["session-secret"]).decode()
    assert len(value) == 48 and value.isalnum()
    # `helm template` cannot read the cluster (lookup finds nothing): a new secret each time,
    # which docs/helm.md warns about; `helm upgrade` keeps it (the cluster test)
    again = one(render(helm, *DASHBOARD_ON), "Secret", "taskq-api-session")
    assert again["data"] != secret["data"]
    # helm test also asks the dashboard's login page
    job = one(docs, "Job", "taskq-api-test")
    assert "/dashboard/login" in job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    # the key of the generated Secret can be chosen
    docs = render(helm, *DASHBOARD_ON, "--set", "api.dashboard.sessionSecret.key=cookie.key")
    assert set(one(docs, "Secret", "taskq-api-session")["data"]) == {"cookie.key"}
    assert env_of(one(docs, "Deployment", "taskq-api"))["TASKQ_API_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "taskq-api-session", "key": "cookie.key"}
    }


def test_api_dashboard_with_an_existing_session_secret(helm: str) -> None:
    docs = render(
        helm, *DASHBOARD_ON,
        "--set", "api.dashboard.sessionSecret.existingSecret=dashboard-cookies",
        "--set", "api.dashboard.sessionSecret.key=secret",
    )
    env = env_of(one(docs, "Deployment", "taskq-api"))
    assert env["TASKQ_API_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "dashboard-cookies", "key": "secret"}
    }
    assert not find(docs, "Secret")  # the chart neither holds nor copies it


def test_api_dashboard_off(helm: str) -> None:
    # off by default, and a session secret named while it is off changes nothing
    for values in ((), ("--set", "api.dashboard.sessionSecret.existingSecret=cookies")):
        docs = render(helm, *API_ON, "--set", "api.ingress.enabled=true", *values)
        env = env_of(one(docs, "Deployment", "taskq-api"))
        assert "TASKQ_API_DASHBOARD" not in env and "TASKQ_API_SESSION_SECRET" not in env
        assert not find(docs, "Secret")
        paths = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
        assert [p["path"] for p in paths] == ["/v1", "/openapi.json"]
        job = one(docs, "Job", "taskq-api-test")
        assert "/dashboard" not in job["spec"]["template"]["spec"]["containers"][0]["command"][-1]


def test_api_dashboard_ingress_paths(helm: str) -> None:
    docs = render(
        helm, *DASHBOARD_ON, "--set", "api.ingress.enabled=true",
        "--set", "api.ingress.hosts={a.example.com,b.example.com}",
    )
    rules = one(docs, "Ingress", "taskq-api")["spec"]["rules"]
    assert len(rules) == 2
    for rule in rules:
        # pages, live streams (/dashboard/events/...) and static files (/dashboard/static/...)
        assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
            ("/v1", "Prefix"),
            ("/openapi.json", "Exact"),
            ("/dashboard", "Prefix"),
        ]
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": "taskq-api", "port": {"name": "http"}}
    # paths of one's own are kept, and /dashboard is not routed twice when they list it
    docs = render(
        helm, *DASHBOARD_ON, "--set", "api.ingress.enabled=true",
        "--set", "api.ingress.paths[0].path=/v1",
        "--set", "api.ingress.paths[0].pathType=Prefix",
        "--set", "api.ingress.paths[1].path=/dashboard",
        "--set", "api.ingress.paths[1].pathType=ImplementationSpecific",
    )
    paths = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/v1", "Prefix"),
        ("/dashboard", "ImplementationSpecific"),
    ]


def test_api_dashboard_environment_is_read_by_api_settings(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's dashboard variables turn the dashboard on in taskq-api, with the generated
    Secret's value as its session secret (long enough for its check)."""
    docs = render(helm, *DASHBOARD_ON)
    secret = one(docs, "Secret", "taskq-api-session")
    values = {
        "db": "postgresql://db/taskq",
        "taskq-api-session": base64.b64decode(secret["data"]["session-secret"]).decode(),
    }
    for name in [n for n in os.environ if n.startswith("TASKQ_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(one(docs, "Deployment", "taskq-api")).items():
        # the Secret's value, as the kubelet would put it there
        ref = value["secretKeyRef"]["name"] if isinstance(value, dict) else None
        monkeypatch.setenv(name, values[ref] if ref else value)
    settings = ApiSettings()
    assert settings.dashboard is True
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == values["taskq-api-session"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["--set", "api.dashboard.enabled=true"],
            "api.dashboard.enabled=true needs api.enabled=true: the dashboard is served by the "
            "API server's pods. Set api.enabled=true",
        ),
        (
            [*DASHBOARD_ON, "--set", "api.extraEnv[0].name=TASKQ_API_LOG_LEVEL",
             "--set", "api.extraEnv[0].value=DEBUG",
             "--set", "api.extraEnv[1].name=TASKQ_API_SESSION_SECRET",
             "--set", "api.extraEnv[1].value=" + "x" * 40],
            "api.extraEnv[1].name=TASKQ_API_SESSION_SECRET conflicts with "
            "api.dashboard.enabled=true",
        ),
        (
            [*DASHBOARD_ON, "--set", "api.extraEnv[0].name=TASKQ_API_DASHBOARD",
             "--set", "api.extraEnv[0].value=false"],
            "api.extraEnv[0].name=TASKQ_API_DASHBOARD conflicts with api.dashboard.enabled=true",
        ),
        (
            [*DASHBOARD_ON, "--set", "api.dashboard.sessionSecret.existingSecret=" + GENERATED],
            "api.dashboard.sessionSecret.existingSecret=taskq-api-session is the name of the "
            "Secret the chart generates",
        ),
    ],
    ids=["without-api", "extra-env-secret", "extra-env-switch", "generated-name"],
)
def test_api_dashboard_refusals(helm: str, values: list[str], message: str) -> None:
    proc = run_helm(helm, "template", "taskq", str(CHART), *values, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_api_trusted_proxies_are_read_by_api_settings(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api.forwardedAllowIps becomes the server's trusted proxies (the session cookie is
    Secure when they say HTTPS); left empty, the server keeps its own default."""
    env = env_of(one(render(helm, *DASHBOARD_ON), "Deployment", "taskq-api"))
    assert "TASKQ_API_FORWARDED_ALLOW_IPS" not in env
    docs = render(helm, *DASHBOARD_ON, "--set", "api.forwardedAllowIps={10.244.0.0/16,fd00::/8}")
    env = env_of(one(docs, "Deployment", "taskq-api"))
    assert env["TASKQ_API_FORWARDED_ALLOW_IPS"] == "10.244.0.0/16,fd00::/8"
    for name in [n for n in os.environ if n.startswith("TASKQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://db/taskq")
    monkeypatch.setenv("TASKQ_API_FORWARDED_ALLOW_IPS", env["TASKQ_API_FORWARDED_ALLOW_IPS"])
    assert ApiSettings().forwarded_allow_ips == ["10.244.0.0/16", "fd00::/8"]

    proc = run_helm(helm, "template", "taskq", str(CHART), *API_ON,
                    "--set", "api.forwardedAllowIps={10.0.0.1}",
                    "--set", "api.extraEnv[0].name=TASKQ_API_FORWARDED_ALLOW_IPS",
                    "--set", "api.extraEnv[0].value=*", check=False)
    assert proc.returncode != 0
    assert ("api.extraEnv[0].name=TASKQ_API_FORWARDED_ALLOW_IPS conflicts with "
            "api.forwardedAllowIps") in proc.stderr, proc.stderr


def test_api_dashboard_hand_set_variables_still_render(helm: str) -> None:
    """Before api.dashboard, docs/dashboard.md said to set the two variables by hand in
    api.extraEnv: with api.dashboard.enabled off, such values still render as they did."""
    docs = render(
        helm, *API_ON,
        "--set", "api.extraEnv[0].name=TASKQ_API_DASHBOARD",
        "--set-string", "api.extraEnv[0].value=true",
    )
    assert env_of(one(docs, "Deployment", "taskq-api"))["TASKQ_API_DASHBOARD"] == "true"
    assert not find(docs, "Secret")


# --- on the local control plane ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kube() -> Iterator[Path]:
    with cluster.running() as kubeconfig:
        yield kubeconfig


def sa_kubeconfig(admin: Path, namespace: str, sa: str, out: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, as the operator pod would."""
    token = cluster.kubectl(
        "-n", namespace, "create", "token", sa, "--duration=30m", kubeconfig=admin
    ).stdout.strip()
    config = yaml.safe_load(admin.read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    server = next(c for c in config["clusters"] if c["name"] == current["context"]["cluster"])
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [server],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": server["name"], "user": sa}}],
                "current-context": sa,
            }
        )
    )
    return out


def can_i(admin: Path, namespace: str, sa: str, verb: str, resource: str, where: str) -> bool:
    """`kubectl auth can-i` as the ServiceAccount; `resource` may end in `/subresource`."""
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    proc = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        *extra,
        "-n",
        where,
        f"--as=system:serviceaccount:{namespace}:{sa}",
        kubeconfig=admin,
        check=False,
    )
    return proc.stdout.strip() == "yes"


def uid(admin: Path, *what: str) -> str:
    out: str = cluster.kubectl(*what, "-o", "jsonpath={.metadata.uid}", kubeconfig=admin).stdout
    return out


HELM_CRD_METADATA = {
    "metadata": {
        "annotations": {
            "meta.helm.sh/release-name": None,
            "meta.helm.sh/release-namespace": None,
            "helm.sh/resource-policy": None,
        },
        "labels": {
            "helm.sh/chart": None,
            "app.kubernetes.io/managed-by": None,
            "app.kubernetes.io/instance": None,
            "app.kubernetes.io/version": None,
        },
    }
}
# Field managers a test run leaves on the CRDs. Fields still owned by them would make a later
# `kubectl apply --server-side` of a changed CRD (the e2e tests) fail with a conflict.
FOREIGN_MANAGERS = {"helm", "before-first-apply", "kubectl-patch"}


def restore_shared_crds(admin: Path, namespace: str) -> None:
    """Hand the CRDs (shared by everyone on the cluster) back as `kubectl apply --server-side
    -f crds/` leaves them, unless another release has adopted them meanwhile."""
    for plural in PLURALS:
        name = f"{plural}.taskq.dev"
        found = cluster.kubectl(
            "get", "crd", name, "-o", "json", kubeconfig=admin, check=False
        ).stdout
        if (
            not found
            or (json.loads(found)["metadata"].get("annotations") or {}).get(
                "meta.helm.sh/release-namespace"
            )
            != namespace
        ):
            continue
        cluster.kubectl(
            "patch",
            "crd",
            name,
            "--type=merge",
            "-p",
            json.dumps(HELM_CRD_METADATA),
            kubeconfig=admin,
        )
        source = REPO / "crds" / f"taskq.dev_{plural}.yaml"
        cluster.kubectl("apply", "--server-side", "-f", str(source), kubeconfig=admin)
        managed = json.loads(
            cluster.kubectl(
                "get", "crd", name, "-o", "json", "--show-managed-fields", kubeconfig=admin
            ).stdout
        )["metadata"]["managedFields"]
        kept = [m for m in managed if m["manager"] not in FOREIGN_MANAGERS]
        cluster.kubectl(
            "patch",
            "crd",
            name,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"managedFields": kept}}),
            kubeconfig=admin,
        )


TASKQUEUE = """
apiVersion: taskq.dev/v1alpha1
kind: TaskQueue
metadata: {name: jobs}
spec: {deletionPolicy: Retain}
"""
APIKEY = """
apiVersion: taskq.dev/v1alpha1
kind: TaskqApiKey
metadata: {name: ci}
spec: {role: operator}
"""
WORKERPOOL = """
apiVersion: taskq.dev/v1alpha1
kind: WorkerPool
metadata: {name: crunchers}
spec:
  queues: [jobs]
  image: taskq-worker:dev
  app: examples.thumbnails
  autoscaling: {minReplicas: 1, maxReplicas: 2}
"""


def pod_container(
    kube: Path, ns: str, deployment: str, container: str
) -> tuple[list[str], dict[str, str]]:
    """The command of a container of the live Deployment and the environment it gets, its
    Secrets read as the kubelet reads them."""
    spec = json.loads(
        cluster.kubectl("-n", ns, "get", "deployment", deployment, "-o", "json", kubeconfig=kube)
        .stdout
    )["spec"]["template"]["spec"]
    (found,) = [
        c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container
    ]
    env: dict[str, str] = {}
    for entry in found["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = json.loads(
                cluster.kubectl(
                    "-n", ns, "get", "secret", ref["name"], "-o", "json", kubeconfig=kube
                ).stdout
            )
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return found["command"], env


def test_install_upgrade_uninstall_on_the_cluster(
    helm: str, kube: Path, dsn: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    ns = f"helm-{secrets.token_hex(3)}"
    release = "tq"
    sa = "tq-taskq"
    kubectl = cluster.kubectl
    kubectl("create", "namespace", ns, kubeconfig=kube)
    # Pod Security admission refuses any pod of the chart (operator, helm test Job) that is not
    # within the restricted profile.
    kubectl(
        "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", kubeconfig=kube
    )
    operator: Operator | None = None
    try:
        kubectl(
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "taskq-db",
            f"--from-literal=dsn={dsn}",
            kubeconfig=kube,
        )
        # The API's own database, without the schema: its pods' init container migrates it.
        api_dsn = asyncio.run(fresh_database(pg, f"helm_api_{ns[5:]}", migrated=False))
        kubectl(
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "taskq-api-db",
            f"--from-literal=dsn={api_dsn}",
            kubeconfig=kube,
        )
        kc = ["--kubeconfig", str(kube)]
        # --take-ownership: the CRDs may already be there (applied by the e2e tests, or by
        # another release); they are adopted, never deleted (resource-policy: keep).
        installed = run_helm(
            helm,
            "install",
            release,
            str(CHART),
            "--namespace",
            ns,
            *kc,
            "--take-ownership",
            "--set",
            f"operator.watchNamespaces={{{ns}}}",
            "--set",
            "database.existingSecret=taskq-db",
            "--set",
            "operator.statusInterval=1",
            "--set",
            "api.enabled=true",
            "--set",
            "api.image.repository=taskq-api",
            "--set",
            "api.image.tag=dev",
            "--set",
            "api.database.existingSecret=taskq-api-db",
            "--set",
            "api.grpc.enabled=true",
            "--set",
            "api.ingress.enabled=true",
            "--set",
            "api.ingress.hosts={taskq.example.com}",
            "--set",
            "api.dashboard.enabled=true",
            "--wait",
            "--timeout",
            "90s",
            timeout=150,
        )
        notes = installed.stdout
        assert f"watches the namespaces: {ns}." in notes, notes
        assert "the DSN in Secret taskq-db (key dsn)" in notes, notes
        assert "kept on `helm uninstall`" in notes, notes
        assert f"http://tq-taskq-api.{ns}.svc:8000" in notes, notes
        assert "https://taskq.example.com/dashboard/" not in notes, notes  # no TLS here
        assert "http://taskq.example.com/dashboard/" in notes, notes
        assert "session secret in\n  Secret tq-taskq-api-session" in notes, notes

        def session_secret() -> str:
            secret = get(kube, ns, "secret", "tq-taskq-api-session") or {}
            return base64.b64decode(secret["data"]["session-secret"]).decode()

        generated = session_secret()
        assert len(generated) == 48
        # the operator pod is Running (kwok plays the kubelet: the container does not run)
        pods = json.loads(
            kubectl(
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "json",
                kubeconfig=kube,
            ).stdout
        )["items"]
        assert [p["status"]["phase"] for p in pods] == ["Running"]
        # the API's pods too, admitted under the restricted profile, behind their Service, their
        # budget computed by the disruption controller
        api_pods = json.loads(
            kubectl(
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=api",
                "-o",
                "json",
                kubeconfig=kube,
            ).stdout
        )["items"]
        assert [p["status"]["phase"] for p in api_pods] == ["Running"] * 2

        def api_endpoints() -> list[Any] | None:
            """The ready endpoints of the API's Service, once there are two."""
            slices = json.loads(
                kubectl(
                    "-n",
                    ns,
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=tq-taskq-api",
                    "-o",
                    "json",
                    kubeconfig=kube,
                ).stdout
            )["items"]
            ready = [
                sorted(p["name"] for p in s["ports"])
                for s in slices
                for e in s.get("endpoints") or []
                if e["conditions"].get("ready")
            ]
            return ready if len(ready) == 2 else None

        endpoints = wait_for(api_endpoints, "the API's two pods behind its Service")
        assert endpoints == [["grpc", "http"]] * 2
        wait_for(
            lambda: (
                (get(kube, ns, "poddisruptionbudget", "tq-taskq-api") or {}).get("status", {})
            ).get("expectedPods")
            == 2,
            "the API's PodDisruptionBudget counting its two pods",
        )
        assert get(kube, ns, "ingress", "tq-taskq-api") is not None

        # The API's pod as the kubelet would run it, locally: the init container's command
        # migrates the empty database, then the server, with the pod's environment (but bound to
        # 127.0.0.1), becomes ready on it.
        command, env = pod_container(kube, ns, "tq-taskq-api", "migrate")
        migrate_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
        migrated = subprocess.run(
            [str(Path(sys.executable).parent / command[0]), *command[1:]],
            env={**migrate_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        command, env = pod_container(kube, ns, "tq-taskq-api", "api")
        assert command == ["taskq-api"]
        assert env["TASKQ_DSN"] == api_dsn
        api = LocalApi(env, tmp_path / "api.log")
        try:
            api.start()  # returns once /readyz answers 200: the schema is there
            with urllib.request.urlopen(f"{api.url}/openapi.json", timeout=10) as answer:
                assert "/v1/tasks/{task_id}" in json.load(answer)["paths"]
            # the dashboard, on, its session secret the generated Secret's
            assert env["TASKQ_API_DASHBOARD"] == "true"
            assert env["TASKQ_API_SESSION_SECRET"] == generated
            with urllib.request.urlopen(f"{api.url}/dashboard/login", timeout=10) as answer:
                assert b"API key" in answer.read()
        finally:
            assert api.stop() == 0, (tmp_path / "api.log").read_text()[-3000:]
        crd_uids = {
            name: uid(kube, "get", "crd", name)
            for name in (f"{plural}.taskq.dev" for plural in PLURALS)
        }

        # RBAC: what the ServiceAccount may and may not do
        allowed = [
            ("list", "taskqueues.taskq.dev", ns),
            ("watch", "workerpools.taskq.dev", ns),
            ("patch", "taskqueues.taskq.dev", ns),
            ("patch", "workerpools.taskq.dev/status", ns),
            ("update", "workerpools.taskq.dev/finalizers", ns),
            ("watch", "taskqapikeys.taskq.dev", ns),
            ("patch", "taskqapikeys.taskq.dev/status", ns),
            ("update", "taskqapikeys.taskq.dev/finalizers", ns),
            ("watch", "taskschedules.taskq.dev", ns),
            ("patch", "taskschedules.taskq.dev/status", ns),
            ("get", "deployments.apps", ns),
            ("patch", "deployments.apps", ns),
            ("create", "deployments.apps", ns),
            ("patch", "deployments.apps/scale", ns),
            ("get", "secrets", ns),
            ("patch", "secrets", ns),
            ("create", "secrets", ns),
            ("create", "events", ns),
            ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),
            ("watch", "namespaces", ""),
        ]
        denied = [
            ("get", "secrets", "default"),
            ("list", "secrets", ns),
            ("delete", "deployments.apps", ns),
            ("update", "deployments.apps/scale", ns),
            ("delete", "taskqueues.taskq.dev", ns),
            ("create", "pods", ns),
            ("get", "taskqueues.taskq.dev", "default"),
            ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
            ("update", "taskqueues.taskq.dev/status", ns),
            ("update", "taskqueues.taskq.dev/finalizers", ns),
            ("watch", "secrets", ns),
            ("delete", "taskqapikeys.taskq.dev", ns),
            ("create", "taskqapikeys.taskq.dev", ns),
        ]
        for verb, resource, where in allowed:
            assert can_i(kube, ns, sa, verb, resource, where or ns), (verb, resource, where)
        for verb, resource, where in denied:
            assert not can_i(kube, ns, sa, verb, resource, where or ns), (verb, resource, where)

        # The operator as the pod would run it: same environment, the ServiceAccount's token.
        config = sa_kubeconfig(kube, ns, sa, tmp_path / "sa.kubeconfig")
        log = tmp_path / "operator.log"
        operator = Operator(config, dsn, log)
        operator.env["TASKQ_OPERATOR_NAMESPACES"] = ns
        operator.start()
        kubectl("-n", ns, "apply", "-f", "-", input=TASKQUEUE, kubeconfig=kube)
        kubectl("-n", ns, "apply", "-f", "-", input=WORKERPOOL, kubeconfig=kube)
        kubectl("-n", ns, "apply", "-f", "-", input=APIKEY, kubeconfig=kube)
        wait_for(
            lambda: (condition(get(kube, ns, "taskqueue", "jobs")) or {}).get("status") == "True",
            "TaskQueue Ready as the chart's ServiceAccount",
        )
        wait_for(lambda: get(kube, ns, "deployment", "crunchers"), "the pool's Deployment")
        wait_for(lambda: get(kube, ns, "secret", "crunchers-taskq-dsn"), "the pool's DSN Secret")
        wait_for(
            lambda: (condition(get(kube, ns, "taskqapikey", "ci")) or {}).get("status") == "True",
            "TaskqApiKey Ready, its key in its Secret",
        )
        assert get(kube, ns, "secret", "ci") is not None
        wait_for(
            lambda: (
                (condition(get(kube, ns, "workerpool", "crunchers")) or {}).get("status") == "True"
            ),
            "WorkerPool Ready",
        )

        def pool_events() -> list[Any]:
            items = json.loads(
                kubectl("-n", ns, "get", "events", "-o", "json", kubeconfig=kube).stdout
            )["items"]
            return [e for e in items if e["involvedObject"]["kind"] == "WorkerPool"]

        # the scaling decision is an Event: posting it needs `events: create`
        wait_for(pool_events, "an Event on the WorkerPool posted as the ServiceAccount")
        time.sleep(2)  # a few more passes: status writes
        text = log.read_text()
        assert "403" not in text and "Forbidden" not in text, text[-3000:]
        assert "Not enough permissions" not in text, text[-3000:]
        operator.stop()

        # helm test: the hook Jobs run (kwok completes them)
        out = run_helm(
            helm, "test", release, "--namespace", ns, *kc, "--timeout", "90s", timeout=150
        ).stdout
        assert out.count("Succeeded") == 2 and "tq-taskq-api-test" in out, out

        # an existing session Secret the cluster holds is checked before anything changes:
        # without the key, or with a value taskq-api would refuse
        kubectl(
            "-n", ns, "create", "secret", "generic", "short",
            "--from-literal=session-secret=abc", kubeconfig=kube,
        )
        for existing, message in (
            ("taskq-api-db", 'the Secret has no key "session-secret"'),
            ("short", 'key "session-secret" holds fewer than 32 characters'),
        ):
            refused = run_helm(
                helm, "upgrade", release, str(CHART), "--namespace", ns, *kc, "--reuse-values",
                "--set", f"api.dashboard.sessionSecret.existingSecret={existing}",
                check=False, timeout=150,
            )
            assert refused.returncode != 0
            assert f"api.dashboard.sessionSecret.existingSecret={existing}: " in refused.stderr
            assert message in refused.stderr, refused.stderr

        # upgrade: a changed value rolls out; CRDs and queues stay
        run_helm(
            helm,
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            ns,
            *kc,
            "--reuse-values",
            "--set",
            "operator.statusInterval=3",
            "--set",
            "api.replicas=1",
            "--wait",
            "--timeout",
            "90s",
            timeout=150,
        )
        env = env_of(
            json.loads(
                kubectl(
                    "-n", ns, "get", "deployment", "tq-taskq", "-o", "json", kubeconfig=kube
                ).stdout
            )
        )
        assert env["TASKQ_OPERATOR_STATUS_INTERVAL"] == "3"
        # the generated session secret is read back (lookup), not made anew: nobody signed out
        assert session_secret() == generated
        # one API replica: no budget left to block node drains
        assert (get(kube, ns, "deployment", "tq-taskq-api") or {})["spec"]["replicas"] == 1
        assert get(kube, ns, "poddisruptionbudget", "tq-taskq-api") is None
        assert {n: uid(kube, "get", "crd", n) for n in crd_uids} == crd_uids
        assert get(kube, ns, "taskqueue", "jobs") is not None

        # uninstall: the operator and its RBAC go; the CRDs, TaskQueues and WorkerPools stay
        out = run_helm(
            helm, "uninstall", release, "--namespace", ns, *kc, "--wait", timeout=150
        ).stdout
        assert "kept due to the resource policy" in out, out
        assert {n: uid(kube, "get", "crd", n) for n in crd_uids} == crd_uids
        assert get(kube, ns, "taskqueue", "jobs") is not None
        assert get(kube, ns, "workerpool", "crunchers") is not None
        assert get(kube, ns, "deployment", "tq-taskq") is None
        assert get(kube, ns, "deployment", "tq-taskq-api") is None
        assert get(kube, ns, "service", "tq-taskq-api") is None
        assert get(kube, ns, "serviceaccount", sa) is None
        assert (
            kubectl(
                "get", "clusterrole", "tq-taskq-discovery", kubeconfig=kube, check=False
            ).returncode
            != 0
        )
    finally:
        if operator is not None:
            operator.stop()
        # no operator is left to remove the finalizers: drop them so the namespace can go
        for kind in (f"{plural}.taskq.dev" for plural in PLURALS):
            names = kubectl(
                "-n", ns, "get", kind, "-o", "name", kubeconfig=kube, check=False
            ).stdout.split()
            for name in names:
                kubectl(
                    "-n",
                    ns,
                    "patch",
                    name,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    kubeconfig=kube,
                    check=False,
                )
        run_helm(
            helm, "uninstall", release, "--namespace", ns, "--kubeconfig", str(kube), check=False
        )
        restore_shared_crds(kube, ns)
        kubectl(
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
            kubeconfig=kube,
            check=False,
        )
