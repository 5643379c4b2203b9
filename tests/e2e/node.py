"""The local cluster's real node as the e2e tests see it: containerd and a kubelet next to the kwok
nodes (``cluster/node-up.sh``, docs/control-plane.md), with the project's images imported.

The node is tainted ``taskq.dev/real-node=true:NoSchedule`` and labelled ``type=real``: a pod that
is meant for it tolerates the taint and selects the label (``POD_PLACEMENT``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devenv.postgres import LocalPostgres

from . import cluster
from .cluster import REPO, STATE

NODE_UP = REPO / "cluster" / "node-up.sh"
NODE_DOWN = REPO / "cluster" / "node-down.sh"
NODE_IMAGES = REPO / "cluster" / "node-images.sh"
NODE_NAME = "taskq-node"
WORKER_IMAGE = "taskq-worker:0.1.0"
OPERATOR_IMAGE = "taskq-operator:0.1.0"
# The worker image plus a handler module, built as users build theirs (docs/image.md): the pods
# of a WorkerPool take their code from the image alone.
HANDLER_IMAGE = "taskq-e2e-handlers:0.1.0"
HANDLER_APP = "e2ehandlers.tasks"
HANDLERS = '''\
import asyncio
import os
import socket

import taskq


@taskq.task("whoami")
async def whoami(ctx: taskq.TaskContext) -> dict[str, object]:
    await asyncio.sleep(float(ctx.payload.get("sleep", 0)))
    return {"host": socket.gethostname(), "uid": os.getuid(), "n": ctx.payload["n"]}
'''
# What a pod spec needs to land on the real node (and only there).
POD_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"type": "real"},
    "tolerations": [
        {"key": "taskq.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ],
}
# A cold start may first build the node's tools (kubelet, containerd, runc, ...): minutes.
NODE_UP_TIMEOUT = float(os.environ.get("TASKQ_CLUSTER_UP_TIMEOUT", "3600"))
IMAGE_BUILD_TIMEOUT = 2400  # a cold debootstrap + the builds on 2 cores (tests/packaging)


def _run(*argv: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


def unavailable() -> str | None:
    """Why this machine cannot run the real node, or None. Only what truly cannot be had: the
    kubelet, containerd and runc need root (cgroups, mounts, network namespaces, a bridge)."""
    if os.geteuid() != 0:
        return "the real node needs root (cgroups, mounts, network namespaces, a bridge)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup"
    return None


def kubelet_running() -> bool:
    pid_file = STATE / "pids" / "kubelet.pid"
    try:
        pid = pid_file.read_text().strip()
        return b"kubelet" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _docker_answers() -> bool:
    return shutil.which("docker") is not None and _run("docker", "info", timeout=60).returncode == 0


def _build_handler_image() -> None:
    """HANDLER_IMAGE: FROM the worker image, HANDLERS as /app/e2ehandlers/tasks.py. Nothing is
    fetched (--network none); the classic builder, as ``make image-build`` uses."""
    with tempfile.TemporaryDirectory() as context:
        package = Path(context) / "e2ehandlers"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "tasks.py").write_text(HANDLERS)
        (Path(context) / "Dockerfile").write_text(
            f"FROM {WORKER_IMAGE}\nCOPY e2ehandlers/ /app/e2ehandlers/\n"
        )
        built = subprocess.run(
            ["docker", "build", "--network", "none", "-t", HANDLER_IMAGE, context],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    assert built.returncode == 0, f"docker build of {HANDLER_IMAGE} failed:\n{_tail(built)}"


def import_images() -> None:
    """Build the project's images if needed (``make image-build``: a Docker engine, started by
    ``make docker-up`` when none answers, and stopped again afterwards) and HANDLER_IMAGE, and
    import the worker, handler and operator images into the node's containerd."""
    started = False
    if not _docker_answers():
        started = True
        up = _run("make", "-s", "--no-print-directory", "docker-up", timeout=600)
        if up.returncode != 0 or not _docker_answers():
            _run("make", "-s", "--no-print-directory", "docker-down", timeout=120)
            # As tests/packaging does: without an engine there is no image to run.
            said = [line for line in (up.stdout + up.stderr).splitlines()
                    if line.startswith("docker-up:")]
            pytest.skip(
                "real node skipped: no Docker engine could be started to build the worker "
                f"image: {said[-1] if said else _tail(up, 3)}"
            )
    try:
        build = _run(
            "make", "-s", "--no-print-directory", "image-build", timeout=IMAGE_BUILD_TIMEOUT
        )
        assert build.returncode == 0, f"make image-build failed:\n{_tail(build)}"
        _build_handler_image()
        imported = _run(NODE_IMAGES, WORKER_IMAGE, HANDLER_IMAGE, OPERATOR_IMAGE, timeout=900)
        assert imported.returncode == 0, f"cluster/node-images.sh failed:\n{_tail(imported)}"
    finally:
        if started:  # the images are in containerd now
            _run("make", "-s", "--no-print-directory", "docker-down", timeout=120)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """The real node for a test session, with the worker image in it: reused if its kubelet
    already runs (and then left running), else started and removed again at the end
    (TASKQ_KEEP_CLUSTER=1 keeps it). The control plane must be up (the ``kubeconfig`` fixture)."""
    already_running = kubelet_running()
    try:
        up = _run(NODE_UP, timeout=NODE_UP_TIMEOUT)
        assert up.returncode == 0, f"cluster/node-up.sh failed:\n{_tail(up)}"
        import_images()
    except BaseException:
        if not already_running:
            _run(NODE_DOWN, timeout=300)
        raise
    try:
        yield
    finally:
        if not already_running and not os.environ.get("TASKQ_KEEP_CLUSTER"):
            down = _run(NODE_DOWN, timeout=300)
            assert down.returncode == 0, f"cluster/node-down.sh failed:\n{_tail(down)}"


def bridge_ip(kubeconfig: Path) -> str:
    """The node's InternalIP: its bridge's host address, where pods reach this machine."""
    out = cluster.kubectl(
        "get", "node", NODE_NAME, "-o",
        "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}",
        kubeconfig=kubeconfig,
    ).stdout.strip()
    return str(ipaddress.ip_address(out))


@contextlib.contextmanager
def pod_postgres(bridge: str) -> Iterator[LocalPostgres]:
    """A throwaway PostgreSQL on 127.0.0.1 and on the bridge's host address, trusting the pod
    range (the bridge is this machine's own, reachable from its pods only)."""
    server = LocalPostgres.temporary(settings={"listen_addresses": f"127.0.0.1,{bridge}"})
    server.init()
    pods = ipaddress.ip_network(f"{bridge}/24", strict=False)
    with (server.datadir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
        hba.write(f"host all all {pods} trust\n")
    server.start()
    try:
        yield server
    finally:
        server.destroy()
