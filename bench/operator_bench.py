"""Operator benchmark on the local control plane: prints one JSON object.

    make bench-operator
    TASKQ_OPBENCH_MANY=400 TASKQ_OPBENCH_NAMESPACES=8 make bench-operator

Starts its own PostgreSQL (not durable: fsync off), the local control plane (cluster/up.sh,
idempotent; left running), installs the CRDs and runs `python -m taskq_operator` as a
subprocess (status interval 1 s, watching only the benchmark's namespaces). Phases, each
in fresh namespaces deleted at the end:
  reconcile_ready   one TaskQueue created at a time; create call -> status Ready=True
  scale_reaction    a WorkerPool (minReplicas 0) idle at 0 replicas on an empty queue, then a
                    burst enqueued; enqueue_many returning -> Deployment spec.replicas > 0
  reconcile_200     MANY TaskQueues + MANY WorkerPools (one per queue) applied at once, one
                    `kubectl apply --server-side` per namespace, run concurrently -> every
                    TaskQueue Ready and every pool's Deployment created; and the operator's
                    CPU time (/proc/<pid>/stat utime+stime) over that phase
Observation is by watch (kubernetes client, one cluster-wide watch per kind, in threads):
each event is timestamped on arrival, so no polling interval is added to the figures.

Environment: TASKQ_OPBENCH_READY_SAMPLES (5), TASKQ_OPBENCH_SCALE_TRIALS (5),
TASKQ_OPBENCH_BURST (1000), TASKQ_OPBENCH_MANY (200), TASKQ_OPBENCH_NAMESPACES (4),
TASKQ_OPBENCH_TIMEOUT (per wait, 180 s), TASKQ_OPBENCH_PROFILE=FILE (run the operator under
cProfile, stats written to FILE when it stops), TASKQ_OPBENCH_LOG=FILE (keep the operator's
log there; by default it is deleted unless the benchmark fails).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv.operator import LocalOperator
from devenv.postgres import LocalPostgres

from taskq.client import connect
from taskq.models import TaskRequest

REPO = Path(__file__).resolve().parent.parent
READY_SAMPLES = int(os.environ.get("TASKQ_OPBENCH_READY_SAMPLES", "5"))
SCALE_TRIALS = int(os.environ.get("TASKQ_OPBENCH_SCALE_TRIALS", "5"))
BURST = int(os.environ.get("TASKQ_OPBENCH_BURST", "1000"))
MANY = int(os.environ.get("TASKQ_OPBENCH_MANY", "200"))
NAMESPACES = int(os.environ.get("TASKQ_OPBENCH_NAMESPACES", "4"))
TIMEOUT = float(os.environ.get("TASKQ_OPBENCH_TIMEOUT", "180"))
PROFILE = os.environ.get("TASKQ_OPBENCH_PROFILE")
LOG = os.environ.get("TASKQ_OPBENCH_LOG")

STATUS_INTERVAL = 1.0
MAINTENANCE_INTERVAL = 5.0
GROUP, VERSION = "taskq.dev", "v1alpha1"
KUBECONFIG = Path(os.environ.get("TASKQ_CLUSTER_DIR", REPO / ".state" / "cluster")) / "kubeconfig"
KUBECTL = REPO / ".state" / "bin" / "kubectl"
Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]


def log(message: str) -> None:
    print(f"operator_bench: {message}", file=sys.stderr, flush=True)


def kubectl(*args: str, input: str | None = None, timeout: float = 120) -> str:
    binary = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl") or "kubectl"
    proc = subprocess.run(
        [binary, f"--kubeconfig={KUBECONFIG}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def wait_until(probe: Callable[[], bool], what: str, limit: float = TIMEOUT) -> None:
    deadline = time.monotonic() + limit
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit:.0f}s waiting for {what}")
        time.sleep(0.05)


def api_client() -> Any:
    return k8s_config.new_client_from_config(config_file=str(KUBECONFIG))  # type: ignore[no-untyped-call]


def ready(obj: Obj) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def scaled_up(obj: Obj) -> bool:
    return int((obj.get("spec") or {}).get("replicas") or 0) > 0


class Watcher:
    """A cluster-wide watch of one kind in a thread. For every object of the benchmark's
    namespaces it keeps the latest body, when it was first seen, and when `predicate` first
    held (time.monotonic() at the event's arrival)."""

    def __init__(
        self, name: str, lister: Callable[..., Any], predicate: Callable[[Obj], bool]
    ) -> None:
        self.name = name
        self.lister = lister
        self.predicate = predicate
        self.namespaces: set[str] = set()
        self.latest: dict[Key, Obj] = {}
        self.seen: dict[Key, float] = {}
        self.matched: dict[Key, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.synced = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.synced.wait(30):
            raise TimeoutError(f"the {self.name} watch did not start in 30s")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)

    def _record(self, obj: Obj, at: float) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self.lock:
            if key[0] not in self.namespaces:
                return
            self.latest[key] = obj
            self.seen.setdefault(key, at)
            if key not in self.matched and self.predicate(obj):
                self.matched[key] = at

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                listed = self.lister(_preload_content=False, _request_timeout=30)
                body = json.loads(listed.data)
                now = time.monotonic()
                for item in body.get("items") or []:
                    self._record(item, now)
                version = body["metadata"]["resourceVersion"]
                self.synced.set()
                while not self.stop.is_set():
                    stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
                        self.lister,
                        resource_version=version,
                        timeout_seconds=2,  # re-checks self.stop this often
                        allow_watch_bookmarks=True,
                    )
                    try:
                        for event in stream:
                            now = time.monotonic()
                            obj = event["raw_object"]
                            version = obj["metadata"]["resourceVersion"]
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._record(obj, now)
                    except ApiException as error:
                        if error.status == 410:  # too old: list again
                            break
                        raise
        except BaseException as error:  # surfaced by the phase waiting on this watch
            self.error = error
            self.synced.set()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the {self.name} watch failed: {self.error!r}")

    def wait_matched(self, keys: list[Key], what: str, limit: float = TIMEOUT) -> float:
        """Block until every key matched; returns the latest match time."""

        def done() -> bool:
            self.check()
            with self.lock:
                return all(k in self.matched for k in keys)

        wait_until(done, what, limit)
        with self.lock:
            return max(self.matched[k] for k in keys)

    def wait_seen(self, keys: list[Key], what: str, limit: float = TIMEOUT) -> float:
        def done() -> bool:
            self.check()
            with self.lock:
                return all(k in self.seen for k in keys)

        wait_until(done, what, limit)
        with self.lock:
            return max(self.seen[k] for k in keys)


def taskqueue(name: str) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {"deletionPolicy": "Retain"},
    }


def workerpool(name: str, queue: str, max_replicas: int) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "queues": [queue],
            "image": "taskq-worker:dev",
            "app": "examples.thumbnails",
            "concurrency": 20,
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": max_replicas,
                "targetBacklogPerReplica": 100,
            },
        },
    }


class Bench:
    def __init__(self, dsn: str, operator: LocalOperator, run_id: str) -> None:
        self.dsn = dsn
        self.operator = operator
        api = api_client()
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.run_id = run_id
        self.namespaces: list[str] = []
        self.queues = Watcher(
            "taskqueues",
            lambda **kw: self.custom.list_cluster_custom_object(GROUP, VERSION, "taskqueues", **kw),
            ready,
        )
        self.deployments = Watcher(
            "deployments", self.apps.list_deployment_for_all_namespaces, scaled_up
        )

    @contextmanager
    def watching(self) -> Iterator[None]:
        self.queues.start()
        self.deployments.start()
        try:
            yield
        finally:
            self.queues.close()
            self.deployments.close()

    def namespace(self, purpose: str) -> str:
        name = f"opbench-{self.run_id}-{purpose}"
        for watcher in (self.queues, self.deployments):
            with watcher.lock:
                watcher.namespaces.add(name)
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        self.namespaces.append(name)
        return name

    def create(self, namespace: str, obj: Obj) -> None:
        plural = {"TaskQueue": "taskqueues", "WorkerPool": "workerpools"}[obj["kind"]]
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)

    def reconcile_ready(self) -> list[float]:
        namespace = self.namespace("ready")
        samples = []
        for n in range(READY_SAMPLES):
            key = (namespace, f"q{n}")
            started = time.monotonic()
            self.create(namespace, taskqueue(key[1]))
            at = self.queues.wait_matched([key], f"TaskQueue {key} Ready", limit=60)
            samples.append(at - started)
        return samples

    def scale_reaction(self) -> list[float]:
        namespace = self.namespace("scale")
        samples = []
        for n in range(SCALE_TRIALS):
            queue, pool = f"q{n}", f"p{n}"
            self.create(namespace, taskqueue(queue))
            self.queues.wait_matched([(namespace, queue)], f"TaskQueue {queue} Ready", limit=60)
            self.create(namespace, workerpool(pool, queue, max_replicas=5))
            self.deployments.wait_seen([(namespace, pool)], f"Deployment {pool}", limit=60)
            with self.deployments.lock:
                if scaled_up(self.deployments.latest[(namespace, pool)]):
                    raise RuntimeError(f"Deployment {pool} above 0 replicas before the burst")
            # Idle: past the pool's first pass and its minimum gap between passes, so the
            # burst is noticed by the wake-up (NOTIFY), not by a pass already under way.
            time.sleep(2.0)
            asyncio.run(self._enqueue(f"{namespace}/{queue}", BURST))
            enqueued = time.monotonic()
            at = self.deployments.wait_matched(
                [(namespace, pool)], f"Deployment {pool} scaled up", limit=60
            )
            samples.append(at - enqueued)
        return samples

    async def _enqueue(self, queue: str, count: int) -> None:
        async with await connect(self.dsn, min_size=1, max_size=1) as client:
            await client.enqueue_many(
                queue, [TaskRequest("make_thumbnail", {"n": n}) for n in range(count)]
            )

    def reconcile_many(self) -> dict[str, float]:
        namespaces = [self.namespace(f"many{n}") for n in range(NAMESPACES)]
        queue_keys: list[Key] = []
        pool_keys: list[Key] = []
        documents: dict[str, list[Obj]] = {ns: [] for ns in namespaces}
        for n in range(MANY):
            namespace = namespaces[n % NAMESPACES]
            documents[namespace].append(taskqueue(f"q{n}"))
            queue_keys.append((namespace, f"q{n}"))
        for n in range(MANY):
            namespace = namespaces[n % NAMESPACES]
            documents[namespace].append(workerpool(f"p{n}", f"q{n}", max_replicas=2))
            pool_keys.append((namespace, f"p{n}"))
        binary = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl") or "kubectl"
        cpu_before = self.operator.cpu_seconds()
        started = time.monotonic()
        applies = []
        for namespace, docs in documents.items():
            proc = subprocess.Popen(
                [
                    binary,
                    f"--kubeconfig={KUBECONFIG}",
                    "-n",
                    namespace,
                    "apply",
                    "--server-side",
                    "-f",
                    "-",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(yaml.safe_dump_all(docs))
            proc.stdin.close()
            applies.append(proc)
        for proc in applies:
            if proc.wait(TIMEOUT) != 0:
                assert proc.stderr is not None
                raise RuntimeError(f"kubectl apply failed: {proc.stderr.read()}")
        applied = time.monotonic()
        queues_at = self.queues.wait_matched(queue_keys, f"{MANY} TaskQueues Ready")
        deployments_at = self.deployments.wait_seen(pool_keys, f"{MANY} Deployments")
        finished = max(queues_at, deployments_at)
        cpu = self.operator.cpu_seconds() - cpu_before
        return {
            "reconcile_200_s": finished - started,
            "apply_s": applied - started,
            "queues_ready_s": queues_at - started,
            "deployments_s": deployments_at - started,
            "operator_cpu_s": cpu,
        }

    def cleanup(self) -> None:
        """Delete the namespaces while the operator still runs (it removes the finalizers)."""
        for namespace in self.namespaces:
            try:
                self.core.delete_namespace(namespace)
            except ApiException as error:
                if error.status != 404:
                    log(f"cannot delete namespace {namespace}: {error.reason}")

        def gone() -> bool:
            names = {n.metadata.name for n in self.core.list_namespace().items if n.metadata}
            return not names & set(self.namespaces)

        try:
            wait_until(gone, "the benchmark's namespaces to be deleted", limit=120)
        except TimeoutError as error:
            # The operator finishes deletions kopf missed (docs/benchmarks.md, cleanup note);
            # should that fail, the objects are the benchmark's own (Retain, throwaway
            # database): drop the finalizers.
            log(f"{error}; removing the finalizers of what remains")
            self._drop_finalizers()
            try:
                wait_until(gone, "the benchmark's namespaces to be deleted", limit=60)
            except TimeoutError as again:
                log(f"{again}; left behind: {' '.join(self.namespaces)}")

    def _drop_finalizers(self) -> None:
        for namespace in self.namespaces:
            for plural in ("taskqueues", "workerpools"):
                try:
                    found = cast(
                        Obj,
                        self.custom.list_namespaced_custom_object(
                            GROUP, VERSION, namespace, plural
                        ),
                    )
                    for item in found.get("items") or []:
                        if item["metadata"].get("finalizers"):
                            self.custom.patch_namespaced_custom_object(
                                GROUP,
                                VERSION,
                                namespace,
                                plural,
                                item["metadata"]["name"],
                                {"metadata": {"finalizers": None}},
                            )
                except ApiException as error:
                    if error.status != 404:
                        log(f"cannot drop finalizers in {namespace}: {error.reason}")


def versions() -> dict[str, str]:
    server = k8s.VersionApi(api_client())
    return {
        "python": platform.python_version(),
        "kopf": metadata.version("kopf"),
        "kubernetes_client": metadata.version("kubernetes"),
        "kubernetes_server": server.get_code().git_version,
    }


async def postgres_version(dsn: str) -> str:
    async with await connect(dsn, min_size=1, max_size=1) as client:
        await client.migrate()
        async with client.pool.acquire() as connection:
            value: str = await connection.fetchval("SHOW server_version")
            return value


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run(dsn: str, pg_version: str, workdir: Path) -> dict[str, Any]:
    up = subprocess.run(
        [str(REPO / "cluster" / "up.sh")], check=False, capture_output=True, text=True, timeout=3600
    )
    if up.returncode != 0:
        raise RuntimeError(f"cluster/up.sh failed:\n{up.stdout}{up.stderr}")
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/taskqueues.taskq.dev",
        "crd/workerpools.taskq.dev",
    )
    run_id = secrets.token_hex(3)
    purposes = ["ready", "scale", *(f"many{n}" for n in range(NAMESPACES))]
    namespaces = [f"opbench-{run_id}-{purpose}" for purpose in purposes]
    operator = LocalOperator(
        KUBECONFIG,
        dsn,
        Path(LOG) if LOG else workdir / "operator.log",
        namespaces=",".join(namespaces),  # e2e runs on the same cluster have their own
        settings={
            "status_interval": str(STATUS_INTERVAL),
            "maintenance_interval": str(MAINTENANCE_INTERVAL),
        },
        python_args=["-m", "cProfile", "-o", PROFILE] if PROFILE else (),
    )
    operator.start()
    bench = Bench(dsn, operator, run_id)
    try:
        with bench.watching():
            log("reconcile_ready")
            ready_samples = bench.reconcile_ready()
            log("scale_reaction")
            scale_samples = bench.scale_reaction()
            log(f"reconcile_{MANY}")
            many = bench.reconcile_many()
    finally:
        log("cleanup")
        bench.cleanup()  # while the operator runs: it removes the TaskQueues' finalizers
        operator.stop()
    return {
        "reconcile_ready_s": median(ready_samples),
        "reconcile_ready_samples_s": [round(s, 3) for s in ready_samples],
        "scale_reaction_s": median(scale_samples),
        "scale_reaction_samples_s": [round(s, 3) for s in scale_samples],
        "reconcile_200_s": round(many["reconcile_200_s"], 2),
        "reconcile_200_detail_s": {
            "kubectl_apply": round(many["apply_s"], 2),
            "all_taskqueues_ready": round(many["queues_ready_s"], 2),
            "all_deployments_created": round(many["deployments_s"], 2),
        },
        "operator_cpu_s": round(many["operator_cpu_s"], 2),
        "settings": {
            "ready_samples": READY_SAMPLES,
            "scale_trials": SCALE_TRIALS,
            "burst_tasks": BURST,
            "many_taskqueues": MANY,
            "many_workerpools": MANY,
            "many_namespaces": NAMESPACES,
            "status_interval_s": STATUS_INTERVAL,
            "maintenance_interval_s": MAINTENANCE_INTERVAL,
            "pool_autoscaling": "minReplicas 0, targetBacklogPerReplica 100, "
            "pollIntervalSeconds 10 (default); maxReplicas 5 (scale), 2 (many)",
            "observation": "cluster-wide watches (kubernetes client), events timestamped "
            "on arrival",
            "operator_watches": "the benchmark's namespaces (TASKQ_OPERATOR_NAMESPACES)",
            "operator_profiled": bool(PROFILE),
            "postgres": f"local PostgreSQL {pg_version}, not durable (fsync off)",
            "control_plane": "local (cluster/up.sh: etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler, kwok), loopback",
            "cpus": os.cpu_count(),
            "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
            **versions(),
        },
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="taskq-opbench-"))
    server = LocalPostgres.temporary(durable=False)
    server.start()
    failed = True
    try:
        pg_version = asyncio.run(postgres_version(server.dsn))
        result = run(server.dsn, pg_version, workdir)
        failed = False
    finally:
        server.destroy()
        if failed and not LOG:
            log(f"operator log kept: {workdir / 'operator.log'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
