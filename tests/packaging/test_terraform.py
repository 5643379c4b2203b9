"""The Terraform/OpenTofu modules under terraform/, with the real tofu and real providers.

tofu and the kubernetes, helm and random providers are built from the pinned Go modules in
tools/ (tools/build.sh) and reach tofu through a filesystem mirror (terraform/mirror.sh): no
registry is contacted. Providers found in an optional local mirror (/opt/tf-plugins, say the aws
provider) are used too; a module whose providers are not all available gets `tofu validate` /
`tofu test` skipped with the reason, and its variable contract checked without providers.

- `tofu fmt -check` over every module and example.
- `tofu validate` and `tofu test` (mock_provider, plan-time assertions) per module.
- Variable contracts of the cloud modules (tests/contract/*.tftest.hcl): run against the module's
  variables.tf alone, which needs no provider, so they run everywhere.
- `tofu apply` of examples/local (modules/taskq and the real chart) onto the local control plane
  into a `tf-` namespace watched by nobody else, checks of what landed (the operator and API
  Deployments available, the API's Service named by the module's outputs, the DSN Secret written
  but absent from the state), then `tofu destroy`.
- `tofu apply` of modules/taskq placing the operator on the real node (tests/e2e/node.py) with the
  image imported there (`pull_policy = "Never"`, `node_selector`, `tolerations`): the operator pod
  Running and Ready, reconciling a TaskQueue against a PostgreSQL on the bridge address; then
  `tofu destroy`. Skipped without root, as the real node is.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import cluster, node
from tests.e2e.operator import condition, install_crds

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MIRROR_HOST = "registry.opentofu.org"
MODULE_PROVIDERS = {
    "taskq": ["helm", "kubernetes"],
    "aws": ["aws", "helm", "kubernetes", "random"],
    "gcp": ["google", "helm", "kubernetes", "random"],
    "azure": ["azurerm", "helm", "kubernetes", "random"],
}
EXAMPLES = {"local": "taskq", "aws": "aws", "gcp": "gcp", "azure": "azure"}
CLOUD = ["aws", "gcp", "azure"]


class Tofu:
    def __init__(self, binary: str, env: dict[str, str], mirror: Path) -> None:
        self.binary = binary
        self.env = env
        self.mirror = mirror

    def has_provider(self, name: str) -> bool:
        return (self.mirror / MIRROR_HOST / "hashicorp" / name).is_dir()

    def missing(self, module: str) -> list[str]:
        return [p for p in MODULE_PROVIDERS[module] if not self.has_provider(p)]

    def __call__(
        self, cwd: Path, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args],
            cwd=cwd,
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"tofu {' '.join(args)} in {cwd} failed ({proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="module")
def tofu() -> Tofu:
    # Builds tofu and the providers on first use (minutes when cold; see docs/terraform.md).
    proc = subprocess.run(
        [str(TERRAFORM / "mirror.sh")], check=True, capture_output=True, text=True, timeout=3600
    )
    exported = dict(
        line.removeprefix("export ").split("=", 1)
        for line in proc.stdout.splitlines()
        if line.startswith("export ")
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": exported["TF_CLI_CONFIG_FILE"],
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
    }
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    mirror = REPO / ".state" / "terraform" / "mirror"
    return Tofu(exported["TOFU"], env, mirror)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of terraform/ (tofu writes .terraform/, lock files and state into the working dir)."""
    dest = tmp_path_factory.mktemp("terraform") / "terraform"
    shutil.copytree(
        TERRAFORM,
        dest,
        ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"),
    )
    return dest


def test_tofu_is_the_pinned_build(tofu: Tofu) -> None:
    out = json.loads(tofu(REPO, "version", "-json").stdout)
    assert out["terraform_version"] == "1.12.6"
    cfg = Path(tofu.env["TF_CLI_CONFIG_FILE"]).read_text()
    assert "filesystem_mirror" in cfg
    assert "direct" not in cfg.replace("no direct {} block", "")


def test_fmt(tofu: Tofu) -> None:
    proc = tofu(REPO, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM), check=False)
    assert proc.returncode == 0, f"tofu fmt -check found unformatted files:\n{proc.stdout}"


@pytest.mark.parametrize("module", list(MODULE_PROVIDERS))
def test_readme_tables_list_every_input_and_output(module: str) -> None:
    mod = TERRAFORM / "modules" / module
    readme = (mod / "README.md").read_text()
    inputs = re.findall(r'^variable "([^"]+)"', (mod / "variables.tf").read_text(), re.M)
    outputs = re.findall(r'^output "([^"]+)"', (mod / "outputs.tf").read_text(), re.M)
    assert inputs and outputs
    for name in inputs + outputs:
        assert f"| `{name}` |" in readme, f"{module}/README.md lacks a table row for {name}"
    for path in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (mod / path).is_file()
    body = (mod / "variables.tf").read_text()
    assert body.count("validation {") >= 3


@pytest.mark.parametrize("module", list(MODULE_PROVIDERS))
def test_validate_and_plan_tests(tofu: Tofu, work: Path, module: str) -> None:
    missing = tofu.missing(module)
    if missing:
        pytest.skip(
            f"providers not available here: {', '.join(missing)} (too heavy to build; "
            f"fmt and the variable contract are checked instead, see docs/terraform.md)"
        )
    cwd = work / "modules" / module
    tofu(cwd, "init", "-backend=false")
    tofu(cwd, "validate")
    out = tofu(cwd, "test", timeout=600).stdout
    assert "0 failed" in out or "Success!" in out, out


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_examples_validate(tofu: Tofu, work: Path, example: str) -> None:
    missing = tofu.missing(EXAMPLES[example])
    if missing:
        pytest.skip(f"providers not available here: {', '.join(missing)}")
    cwd = work / "examples" / example
    tofu(cwd, "init", "-backend=false")
    tofu(cwd, "validate")


@pytest.mark.parametrize("module", CLOUD)
def test_variable_contract_without_providers(tofu: Tofu, tmp_path: Path, module: str) -> None:
    """The module's variables.tf alone (no resources, so no provider) against its contract tests."""
    src = TERRAFORM / "modules" / module
    shutil.copy(src / "variables.tf", tmp_path / "variables.tf")
    shutil.copytree(src / "tests" / "contract", tmp_path / "tests")
    tofu(tmp_path, "init", "-backend=false")
    out = tofu(tmp_path, "test", timeout=300).stdout
    assert "Success!" in out and "0 failed" in out, out


# --- on the local control plane ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kube() -> Iterator[Path]:
    with cluster.running() as kubeconfig:
        yield kubeconfig


def _get(kube: Path, ns: str, *what: str) -> Any:
    return json.loads(cluster.kubectl("-n", ns, "get", *what, "-o", "json", kubeconfig=kube).stdout)


def test_apply_and_destroy_on_the_local_cluster(tofu: Tofu, work: Path, kube: Path) -> None:
    ns = f"tf-{secrets.token_hex(3)}"
    cwd = work / "examples" / "local"
    dsn = f"postgresql://taskq:pw-{secrets.token_hex(8)}@127.0.0.1:5432/taskq"
    args = [
        f"-var=namespace={ns}",
        f"-var=release_name={ns}",
        f"-var=kubeconfig={kube}",
        f"-var=chart={REPO / 'charts' / 'taskq'}",
        f"-var=database_dsn={dsn}",
    ]
    tofu(cwd, "init", "-backend=false")
    applied = False
    try:
        tofu(cwd, "apply", "-auto-approve", *args, timeout=300)
        applied = True
        outputs = json.loads(tofu(cwd, "output", "-json").stdout)
        assert outputs["namespace"]["value"] == ns
        assert outputs["release_name"]["value"] == ns
        secret_name = outputs["database_secret_name"]["value"]
        assert secret_name == f"{ns}-database"

        # The operator Deployment is available (helm waited for it) and watches only ns.
        deployments = {d["metadata"]["name"]: d for d in _get(kube, ns, "deployments")["items"]}
        assert set(deployments) == {f"{ns}-taskq", f"{ns}-taskq-api"}
        deployment = deployments[f"{ns}-taskq"]
        assert deployment["status"].get("availableReplicas") == 1
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        watched = [v.get("value") for k, v in env.items() if "NAMESPACE" in k and "value" in v]
        assert ns in watched, env
        assert container["image"] == "taskq-operator:dev"
        # The default DSN comes from the Secret the module wrote, read by reference.
        refs = [
            v["valueFrom"]["secretKeyRef"]
            for v in env.values()
            if "valueFrom" in v and "secretKeyRef" in v["valueFrom"]
        ]
        assert {"name": secret_name, "key": "dsn"} in [
            {"name": r["name"], "key": r["key"]} for r in refs
        ]
        secret = _get(kube, ns, "secret", secret_name)
        assert base64.b64decode(secret["data"]["dsn"]).decode() == dsn
        # The API: two pods available, reading the same Secret, behind the Service the outputs
        # name, with a budget and an Ingress.
        api = deployments[f"{ns}-taskq-api"]
        assert api["status"].get("availableReplicas") == 2
        api_container = api["spec"]["template"]["spec"]["containers"][0]
        assert api_container["image"] == "taskq-api:dev"
        api_env = {e["name"]: e for e in api_container["env"]}
        assert api_env["TASKQ_DSN"]["valueFrom"]["secretKeyRef"] == {
            "name": secret_name,
            "key": "dsn",
        }
        service = f"{ns}-taskq-api"
        assert outputs["api_url"]["value"] == f"http://{service}.{ns}.svc:8000"
        assert outputs["api_grpc_address"]["value"] == f"{service}.{ns}.svc:9090"
        ports = {p["name"]: p["port"] for p in _get(kube, ns, "service", service)["spec"]["ports"]}
        assert ports == {"http": 8000, "grpc": 9090}
        assert _get(kube, ns, "poddisruptionbudget", service)["spec"]["maxUnavailable"] == 1
        rules = _get(kube, ns, "ingress", service)["spec"]["rules"]
        assert [r["host"] for r in rules] == ["taskq.local.test"]

        # Namespaced RBAC only in ns (watched namespaces = [ns]); the namespace is restricted.
        assert _get(kube, ns, "roles")["items"]
        namespace = json.loads(
            cluster.kubectl("get", "namespace", ns, "-o", "json", kubeconfig=kube).stdout
        )
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

        # Write-only: the DSN (and its password) is nowhere in the state.
        state = tofu(cwd, "state", "pull").stdout
        assert "pw-" not in state and dsn not in state
        secrets_in_state = [
            i["attributes"]
            for r in json.loads(state)["resources"]
            if r["type"] == "kubernetes_secret_v1"
            for i in r["instances"]
        ]
        assert len(secrets_in_state) == 1 and not secrets_in_state[0].get("data_wo")

        # A second plan is empty: the module converges.
        plan = tofu(cwd, "plan", "-detailed-exitcode", *args, check=False, timeout=300)
        assert plan.returncode == 0, plan.stdout + plan.stderr
    finally:
        destroyed = tofu(cwd, "destroy", "-auto-approve", *args, check=False, timeout=300)
        if destroyed.returncode != 0:  # leave nothing behind on the shared cluster
            cluster.kubectl("delete", "namespace", ns, "--wait=false", kubeconfig=kube, check=False)
        assert destroyed.returncode == 0 or not applied, destroyed.stdout + destroyed.stderr
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr

    gone = cluster.kubectl("get", "namespace", ns, "-o", "json", kubeconfig=kube, check=False)
    if gone.returncode == 0:  # deleting: nothing of the release may remain in it
        assert json.loads(gone.stdout)["status"]["phase"] == "Terminating"
    releases = cluster.kubectl(
        "-n", ns, "get", "secrets", "-l", "owner=helm", "-o", "name", kubeconfig=kube, check=False
    )
    assert not releases.stdout.strip()
    assert (
        cluster.kubectl(
            "get", "clusterrole", f"{ns}-taskq-discovery", kubeconfig=kube, check=False
        ).returncode
        != 0
    )


# A root module of the test's own: modules/taskq with the providers on the local kubeconfig.
REAL_NODE_ROOT = """
variable "kubeconfig" {
  type = string
}
variable "namespace" {
  type = string
}
variable "chart" {
  type = string
}
variable "database_dsn" {
  type      = string
  sensitive = true
  ephemeral = true
}

provider "kubernetes" {
  config_path = var.kubeconfig
}
provider "helm" {
  kubernetes = {
    config_path = var.kubeconfig
  }
}

module "taskq" {
  source = "../modules/taskq"

  namespace              = var.namespace
  release_name           = var.namespace
  chart                  = var.chart
  image                  = { repository = "taskq-operator", tag = "0.1.0", pull_policy = "Never" }
  node_selector          = { type = "real" }
  tolerations = [
    { key = "taskq.dev/real-node", operator = "Exists", effect = "NoSchedule" },
  ]
  crds_create            = false
  create_database_secret = true
  database_dsn           = var.database_dsn
  values                 = { operator = { statusInterval = 1 } }
  timeout                = 180
}
"""


@pytest.fixture(scope="module")
def bridge(kube: Path) -> Iterator[str]:
    """The real node, with the project's images imported; its bridge's host address."""
    reason = node.unavailable()
    if reason:
        pytest.skip(f"real node skipped: {reason}")
    with node.running():
        yield node.bridge_ip(kube)


def test_apply_places_a_running_operator_pod_on_the_real_node(
    tofu: Tofu, work: Path, kube: Path, bridge: str
) -> None:
    ns = f"tf-{secrets.token_hex(3)}"
    cwd = work / "real-node"
    cwd.mkdir(exist_ok=True)
    (cwd / "main.tf").write_text(REAL_NODE_ROOT)
    install_crds(kube)
    with node.pod_postgres(bridge) as pg:
        args = [
            f"-var=namespace={ns}",
            f"-var=kubeconfig={kube}",
            f"-var=chart={REPO / 'charts' / 'taskq'}",
            f"-var=database_dsn=postgresql://postgres@{bridge}:{pg.port}/postgres",
        ]
        tofu(cwd, "init", "-backend=false")
        started = time.monotonic()
        try:
            # helm (wait = true) returns once the operator's Deployment is available.
            tofu(cwd, "apply", "-auto-approve", *args, timeout=300)
            print(f"tofu apply -> operator pod Ready on the real node in "
                  f"{time.monotonic() - started:.1f}s")
            pods = _get(kube, ns, "pods", "-l", "app.kubernetes.io/component=operator")["items"]
            assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
            pod = pods[0]
            assert pod["spec"]["nodeName"] == node.NODE_NAME
            assert pod["status"]["phase"] == "Running"
            assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
            container = pod["spec"]["containers"][0]
            assert (container["image"], container["imagePullPolicy"]) == (
                node.OPERATOR_IMAGE, "Never"
            )
            status = pod["status"]["containerStatuses"][0]
            assert status["ready"] and "running" in status["state"], status

            # It reconciles: a TaskQueue in its namespace becomes Ready (the queue made in the
            # database behind the Secret the module wrote).
            cluster.kubectl("-n", ns, "apply", "-f", "-", kubeconfig=kube, input=json.dumps({
                "apiVersion": "taskq.dev/v1alpha1",
                "kind": "TaskQueue",
                "metadata": {"name": "terraformed"},
                "spec": {"deletionPolicy": "Retain"},
            }))
            deadline = time.monotonic() + 120
            while (condition(_get(kube, ns, "taskqueue", "terraformed")) or {}).get(
                "status"
            ) != "True":
                assert time.monotonic() < deadline, _get(kube, ns, "taskqueue", "terraformed")
                time.sleep(0.5)
        finally:
            # The queue first, while its operator still runs to release the finalizer.
            cluster.kubectl("-n", ns, "delete", "taskqueues", "--all", "--wait=true",
                            "--timeout=90s", kubeconfig=kube, check=False)
            destroyed = tofu(cwd, "destroy", "-auto-approve", *args, check=False, timeout=300)
            if destroyed.returncode != 0:  # leave nothing behind on the shared cluster
                cluster.kubectl("delete", "namespace", ns, "--wait=false", kubeconfig=kube,
                                check=False)
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not cluster.kubectl(
        "-n", ns, "get", "pods", "-o", "name", kubeconfig=kube, check=False
    ).stdout.strip()
