"""`make demo`: the whole story on the local control plane, with real pods.

A real Kubernetes control plane starts locally with its real node (containerd and a kubelet,
cluster/node-up.sh; root only), the project's images are built (`make image-build`, plus the
example handlers on top of the worker image) and imported into the node, and PostgreSQL runs on
this machine, listening on the node's bridge address too so that pods reach it. `helm install`
puts the operator on the node as the pod the chart makes; the example TaskQueue, WorkerPool and
TaskSchedule are applied; a few thousand tasks are enqueued; the operator scales the worker
Deployment up, real worker pods drain the queue, and the operator scales it back to zero —
printed as it happens with `kubectl get taskqueues,workerpools` and `kubectl get pods`; a
TaskSchedule adds a task every minute. Then the front door: the API server starts, a key made
with `taskq keys create` submits a task with `curl` and a callback URL, a worker pod runs it (the
operator scales the pool up again from zero), `curl` reads its result back, and a local webhook
receiver gets the signed callback from the pod.

What still runs as a local process: the API server (on 127.0.0.1; the chart can run it as pods
too, `api.enabled`), the webhook receiver (on the bridge address, where the pods reach it) and
PostgreSQL. Nothing listens beyond 127.0.0.1 and the bridge the cluster scripts made.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from devenv.api import LocalApi
from devenv.postgres import LocalPostgres

from examples.queue_demo import start_postgres
from examples.webhook_receiver import WebhookReceiver
from taskq import TaskRequest
from taskq.client import connect

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state"
KUBECONFIG = STATE / "cluster" / "kubeconfig"
KUBECTL = STATE / "bin" / "kubectl"
NAMESPACE = "demo"
RELEASE = "taskq"
TASKS = 3000
NODE = "taskq-node"
WORKER_IMAGE = "taskq-worker:0.1.0"
OPERATOR_IMAGE = "taskq-operator:0.1.0"
# The example handlers (examples/thumbnails.py) on top of the worker image, as users build
# theirs (docs/image.md): a WorkerPool's pods take their code from the image alone.
DEMO_IMAGE = "taskq-demo-thumbnails:0.1.0"
# The real node is tainted and labelled (docs/control-plane.md): what lands on it says so.
PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"type": "real"},
    "tolerations": [{"key": "taskq.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
}
WORKERS = "app.kubernetes.io/instance=thumbnailers"
TASKQ_OBJECTS = "taskschedules,workerpools,taskqueues,taskqapikeys"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def kubectl(*args: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> str:  # fmt: skip
    result = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={KUBECONFIG}", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def make(target: str, log: Path, timeout: float) -> None:
    """`make target`, its output appended to `log` (docker builds are long); the tail on failure."""
    with log.open("a") as out:
        done = subprocess.run(
            ["make", "-s", "--no-print-directory", target], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"make {target} failed ({done.returncode}):\n{tail}")


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60,
                          check=False).returncode == 0  # fmt: skip


def build_demo_image() -> None:
    """DEMO_IMAGE: FROM the worker image, examples/thumbnails.py as /app/examples/. Nothing is
    fetched (--network none); the classic builder, as `make image-build` uses."""
    with tempfile.TemporaryDirectory() as context:
        package = Path(context) / "examples"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "thumbnails.py").write_text((REPO / "examples" / "thumbnails.py").read_text())
        (Path(context) / "Dockerfile").write_text(
            f"FROM {WORKER_IMAGE}\nCOPY examples/ /app/examples/\n"
        )
        subprocess.run(
            ["docker", "build", "--quiet", "--network", "none", "-t", DEMO_IMAGE, context],
            check=True, capture_output=True, timeout=600,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )


def images() -> None:
    """The images, built with Docker and imported into the node's containerd (no registry is
    reachable here). A Docker engine this demo started (`make docker-up`) is stopped again."""
    log = STATE / "demo-images.log"
    started = not docker_answers()
    if started:
        say("starting a Docker engine to build the images (make docker-up)")
        make("docker-up", log, 900)
    try:
        say(f"building the images: make image-build (first run: a debootstrap'ed base and the "
            f"builds, minutes; log: {log.relative_to(REPO)})")  # fmt: skip
        t0 = time.monotonic()
        make("image-build", log, 3600)
        build_demo_image()
        say(f"images {WORKER_IMAGE}, {OPERATOR_IMAGE}, {DEMO_IMAGE} built in "
            f"{time.monotonic() - t0:.0f}s")  # fmt: skip
        subprocess.run(
            [str(REPO / "cluster" / "node-images.sh"), WORKER_IMAGE, OPERATOR_IMAGE, DEMO_IMAGE],
            check=True, timeout=900,
        )
        say("images imported into the node's containerd (pods use them with pullPolicy Never)")
    finally:
        if started:  # the images are in containerd now
            make("docker-down", log, 120)


def bridge_ip() -> str:
    """The node's InternalIP: its bridge's host address, where pods reach this machine."""
    return kubectl("get", "node", NODE, "-o",
                   "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}").strip()


def start_pod_postgres(bridge: str) -> LocalPostgres:
    """The demo's PostgreSQL (.state/demo-postgres, kept across runs) on 127.0.0.1 and the
    bridge address, trusting the pod range: the bridge is this machine's own, only its pods
    are on it. Restarted so that it listens there (a previous run's may not)."""
    server = start_postgres()
    hba = server.datadir / "pg_hba.conf"
    pods = f"host all all {bridge.rsplit('.', 1)[0]}.0/24 trust"
    if pods not in hba.read_text():
        with hba.open("a", encoding="utf-8") as out:
            out.write(pods + "\n")
    server.stop()
    server.settings["listen_addresses"] = f"127.0.0.1,{bridge}"
    server.start()
    return server


def helm(*args: str, timeout: float = 600) -> None:
    binary = Path(subprocess.run(
        [str(REPO / "tools" / "build.sh"), "--path", "helm"],
        capture_output=True, text=True, check=True, timeout=3600,
    ).stdout.strip()) / "helm"  # fmt: skip
    home = STATE / "helm"
    subprocess.run(
        [str(binary), "--kubeconfig", str(KUBECONFIG), *args],
        check=True, timeout=timeout, stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
             "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")},
    )  # fmt: skip


def fresh_namespace() -> None:
    """A previous run's namespace goes first, release and all. Its taskq objects go before it,
    while that run's operator may still release their finalizers; what it has not released
    within a minute (its database may be gone) loses its finalizers, as they are being deleted
    (a running operator would add them back to a live object)."""
    if kubectl("get", "namespace", NAMESPACE, check=False).strip():
        say(f"removing the previous run's namespace {NAMESPACE}")
        kubectl("-n", NAMESPACE, "delete", TASKQ_OBJECTS, "--all", "--wait=true",
                "--timeout=60s", check=False, timeout=90)  # fmt: skip
        names = kubectl("-n", NAMESPACE, "get", TASKQ_OBJECTS, "-o", "name", check=False).split()
        for name in names:
            kubectl("-n", NAMESPACE, "patch", name, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False)  # fmt: skip
        kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", timeout=200)
    kubectl("create", "namespace", NAMESPACE)
    # The pods of the chart and of the WorkerPool meet the restricted Pod Security profile.
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")


def install_operator(dsn_for_pods: str) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        "wait", "--for=condition=Established", "crd/taskqueues.taskq.dev",
        "crd/workerpools.taskq.dev", "crd/taskschedules.taskq.dev", "crd/taskqapikeys.taskq.dev",
    )  # fmt: skip
    say("CRDs installed: TaskQueue (tq), WorkerPool (wp), TaskSchedule (ts), TaskqApiKey")
    kubectl("-n", NAMESPACE, "create", "secret", "generic", "taskq-db",
            f"--from-literal=dsn={dsn_for_pods}")  # fmt: skip
    values = {
        "image": {"repository": "taskq-operator", "tag": "0.1.0", "pullPolicy": "Never"},
        # The CRDs come from crds/ (above): the cluster may be shared, no release owns them.
        "crds": {"create": False},
        "operator": {"watchNamespaces": [NAMESPACE], "statusInterval": 1},
        "database": {"existingSecret": "taskq-db"},
        **PLACEMENT,
    }
    path = STATE / "helm" / "demo-values.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))
    say(f"$ helm install {RELEASE} charts/taskq --namespace {NAMESPACE} --values "
        f"{path.relative_to(REPO)} --wait  (operator image {OPERATOR_IMAGE}, pullPolicy Never, "
        f"on {NODE}; database.existingSecret taskq-db)")  # fmt: skip
    t0 = time.monotonic()
    helm("install", RELEASE, str(REPO / "charts" / "taskq"), "--namespace", NAMESPACE,
         "--values", str(path), "--wait", "--timeout", "5m")  # fmt: skip
    say(f"the operator pod is Ready ({time.monotonic() - t0:.1f}s):")
    pods()


def pods() -> None:
    for line in kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide").splitlines():
        if line.strip():
            print(f"    {line}", flush=True)


def show() -> None:
    for line in kubectl("-n", NAMESPACE, "get", "taskqueues,workerpools").splitlines():
        if line.strip():
            print(f"    {line}", flush=True)
    pods()


def worker_pods() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        kubectl("-n", NAMESPACE, "get", "pods", "-l", WORKERS, "-o", "json")
    )["items"]
    return found


def apply_examples(bridge: str) -> None:
    """examples/k8s as they are, but the WorkerPool's pods run the demo image (imported, never
    pulled) on the real node."""
    for name in ("taskqueue", "taskschedule", "taskqapikey"):
        kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "k8s" / f"{name}.yaml"))
    pool = yaml.safe_load((REPO / "examples" / "k8s" / "workerpool.yaml").read_text())
    pool["spec"].update(image=DEMO_IMAGE, imagePullPolicy="Never", pod=PLACEMENT)
    kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(pool))
    say(
        "applied examples/k8s: TaskQueue thumbnails, WorkerPool thumbnailers (min 0, max 5, "
        f"100 tasks per worker; image {DEMO_IMAGE}, pullPolicy Never, on {NODE}), TaskSchedule "
        "sweep (a task every minute), TaskqApiKey ci"
    )


async def enqueue(dsn: str) -> list[int]:
    async with await connect(dsn) as client:
        made = await client.enqueue_many(
            f"{NAMESPACE}/thumbnails",
            [TaskRequest("make_thumbnail", {"image": f"photo-{n}.png"}) for n in range(TASKS)],
        )
    return [m.id for m in made]


async def who_ran(dsn: str, ids: list[int]) -> dict[str, int]:
    """How many of the tasks each worker ran, by the pod UID that starts its worker id."""
    ran: dict[str, int] = {}
    async with await connect(dsn) as client:
        for task_id in ids:
            task = await client.get_task(task_id)
            if task.state != "succeeded":
                raise RuntimeError(f"task {task_id} ended {task.state}")
            uid = (task.worker_id or "?").split(":", 1)[0]
            ran[uid] = ran.get(uid, 0) + 1
    return ran


class PodWatch:
    """The worker pods seen Running, by UID, while the demo waits."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.first_running: float | None = None

    def reset(self) -> None:
        """Start timing again: the next pod seen Running sets `first_running`."""
        self.first_running = None

    def sync(self) -> None:
        for pod in worker_pods():
            if pod["status"].get("phase") == "Running":
                self.seen.setdefault(pod["metadata"]["uid"], pod["metadata"]["name"])
                if self.first_running is None:
                    self.first_running = time.monotonic()


def wait(predicate: Callable[[], bool], watch: PodWatch, limit: float,
         every: float = 2.0) -> None:  # fmt: skip
    deadline = time.monotonic() + limit
    shown = 0.0
    while time.monotonic() < deadline:
        watch.sync()
        if time.monotonic() - shown >= every:
            show()
            shown = time.monotonic()
        if predicate():
            return
        time.sleep(0.25)
    show()
    raise TimeoutError("the demo did not reach the expected state in time")


def replicas() -> int:
    found = kubectl(
        "-n", NAMESPACE, "get", "deployment", "thumbnailers", "-o", "jsonpath={.spec.replicas}",
        check=False,
    )  # fmt: skip
    return int(found) if found.strip().isdigit() else -1


def scaled_to_zero() -> bool:
    return replicas() == 0 and not worker_pods()


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
    )  # fmt: skip
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


def answer(process: subprocess.Popen[bytes], limit: float) -> dict[str, Any]:
    """The JSON curl printed; its problem document in the error when the request failed."""
    out, _ = process.communicate(timeout=limit)
    if process.returncode != 0:
        raise RuntimeError(f"curl exited {process.returncode}: {out.decode(errors='replace')}")
    body: dict[str, Any] = json.loads(out)
    return body


def sign_callbacks(receiver: WebhookReceiver, secret: str, bridge: str) -> None:
    """The queue's callback signer: a Secret with the signing key, and a spec.webhooks entry
    without url that signs the calls to its tasks' callback URLs, allowed to call the bridge
    address (the workers calling are pods)."""
    kubectl("-n", NAMESPACE, "create", "secret", "generic", "demo-hooks",
            f"--from-literal=signing={secret}")  # fmt: skip
    hook = {"name": "callbacks", "secretRef": {"name": "demo-hooks", "key": "signing"},
            "allowHosts": [bridge]}  # fmt: skip
    kubectl("-n", NAMESPACE, "patch", "taskqueue", "thumbnails", "--type", "merge",
            "-p", json.dumps({"spec": {"webhooks": [hook]}}))  # fmt: skip
    say(f"webhook receiver (a local process) on {receiver.url}, the bridge address, where pods "
        "reach it; TaskQueue thumbnails signs its tasks' callbacks (spec.webhooks: callbacks, "
        "Secret demo-hooks)")  # fmt: skip


def front_door(api: LocalApi, key: str, receiver: WebhookReceiver, watch: PodWatch) -> None:
    """curl submits a task with a callback URL and waits for its result (the operator scales
    the pool up from zero for it: a worker pod starts); then the receiver hears of it."""
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
    )  # fmt: skip
    say(f"$ {shown(submit, key)}")
    created = answer(subprocess.Popen(submit, stdout=subprocess.PIPE), 10)
    print(f"    {json.dumps({k: created[k] for k in ('id', 'queue', 'task_name', 'state')})}")
    done: dict[str, Any] = {"state": "queued"}
    wait_url = curl(key, f"{api.url}/v1/tasks/{created['id']}?wait=30s")
    deadline = time.monotonic() + 120
    # A pod starts for it: the long poll may end first, and then it asks again.
    while done["state"] not in ("succeeded", "failed", "dead", "canceled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the task submitted with curl is still {done['state']}")
        say(f"$ {shown(wait_url, key)}")
        done = answer(subprocess.Popen(wait_url, stdout=subprocess.PIPE), 40)
        print(f"    {json.dumps({k: done[k] for k in ('id', 'state', 'result', 'attempts')})}")
        watch.sync()
    if done["state"] != "succeeded":
        raise RuntimeError(f"the task submitted with curl ended {done['state']}")
    pods()
    # a worker pod delivers it (the Dispatcher turns the finish into a delivery task)
    if not receiver.wait(1, 60):
        raise RuntimeError("the task's callback did not arrive within 60 s")


def serve_front_door(dsn: str, key: str, bridge: str, watch: PodWatch) -> LocalApi:
    """The API server with the dashboard, a webhook receiver, and a task through them. The
    server keeps running after the demo, for the dashboard."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = WebhookReceiver(secret, say=lambda line: say(f"receiver: {line}"), host=bridge)
    receiver.start()
    sign_callbacks(receiver, secret, bridge)
    api = LocalApi({
        "TASKQ_DSN": dsn,
        "TASKQ_API_DASHBOARD": "true",
        "TASKQ_API_SESSION_SECRET": secrets.token_urlsafe(32),
    }, STATE / "demo-api.log")  # fmt: skip
    api.start()
    try:
        say(f"API server on {api.url}: a local process here, not a pod (the chart deploys it "
            "as pods with api.enabled; log: .state/demo-api.log)")  # fmt: skip
        front_door(api, key, receiver, watch)
    except BaseException:
        api.stop()
        raise
    finally:
        receiver.stop()
    say("the task went in and its result came back over HTTP, with a key, and its "
        "callback was delivered signed by a worker pod")  # fmt: skip
    return api


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("[demo] the demo runs real pods: the node (containerd, kubelet) needs root")
    started = time.monotonic()
    say("starting the local control plane and its real node (first run on a machine builds "
        "them: ~25 min)")  # fmt: skip
    subprocess.run([str(REPO / "cluster" / "node-up.sh")], check=True)
    images()
    bridge = bridge_ip()
    server = start_pod_postgres(bridge)
    pod_dsn = f"postgresql://postgres@{bridge}:{server.port}/postgres"
    say(f"PostgreSQL (a local process) on 127.0.0.1:{server.port} and {bridge}:{server.port} "
        "(the bridge: pods reach it there)")  # fmt: skip
    fresh_namespace()
    install_operator(pod_dsn)
    apply_examples(bridge)
    watch = PodWatch()
    # A previous run's tasks (the TaskSchedule's sweeps go on while no demo runs) may wake the
    # pool first: from zero pods, so that what follows is this run's.
    wait(scaled_to_zero, watch, 120)
    watch.reset()
    say(f"enqueueing {TASKS} tasks")
    enqueued_at = time.monotonic()
    ids = asyncio.run(enqueue(server.dsn))
    wait(lambda: replicas() > 0, watch, 60, every=0.5)
    say("the operator scaled the workers up; worker pods start on the node and drain the queue")
    wait(lambda: bool(watch.seen), watch, 120, every=1)
    assert watch.first_running is not None
    say(f"first worker pod Running {watch.first_running - enqueued_at:.1f}s after the enqueue")
    wait(scaled_to_zero, watch, 300)
    ran = asyncio.run(who_ran(server.dsn, ids))
    in_pods = {watch.seen.get(uid, f"(pod uid {uid})"): n for uid, n in ran.items()}
    say(f"drained in {time.monotonic() - enqueued_at:.0f}s and scaled back to zero after the "
        f"10 s stabilization window; the {TASKS} tasks ran in "
        f"{', '.join(f'{name}: {n}' for name, n in sorted(in_pods.items()))}")  # fmt: skip
    if not set(ran) <= set(watch.seen):
        raise RuntimeError(f"tasks ran outside the worker pods seen: {ran}, {watch.seen}")
    key = create_key(server.dsn)
    api = serve_front_door(server.dsn, key, bridge, watch)
    say("waiting for the TaskSchedule's next tick (it fires at every full minute)")
    wait(schedule_fired, watch, 75, every=15)
    for line in kubectl("-n", NAMESPACE, "get", "taskschedules").splitlines():
        print(f"    {line}", flush=True)
    say("the TaskSchedule enqueued its sweep (LAST: since its latest tick)")
    say(f"done in {time.monotonic() - started:.0f}s. The cluster, its node, the operator pod "
        f"and PostgreSQL keep running: KUBECONFIG={KUBECONFIG} TASKQ_DSN={server.dsn}; "
        "`make node-down` stops the node, `make cluster-down` everything")  # fmt: skip
    assert api.process is not None
    say(
        f"the dashboard: {api.url}/dashboard/ ; sign in with the key {key} "
        f"(operator of {NAMESPACE}, for a day). The API server keeps running: "
        f"`kill {api.process.pid}` stops it"
    )


if __name__ == "__main__":
    main()
