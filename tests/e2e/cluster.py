"""The local control plane as the e2e tests see it: find it, start it, stop it, run kubectl on it.

The control plane itself is started by ``cluster/up.sh`` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok on 127.0.0.1, binaries built from ``tools/``);
see docs/control-plane.md. State lives in ``.state/cluster/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("TASKQ_CLUSTER_DIR", REPO / ".state" / "cluster"))
KUBECONFIG = STATE / "kubeconfig"
UP = REPO / "cluster" / "up.sh"
DOWN = REPO / "cluster" / "down.sh"

# A cold start may first have to build the binaries (tools/build.sh): give it the time that takes.
UP_TIMEOUT = float(os.environ.get("TASKQ_CLUSTER_UP_TIMEOUT", "3600"))


def kubectl_binary() -> str:
    """The kubectl built by tools/ (same version as the server), else one on PATH."""
    ours = REPO / ".state" / "bin" / "kubectl"
    if ours.exists():
        return str(ours)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: run `make tools` (builds .state/bin/kubectl)")
    return found


def kubectl(
    *args: str,
    kubeconfig: Path | str = KUBECONFIG,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the local cluster; output is captured as text."""
    proc = subprocess.run(
        [kubectl_binary(), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc


def is_healthy(kubeconfig: Path = KUBECONFIG) -> bool:
    """True if the kubeconfig exists and its API server answers /readyz."""
    if not kubeconfig.exists():
        return False
    try:
        proc = kubectl(
            "get",
            "--raw=/readyz",
            "--request-timeout=3s",
            kubeconfig=kubeconfig,
            check=False,
            timeout=10,
        )
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "ok"


def up(attempts: int = 2) -> Path:
    """Start the control plane (idempotent) and return the admin kubeconfig path.

    A failed start is retried once after stopping what it started: seen once on a fresh clone
    right after another clone's cluster had stopped on the same ports, where kube-apiserver
    exited at once without a line of output and the next start worked."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(
            [str(UP)], check=False, capture_output=True, text=True, timeout=UP_TIMEOUT
        )
        if proc.returncode == 0:
            return KUBECONFIG
        if attempt < attempts:
            subprocess.run([str(DOWN)], check=False, capture_output=True, timeout=120)
            time.sleep(3)
    raise RuntimeError(f"cluster/up.sh failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def running() -> Iterator[Path]:
    """The cluster for a test session: reused if it already runs (and then left running),
    else started and stopped again at the end (TASKQ_KEEP_CLUSTER=1 keeps it)."""
    already_running = is_healthy()
    try:
        # Also when already running: up.sh is then a ~0.1 s check that restarts only a dead
        # component (say kwok), so a half-broken cluster does not fail tests in odd ways.
        up()
    except BaseException:
        if not already_running:
            down()  # whatever did start; the logs stay in .state/cluster/logs/
        raise
    try:
        yield KUBECONFIG
    finally:
        if not already_running and not os.environ.get("TASKQ_KEEP_CLUSTER"):
            down()


def down() -> None:
    """Stop every process cluster/up.sh started (state is kept for a warm start)."""
    subprocess.run([str(DOWN)], check=True, capture_output=True, text=True, timeout=120)
