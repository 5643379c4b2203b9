"""Fixtures for e2e tests on the real local control plane.

- ``kubeconfig`` (session): path of the admin kubeconfig. Reuses a cluster that already answers at
  ``.state/cluster/kubeconfig`` (and leaves it running), otherwise starts one with
  ``cluster/up.sh`` and stops it again at the end of the session (``TASKQ_KEEP_CLUSTER=1``
  keeps it).
- ``namespace`` (function): a fresh namespace per test, deleted afterwards.
- ``api_client`` (session): a ``kubernetes.client.ApiClient`` for the admin kubeconfig.
- ``kubectl``: ``kubectl(*args, input=None, check=True)`` bound to the admin kubeconfig.
- ``real_node`` (session): the real node (tests/e2e/node.py) with the project's images; skips
  without root. ``bridge_ip`` (session): its bridge's host address, where pods reach this machine.
- ``pod_pg`` (module): a throwaway PostgreSQL on 127.0.0.1 and on the bridge address.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devenv.postgres import LocalPostgres
from kubernetes import config
from kubernetes.client import ApiClient

from . import cluster, node


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    with cluster.running() as kubeconfig:
        yield kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[ApiClient]:
    client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kubectl(kubeconfig: Path) -> Callable[..., Any]:
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> Any:
        return cluster.kubectl(
            *args, kubeconfig=kubeconfig, input=input, check=check, timeout=timeout
        )

    return run


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kubeconfig: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name, kubeconfig=kubeconfig)
    # Pods are admitted only once the serviceaccount controller has made "default" in it.
    deadline = time.monotonic() + 30
    while (
        cluster.kubectl(
            "-n", name, "get", "serviceaccount", "default", kubeconfig=kubeconfig, check=False
        ).returncode
        != 0
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in namespace {name} after 30s")
        time.sleep(0.2)
    try:
        yield name
    finally:
        cluster.kubectl(
            "delete",
            "namespace",
            name,
            "--wait=false",
            "--ignore-not-found",
            kubeconfig=kubeconfig,
            check=False,
        )


@pytest.fixture(scope="session")
def real_node(kubeconfig: Path) -> Iterator[None]:
    reason = node.unavailable()
    if reason:
        pytest.skip(f"real node skipped: {reason}")
    with node.running():
        yield


@pytest.fixture(scope="session")
def bridge_ip(real_node: None, kubeconfig: Path) -> str:
    return node.bridge_ip(kubeconfig)


@pytest.fixture(scope="module")
def pod_pg(bridge_ip: str) -> Iterator[LocalPostgres]:
    with node.pod_postgres(bridge_ip) as server:
        yield server
