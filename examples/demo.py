"""`make demo`: the whole story on the local control plane.

PostgreSQL and a real Kubernetes control plane (kwok nodes) start locally; the CRDs are
installed and the operator runs; the example TaskQueue and WorkerPool are applied; a few
thousand tasks are enqueued; the operator scales the worker Deployment up, the queue drains,
and the operator scales it back to zero — printed as it happens with
`kubectl get taskqueues,workerpools`.

kwok's pods run no containers, so this script plays the kubelet for the worker pods: for each
Running pod it starts a local `taskq worker` with that pod's environment contract, and stops it
(SIGTERM, graceful) when the pod goes away. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devenv.operator import LocalOperator

from examples.queue_demo import start_postgres
from taskq import TaskRequest
from taskq.client import connect

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state"
KUBECONFIG = STATE / "cluster" / "kubeconfig"
KUBECTL = STATE / "bin" / "kubectl"
NAMESPACE = "demo"
TASKS = 3000


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def kubectl(*args: str, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={KUBECONFIG}", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class PodRunner:
    """One local `taskq worker` per Running worker pod, with the pod's environment."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def sync(self) -> None:
        pods = json.loads(
            kubectl(
                "-n",
                NAMESPACE,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/instance=thumbnailers",
                "-o",
                "json",
            )
        )
        running = {
            p["metadata"]["name"]: p
            for p in pods["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        }
        for name, pod in running.items():
            if name not in self.processes:
                self.processes[name] = self._start(pod)
        for name in list(self.processes):
            if name not in running:
                self.processes.pop(name).send_signal(signal.SIGTERM)

    def _start(self, pod: dict[str, Any]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for entry in pod["spec"]["containers"][0]["env"]:
            if "value" in entry:
                env[entry["name"]] = entry["value"]
        # the DSN comes from the pod's Secret; metrics stay off and on loopback
        env.update(
            TASKQ_DSN=self.dsn,
            TASKQ_METRICS_PORT="0",
            TASKQ_METRICS_HOST="127.0.0.1",
            TASKQ_LOG_LEVEL="ERROR",
            TASKQ_POD_UID=pod["metadata"]["uid"],
        )
        return subprocess.Popen(
            [sys.executable, "-m", "taskq.cli.main", "worker"], env=env, cwd=REPO
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            process.wait(30)


def show() -> None:
    for line in kubectl("-n", NAMESPACE, "get", "taskqueues,workerpools").splitlines():
        if line.strip():
            print(f"    {line}", flush=True)


async def enqueue(dsn: str) -> None:
    async with await connect(dsn) as client:
        await client.enqueue_many(
            f"{NAMESPACE}/thumbnails",
            [TaskRequest("make_thumbnail", {"image": f"photo-{n}.png"}) for n in range(TASKS)],
        )


def wait(predicate: Any, runner: PodRunner, limit: float, every: float = 2.0) -> None:
    deadline = time.monotonic() + limit
    shown = 0.0
    while time.monotonic() < deadline:
        runner.sync()
        if time.monotonic() - shown >= every:
            show()
            shown = time.monotonic()
        if predicate():
            return
        time.sleep(0.25)
    raise TimeoutError("the demo did not reach the expected state in time")


def replicas() -> int:
    found = kubectl(
        "-n",
        NAMESPACE,
        "get",
        "deployment",
        "thumbnailers",
        "-o",
        "jsonpath={.spec.replicas}",
        check=False,
    )
    return int(found) if found.strip().isdigit() else -1


def main() -> None:
    say("starting the local control plane (first run on a machine builds it: ~13 min)")
    subprocess.run([str(REPO / "cluster" / "up.sh")], check=True)
    server = start_postgres()
    say(f"PostgreSQL on 127.0.0.1:{server.port}")
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/taskqueues.taskq.dev",
        "crd/workerpools.taskq.dev",
    )
    say("CRDs installed: TaskQueue (tq), WorkerPool (wp)")
    kubectl("create", "namespace", NAMESPACE, check=False)
    operator = LocalOperator(
        KUBECONFIG,
        server.dsn,
        STATE / "demo-operator.log",
        namespaces=NAMESPACE,  # only the demo's: the cluster may be shared
        settings={"status_interval": "1"},
    )
    operator.start()
    runner = PodRunner(server.dsn)
    try:
        say("operator running (log: .state/demo-operator.log)")
        # a previous run's resources go first; their finalizers are the running operator's
        kubectl("-n", NAMESPACE, "delete", "workerpools,taskqueues", "--all", "--wait=true")
        kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "k8s"))
        say(
            "applied examples/k8s: TaskQueue thumbnails, WorkerPool thumbnailers (min 0, max 5, "
            "100 tasks per worker)"
        )
        wait(lambda: replicas() == 0, runner, 60)
        say(f"enqueueing {TASKS} tasks")
        asyncio.run(enqueue(server.dsn))
        wait(lambda: replicas() > 0, runner, 30, every=0.5)
        say("the operator scaled the workers up; local workers drain the queue")
        wait(lambda: replicas() == 0, runner, 180)
        show()
        say("drained, and scaled back to zero after the 10 s stabilization window")
    finally:
        runner.stop()
        operator.stop()
    say(
        f"done. The cluster and PostgreSQL keep running: KUBECONFIG={KUBECONFIG} "
        f"TASKQ_DSN={server.dsn}; `make cluster-down` stops the cluster"
    )


if __name__ == "__main__":
    main()
