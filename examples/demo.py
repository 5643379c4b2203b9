"""`make demo`: the whole story on the local control plane.

PostgreSQL and a real Kubernetes control plane (kwok nodes) start locally; the CRDs are
installed and the operator runs; the example TaskQueue and WorkerPool are applied; a few
thousand tasks are enqueued; the operator scales the worker Deployment up, the queue drains,
and the operator scales it back to zero — printed as it happens with
`kubectl get taskqueues,workerpools`; a TaskSchedule adds a task every minute. Then the front
door: the API server starts, a key made with `taskq keys create` submits a task with `curl`
and a callback URL, a worker runs it (the operator scales the pool up again if it has reached
zero), `curl` reads its result back, and a local webhook receiver gets the signed callback.

kwok's pods run no containers, so this script plays the kubelet for the worker pods: for each
Running pod it starts a local `taskq worker` with that pod's environment contract, and stops it
(SIGTERM, graceful) when the pod goes away. The operator and the API server run as local
processes too. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devenv.api import LocalApi
from devenv.operator import LocalOperator

from examples.queue_demo import start_postgres
from examples.webhook_receiver import WebhookReceiver
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


def schedule_fired() -> bool:
    last = kubectl(
        "-n", NAMESPACE, "get", "taskschedule", "sweep", "-o", "jsonpath={.status.lastTaskId}",
        check=False,
    )  # fmt: skip
    return bool(last.strip())


def create_key(dsn: str) -> str:
    """An operator key of the demo namespace, made as a user makes one: `taskq keys create`.
    Its name is new on each run (names stay unique, revoked ones too); it expires in a day."""
    name = f"demo-curl-{secrets.token_hex(3)}"
    made = subprocess.run(
        [sys.executable, "-m", "taskq.cli.main", "keys", "create", name, "--namespace",
         NAMESPACE, "--role", "operator", "--expires-in", "1d"],
        env={**os.environ, "TASKQ_DSN": dsn},
        capture_output=True, text=True, check=True, timeout=60,
    )
    say(f"taskq keys create {name} --namespace {NAMESPACE} --role operator --expires-in 1d")
    return made.stdout.strip()


def curl(key: str, *args: str) -> list[str]:
    """A curl command line with the key; an HTTP error fails it, its problem document shown."""
    return [
        "curl", "--silent", "--show-error", "--fail-with-body",
        "-H", f"Authorization: Bearer {key}", *args,
    ]


def shown(command: list[str], key: str) -> str:
    """The command as printed: the key as $KEY."""
    return shlex.join(command).replace(key, "$KEY")


def answer(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The JSON curl printed; its problem document in the error when the request failed."""
    out, _ = process.communicate(timeout=10)
    if process.returncode != 0:
        raise RuntimeError(f"curl exited {process.returncode}: {out.decode(errors='replace')}")
    body: dict[str, Any] = json.loads(out)
    return body


def sign_callbacks(receiver: WebhookReceiver, secret: str) -> None:
    """The queue's callback signer: a Secret with the signing key, and a spec.webhooks entry
    without url that signs the calls to its tasks' callback URLs, allowed to call loopback."""
    kubectl("-n", NAMESPACE, "delete", "secret", "demo-hooks", "--ignore-not-found")
    kubectl("-n", NAMESPACE, "create", "secret", "generic", "demo-hooks",
            f"--from-literal=signing={secret}")  # fmt: skip
    hook = {"name": "callbacks", "secretRef": {"name": "demo-hooks", "key": "signing"},
            "allowHosts": ["127.0.0.1"]}  # fmt: skip
    kubectl("-n", NAMESPACE, "patch", "taskqueue", "thumbnails", "--type", "merge",
            "-p", json.dumps({"spec": {"webhooks": [hook]}}))  # fmt: skip
    say(f"webhook receiver on {receiver.url}; TaskQueue thumbnails signs its tasks' callbacks "
        "(spec.webhooks: callbacks, Secret demo-hooks)")  # fmt: skip


def front_door(api: LocalApi, key: str, runner: PodRunner, receiver: WebhookReceiver) -> None:
    """curl submits a task with a callback URL and waits for its result; then the receiver
    hears of it. The pool may need scaling up for it, so this script goes on playing the
    kubelet while the waiting curl runs in the background."""
    task = {
        "task_name": "make_thumbnail",
        "payload": {"image": "curl.png"},
        "callback_url": f"{receiver.url}/thumbnails/curl.png",
    }
    submit = curl(
        key,
        "-H", "Content-Type: application/json",
        "-d", json.dumps(task),
        f"{api.url}/v1/queues/{NAMESPACE}/thumbnails/tasks",
    )
    say(f"$ {shown(submit, key)}")
    created = answer(subprocess.Popen(submit, stdout=subprocess.PIPE))
    print(f"    {json.dumps({k: created[k] for k in ('id', 'queue', 'task_name', 'state')})}")
    wait = curl(key, f"{api.url}/v1/tasks/{created['id']}?wait=30s")
    say(f"$ {shown(wait, key)}")
    waiting = subprocess.Popen(wait, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 40
    while waiting.poll() is None and time.monotonic() < deadline:
        runner.sync()
        time.sleep(0.25)
    done = answer(waiting)
    print(f"    {json.dumps({k: done[k] for k in ('id', 'state', 'result', 'attempts')})}")
    if done["state"] != "succeeded":
        raise RuntimeError(f"the task submitted with curl ended {done['state']}")
    # a worker delivers it (the Dispatcher turns the finish into a delivery task within ~1 s)
    deadline = time.monotonic() + 30
    while not receiver.wait(1, 0.25):
        if time.monotonic() > deadline:
            raise RuntimeError("the task's callback did not arrive within 30 s")
        runner.sync()


def serve_front_door(dsn: str, key: str, runner: PodRunner) -> LocalApi:
    """The API server with the dashboard, a webhook receiver, and a task through them. The
    server keeps running after the demo, for the dashboard."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = WebhookReceiver(secret, say=lambda line: say(f"receiver: {line}"))
    receiver.start()
    sign_callbacks(receiver, secret)
    api = LocalApi({
        "TASKQ_DSN": dsn,
        "TASKQ_API_DASHBOARD": "true",
        "TASKQ_API_SESSION_SECRET": secrets.token_urlsafe(32),
    }, STATE / "demo-api.log")
    api.start()
    try:
        say(f"API server on {api.url} (log: .state/demo-api.log)")
        front_door(api, key, runner, receiver)
    except BaseException:
        api.stop()
        raise
    finally:
        receiver.stop()
    say("the task went in and its result came back over HTTP, with a key, and its "
        "callback was delivered signed")  # fmt: skip
    return api


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
        "crd/taskschedules.taskq.dev",
    )
    say("CRDs installed: TaskQueue (tq), WorkerPool (wp), TaskSchedule (ts)")
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
        kubectl(
            "-n", NAMESPACE, "delete", "taskschedules,workerpools,taskqueues", "--all",
            "--wait=true",
        )  # fmt: skip
        kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "k8s"))
        say(
            "applied examples/k8s: TaskQueue thumbnails, WorkerPool thumbnailers (min 0, max 5, "
            "100 tasks per worker), TaskSchedule sweep (a task every minute)"
        )
        wait(lambda: replicas() == 0, runner, 60)
        say(f"enqueueing {TASKS} tasks")
        asyncio.run(enqueue(server.dsn))
        wait(lambda: replicas() > 0, runner, 30, every=0.5)
        say("the operator scaled the workers up; local workers drain the queue")
        wait(lambda: replicas() == 0, runner, 180)
        show()
        say("drained, and scaled back to zero after the 10 s stabilization window")
        key = create_key(server.dsn)
        api = serve_front_door(server.dsn, key, runner)
        say("waiting for the TaskSchedule's next tick (it fires at every full minute)")
        wait(schedule_fired, runner, 75, every=15)
        for line in kubectl("-n", NAMESPACE, "get", "taskschedules").splitlines():
            print(f"    {line}", flush=True)
        say("the TaskSchedule enqueued its sweep (LAST: since its latest tick)")
    finally:
        runner.stop()
        operator.stop()
    say(
        f"done. The cluster and PostgreSQL keep running: KUBECONFIG={KUBECONFIG} "
        f"TASKQ_DSN={server.dsn}; `make cluster-down` stops the cluster"
    )
    assert api.process is not None
    say(
        f"the dashboard: {api.url}/dashboard/ ; sign in with the key {key} "
        f"(operator of {NAMESPACE}, for a day). The API server keeps running: "
        f"`kill {api.process.pid}` stops it"
    )


if __name__ == "__main__":
    main()
