"""Helpers for operator e2e tests: install the CRDs, run `python -m taskq_operator` against the
local control plane, and read resources with kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv.postgres import free_port

from . import cluster

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def install_crds(kubeconfig: Path) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS), kubeconfig=kubeconfig)
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/taskqueues.taskq.dev",
        "crd/workerpools.taskq.dev",
        kubeconfig=kubeconfig,
    )


class Operator:
    """The operator as a process, configured only through its environment."""

    def __init__(self, kubeconfig: Path, default_dsn: str, log_path: Path) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(REPO),
            "TASKQ_OPERATOR_DEFAULT_DSN": default_dsn,
            # only the tests' namespaces: another operator (a benchmark, the demo) may share
            # the cluster
            "TASKQ_OPERATOR_NAMESPACES": "e2e-*",
            "TASKQ_OPERATOR_STATUS_INTERVAL": "1",
            "TASKQ_OPERATOR_MAINTENANCE_INTERVAL": "2",
            "TASKQ_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "TASKQ_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskq_operator"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("the operator did not become live in 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as answer:
            text: str = answer.read().decode()
            return text


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


def deployment_replicas(kubeconfig: Path, namespace: str, name: str) -> int | None:
    deployment = get(kubeconfig, namespace, "deployment", name)
    return None if deployment is None else int(deployment["spec"].get("replicas", 0))
