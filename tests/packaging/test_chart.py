"""The Helm chart charts/taskq, with the real helm (built from tools/helm by tools/build.sh).

- Rendering: `helm lint --strict` and `helm template` with various values; the schema refuses bad
  values; least-privilege RBAC (no wildcards); the CRD copies and the README are up to date.
- On the local control plane (tests/e2e/cluster.py): `helm install` into a namespace of its own,
  the operator pod Running (kwok), the RBAC exercised by running `python -m taskq_operator`
  locally as the chart's ServiceAccount (a token from `kubectl create token`), `helm test`,
  `helm upgrade` and `helm uninstall` leaving the CRDs and the queues in place.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.operator import Operator, condition, get, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "taskq"
# The CRDs of the chart, by plural
PLURALS = ("taskqueues", "workerpools", "taskqapikeys")
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


def env_of(deployment: Doc) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


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
    assert env["TASKQ_OPERATOR_KEYS_NAMESPACE"] == "taskq-system"  # the release's namespace
    assert "TASKQ_OPERATOR_DEFAULT_DSN" not in env  # no default database configured
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    service = one(docs, "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"metrics", "health"}
    assert not find(docs, "StatefulSet") and not find(docs, "NetworkPolicy")
    assert not find(docs, "ServiceMonitor") and not find(docs, "ConfigMap")


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
    ],
)
def test_schema_refuses_bad_values(helm: str, bad: str) -> None:
    proc = run_helm(helm, "template", "taskq", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower() or "values don't meet" in proc.stderr.lower()


def test_optional_parts(helm: str) -> None:
    docs = render(helm, "-f", str(ALL_FEATURES))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    policies = {d["metadata"]["name"]: d for d in find(docs, "NetworkPolicy")}
    assert set(policies) == {"taskq", "taskq-postgresql"}
    operator_ingress = policies["taskq"]["spec"]["ingress"][0]
    assert {p["port"] for p in operator_ingress["ports"]} == {"metrics", "health"}
    assert operator_ingress["from"][0]["namespaceSelector"]
    image = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/taskq/taskq-operator@sha256:" + "0" * 64


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


def test_install_upgrade_uninstall_on_the_cluster(
    helm: str, kube: Path, dsn: str, tmp_path: Path
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
            "--wait",
            "--timeout",
            "90s",
            timeout=150,
        )
        notes = installed.stdout
        assert f"watches the namespaces: {ns}." in notes, notes
        assert "the DSN in Secret taskq-db (key dsn)" in notes, notes
        assert "kept on `helm uninstall`" in notes, notes
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
            ("get", "deployments.apps", ns),
            ("patch", "deployments.apps", ns),
            ("create", "deployments.apps", ns),
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

        # helm test: the hook Job runs (kwok completes it)
        out = run_helm(
            helm, "test", release, "--namespace", ns, *kc, "--timeout", "90s", timeout=150
        ).stdout
        assert "Succeeded" in out, out

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
