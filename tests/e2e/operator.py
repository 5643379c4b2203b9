"""Helpers for operator e2e tests: install the CRDs, run `python -m taskq_operator` against the
local control plane, and apply and read resources with kubectl."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from devenv.operator import REPO, LocalOperator
from devenv.postgres import free_port

from . import cluster

CRDS = REPO / "crds"
EXAMPLES = REPO / "examples" / "k8s"


def install_crds(kubeconfig: Path) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS), kubeconfig=kubeconfig)
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/taskqueues.taskq.dev",
        "crd/workerpools.taskq.dev",
        "crd/taskqapikeys.taskq.dev",
        "crd/taskschedules.taskq.dev",
        kubeconfig=kubeconfig,
    )


class Operator(LocalOperator):
    """The operator of the e2e tests: it watches only their namespaces (another operator, a
    benchmark or the demo, may share the cluster) and serves /metrics for them to read."""

    def __init__(
        self, kubeconfig: Path, default_dsn: str, log_path: Path, **settings: str
    ) -> None:
        """`settings`: more TASKQ_OPERATOR_* values (without the prefix)."""
        self.metrics_port = free_port()
        super().__init__(
            kubeconfig,
            default_dsn,
            log_path,
            namespaces="e2e-*",
            settings={
                "status_interval": "1",
                "maintenance_interval": "2",
                "key_interval": "1",
                "metrics_port": str(self.metrics_port),
                **settings,
            },
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as answer:
            text: str = answer.read().decode()
            return text


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


def apply(kubeconfig: Path, namespace: str, manifest: dict[str, Any] | str) -> None:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=text, kubeconfig=kubeconfig)


def assert_refused(kubeconfig: Path, namespace: str, manifest: dict[str, Any], field: str) -> None:
    """The API server refuses the manifest with a message naming `field`."""
    result = cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        kubeconfig=kubeconfig,
        input=yaml.safe_dump(manifest),
        check=False,
    )
    assert result.returncode != 0, manifest["spec"]
    assert field in result.stderr, (manifest["spec"], result.stderr)


def get(kubeconfig: Path, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl(
        "-n", namespace, "get", kind, name, "-o", "json", kubeconfig=kubeconfig, check=False
    )
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def wait_for(probe: Callable[[], Any], what: str, limit: float = 30.0) -> Any:
    deadline = time.monotonic() + limit
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit}s waiting for {what}; last: {value!r}")


def condition(obj: dict[str, Any] | None, type_: str = "Ready") -> dict[str, Any] | None:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == type_:
            found: dict[str, Any] = entry
            return found
    return None


def events(kubeconfig: Path, namespace: str, kind: str, name: str) -> list[tuple[str, str, str]]:
    """The Events on the object `kind`/`name`: (type, reason, message)."""
    listed = cluster.kubectl(
        "-n", namespace, "get", "events", "-o", "json", kubeconfig=kubeconfig
    ).stdout
    return [
        (e["type"], e["reason"], e["message"])
        for e in json.loads(listed)["items"]
        if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
    ]


def deployment_replicas(kubeconfig: Path, namespace: str, name: str) -> int | None:
    deployment = get(kubeconfig, namespace, "deployment", name)
    return None if deployment is None else int(deployment["spec"].get("replicas", 0))
