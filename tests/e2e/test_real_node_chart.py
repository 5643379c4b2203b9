"""The Helm chart installed for real on the real node: the operator runs as the pod the chart makes
(in-cluster config through the `kubernetes` Service, its RBAC as its ServiceAccount, probes,
read-only root, non-root), and the worker pods its WorkerPool's Deployment makes drain a queue.

The release namespace is not `e2e-*`: the operator of tests/e2e/test_operator.py (a local process)
watches those, and two operators must never share a namespace. The CRDs come from crds/ (the chart's
`crds.create=false`), as the other e2e tests apply them, so that no release adopts them. PostgreSQL
listens on the bridge address (``pod_pg``); pods reach it and the API server there.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from devenv.postgres import LocalPostgres

import taskq

from . import cluster, node
from .operator import condition, install_crds

CHART = cluster.REPO / "charts" / "taskq"
RELEASE = "tq"
TASKS = 40
MAX_WORKERS = 3
WORKERS = "app.kubernetes.io/instance=crunchers,app.kubernetes.io/component=worker"
OPERATOR = "app.kubernetes.io/component=operator"


@pytest.fixture(scope="module")
def helm() -> str:
    built = subprocess.run(
        [str(cluster.REPO / "tools" / "build.sh"), "helm"],
        check=True, capture_output=True, text=True, timeout=3600,
    )
    return str(Path(built.stdout.strip().splitlines()[-1]) / "helm")


def run_helm(helm: str, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    state = cluster.REPO / ".state" / "helm"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state),
        "HELM_CACHE_HOME": str(state / "cache"),
        "HELM_CONFIG_HOME": str(state / "config"),
        "HELM_DATA_HOME": str(state / "data"),
    }
    proc = subprocess.run(
        [helm, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
async def queue_client(pod_pg: LocalPostgres) -> AsyncIterator[taskq.Client]:
    client = await taskq.connect(pod_pg.dsn)
    yield client
    await client.close()


def wait(what: str, probe: Callable[[], Any], limit: float) -> Any:
    """Poll `probe` until it returns something true; `limit` is a correctness bound."""
    deadline = time.monotonic() + limit
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit}s waiting for {what}")
        time.sleep(0.2)


class Cluster:
    """kubectl in one namespace, reading JSON."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        out: str = cluster.kubectl(
            "-n", self.namespace, *args, input=input, check=check, kubeconfig=self.kubeconfig,
            timeout=120,
        ).stdout
        return out

    def get(self, *what: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.run("get", *what, "-o", "json"))
        return found

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", selector)["items"]
        return items


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def install(helm: str, kube: Cluster, db_secret: str) -> None:
    placement = node.POD_PLACEMENT
    values = {
        "image": {"repository": "taskq-operator", "tag": "0.1.0", "pullPolicy": "Never"},
        "crds": {"create": False},
        "operator": {
            "watchNamespaces": [kube.namespace],
            "statusInterval": 1,
            "maintenanceInterval": 2,
        },
        "database": {"existingSecret": db_secret},
        "nodeSelector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
    }
    run_helm(
        helm, kube.kubeconfig, "install", RELEASE, str(CHART), "--namespace", kube.namespace,
        "--values", _values_file(kube, values),
    )


def _values_file(kube: Cluster, values: dict[str, Any]) -> str:
    path = cluster.STATE.parent / "helm" / f"values-{kube.namespace}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))
    return str(path)


def operator_pod_checks(kube: Cluster, pod: dict[str, Any]) -> None:
    """What the chart promises of the operator pod, seen on the running container."""
    assert pod["spec"]["nodeName"] == node.NODE_NAME
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-taskq"
    name = pod["metadata"]["name"]
    ident = kube.run(
        "exec", name, "--", "python", "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert ident.split() == ["10001", "10001"]
    write = cluster.kubectl(
        "-n", kube.namespace, "exec", name, "--", "python", "-c", "open('/probe', 'w')",
        kubeconfig=kube.kubeconfig, check=False,
    )
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    # In-cluster config: the kubelet's KUBERNETES_SERVICE_HOST (the ClusterIP kube-proxy serves)
    # and the projected ServiceAccount token; no kubeconfig in the image.
    env = kube.run("exec", name, "--", "python", "-c",
                   "import os; print(os.environ['KUBERNETES_SERVICE_HOST'])")
    assert env.strip() == "10.96.0.1"


@dataclass
class Release:
    kube: Cluster
    installed_at: float  # time.monotonic() when helm install started


@pytest.fixture(scope="module")
def release(
    helm: str, kubeconfig: Path, bridge_ip: str, pod_pg: LocalPostgres
) -> Iterator[Release]:
    """The chart installed into a namespace of its own, under the restricted Pod Security profile
    (admission refuses any pod of the chart or the operator outside it), with the operator's
    default database the test PostgreSQL on the bridge address. Removed afterwards: the pools and
    queues first (the operator releases their finalizers), then the release and the namespace."""
    install_crds(kubeconfig)
    kube = Cluster(kubeconfig, f"chart-real-{secrets.token_hex(3)}")
    cluster.kubectl("create", "namespace", kube.namespace, kubeconfig=kubeconfig)
    try:
        kube.run("label", "namespace", kube.namespace,
                 "pod-security.kubernetes.io/enforce=restricted")
        pod_dsn = f"postgresql://postgres@{bridge_ip}:{pod_pg.port}/postgres"
        kube.run("create", "secret", "generic", "taskq-db", f"--from-literal=dsn={pod_dsn}")
        installed_at = time.monotonic()
        install(helm, kube, "taskq-db")
        try:
            yield Release(kube, installed_at)
        finally:
            kube.run(
                "delete", "workerpools,taskqueues", "--all", "--wait=true", "--timeout=90s",
                check=False,
            )
            run_helm(helm, kubeconfig, "uninstall", RELEASE, "--namespace", kube.namespace,
                     "--wait")
    finally:
        cluster.kubectl(
            "delete", "namespace", kube.namespace, "--wait=false", "--ignore-not-found",
            kubeconfig=kubeconfig, check=False,
        )


def operator_pod(kube: Cluster) -> dict[str, Any]:
    """The operator's pod, once Ready."""

    def ready() -> dict[str, Any] | None:
        pods = kube.pods(OPERATOR)
        for pod in pods:
            if pod["status"].get("phase") == "Failed":
                raise AssertionError(f"operator pod failed: {json.dumps(pod['status'])}")
        return next((p for p in pods if is_ready(p)), None)

    found: dict[str, Any] = wait("the operator pod Ready", ready, 180)
    return found


async def test_chart_operator_on_the_real_node_scales_workers_that_drain_a_queue(
    release: Release, queue_client: taskq.Client
) -> None:
    kube = release.kube
    pod = operator_pod(kube)
    print(f"operator pod: helm install -> Ready in {time.monotonic() - release.installed_at:.2f}s")
    operator_pod_checks(kube, pod)
    await drain_with_a_workerpool(kube, queue_client)


async def drain_with_a_workerpool(kube: Cluster, client: taskq.Client) -> None:
    kube.apply({
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "work"},
        "spec": {"deletionPolicy": "Retain"},
    })

    def queue_ready() -> dict[str, Any] | None:
        found = kube.get("taskqueue", "work")
        ready = condition(found)
        return found if ready and ready["status"] == "True" else None

    wait("the TaskQueue Ready (reconciled by the operator pod)", queue_ready, 120)

    kube.apply({
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "crunchers"},
        "spec": {
            "queues": ["work"],
            "image": node.HANDLER_IMAGE,
            "imagePullPolicy": "Never",
            "app": node.HANDLER_APP,
            "concurrency": 1,
            "terminationGracePeriodSeconds": 20,
            "pod": node.POD_PLACEMENT,
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": MAX_WORKERS,
                "targetBacklogPerReplica": TASKS // MAX_WORKERS,
                "scaleDownStabilizationSeconds": 5,
                "pollIntervalSeconds": 1,
            },
        },
    })
    deployment = wait(
        "the worker Deployment", lambda: kube.run("get", "deployment", "crunchers",
                                                  check=False), 60
    )
    assert deployment
    assert kube.get("deployment", "crunchers")["spec"]["replicas"] == 0  # an empty queue

    queue = f"{kube.namespace}/work"
    ids = [
        (await client.enqueue(queue, "whoami", {"n": n, "sleep": 1})).id for n in range(TASKS)
    ]
    most_ready = 0
    deadline = time.monotonic() + 240
    while True:
        status = kube.get("deployment", "crunchers")["status"]
        most_ready = max(most_ready, status.get("readyReplicas", 0))
        tasks = [await client.get_task(i) for i in ids]
        if all(t.state == "succeeded" for t in tasks) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert [t.state for t in tasks] == ["succeeded"] * TASKS, kube.run(
        "logs", "-l", WORKERS, "--tail=50", check=False
    )
    assert most_ready == MAX_WORKERS
    hosts = {t.result["host"] for t in tasks}
    assert len(hosts) >= 2 and all(h.startswith("crunchers-") for h in hosts), hosts
    assert {t.result["uid"] for t in tasks} == {10001}
    assert sorted(t.result["n"] for t in tasks) == list(range(TASKS))

    def scaled_to_zero() -> bool:
        spec = kube.get("deployment", "crunchers")["spec"]
        return spec["replicas"] == 0 and not kube.pods(WORKERS)

    wait("the pool back to zero workers, their pods gone", scaled_to_zero, 120)
    pool = kube.get("workerpool", "crunchers")
    assert pool["status"]["desiredReplicas"] == 0


async def until(what: str, probe: Callable[[], Awaitable[Any]], limit: float) -> Any:
    """`wait` for an async probe."""
    deadline = time.monotonic() + limit
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.2)


def pool_pods(kube: Cluster, pool: str) -> list[dict[str, Any]]:
    return kube.pods(f"app.kubernetes.io/instance={pool},app.kubernetes.io/component=worker")


async def two_workers_draining(
    kube: Cluster, client: taskq.Client, pool: str, tasks: int, seconds: float,
    env: list[dict[str, str]],
) -> list[int]:
    """A queue and a pool of two workers (two tasks at once each) serving it, `tasks` tasks of
    `seconds` each enqueued; returns their ids once the two pods are Ready and tasks run."""
    kube.apply({
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": pool},
        "spec": {"deletionPolicy": "Retain"},
    })
    wait(f"the TaskQueue {pool} Ready",
         lambda: (condition(kube.get("taskqueue", pool)) or {}).get("status") == "True", 120)
    kube.apply({
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": pool},
        "spec": {
            "queues": [pool],
            "image": node.HANDLER_IMAGE,
            "imagePullPolicy": "Never",
            "app": node.HANDLER_APP,
            "concurrency": 2,
            "env": env,
            "terminationGracePeriodSeconds": 20,  # 15 s for running tasks to finish
            "pod": node.POD_PLACEMENT,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 2},
        },
    })
    wait("two worker pods Ready",
         lambda: len([p for p in pool_pods(kube, pool) if is_ready(p)]) == 2, 180)
    queue = f"{kube.namespace}/{pool}"
    ids = [
        (await client.enqueue(queue, "whoami", {"n": n, "sleep": seconds})).id
        for n in range(tasks)
    ]

    async def running() -> bool:
        return any(t.state == "running" for t in [await client.get_task(i) for i in ids])

    await until("a task running", running, 60)
    return ids


async def all_succeeded(client: taskq.Client, ids: list[int], limit: float) -> list[Any]:
    async def done() -> list[Any] | None:
        tasks = [await client.get_task(i) for i in ids]
        return tasks if all(t.state == "succeeded" for t in tasks) else None

    try:
        found: list[Any] = await until("every task succeeded", done, limit)
    except TimeoutError:
        states = [(await client.get_task(i)).state for i in ids]
        raise AssertionError(f"not every task succeeded: {states}") from None
    assert sorted(t.result["n"] for t in found) == list(range(len(ids)))
    return found


async def test_a_worker_pod_force_deleted_mid_drain_loses_no_task(
    release: Release, queue_client: taskq.Client
) -> None:
    """The pod goes at once: the kubelet gives its worker 2 s (its least grace) and kills it, in
    the middle of 20 s tasks. They come back when their lease (10 s here) expires, and run again
    in the other pod or the replacement."""
    kube = release.kube
    operator_pod(kube)
    ids = await two_workers_draining(
        kube, queue_client, "forced", 8, 20, [{"name": "TASKQ_LEASE_SECONDS", "value": "10"}]
    )
    pods = {p["metadata"]["uid"]: p["metadata"]["name"] for p in pool_pods(kube, "forced")}

    async def victim() -> tuple[str, list[int]] | None:
        for uid, name in pods.items():
            held = [
                t.id for t in [await queue_client.get_task(i) for i in ids]
                if t.state == "running" and (t.worker_id or "").startswith(f"{uid}:")
            ]
            if held:
                return name, held
        return None

    name, in_flight = await until("a pod running tasks", victim, 60)
    kube.run("delete", "pod", name, "--grace-period=0", "--force")

    tasks = await all_succeeded(queue_client, ids, 240)
    outcomes = {
        t.id: [a.outcome for a in await queue_client.task_attempts(t.id)] for t in tasks
    }
    redone = [i for i in in_flight if outcomes[i][-1] == "succeeded" and len(outcomes[i]) > 1]
    print(f"forced deletion of {name}: {len(in_flight)} tasks in flight, {len(redone)} run again")
    assert all(o[-1] == "succeeded" for o in outcomes.values()), outcomes
    assert all(set(o) <= {"succeeded", "lost", "released"} for o in outcomes.values()), outcomes
    assert redone == in_flight, outcomes
    assert {t.result["host"] for t in tasks if t.id in in_flight}.isdisjoint({name})
    # The Deployment replaced the pod.
    wait("a replacement pod Ready",
         lambda: sorted(p["metadata"]["name"] for p in pool_pods(kube, "forced")
                        if is_ready(p) and p["metadata"]["name"] != name) or None, 120)


async def test_a_rollout_restart_of_the_workers_loses_no_task(
    release: Release, queue_client: taskq.Client
) -> None:
    """New pods first (maxUnavailable 0), then SIGTERM to the old ones: they stop claiming and
    finish what they run within the grace period, so every task has exactly one attempt."""
    kube = release.kube
    operator_pod(kube)
    ids = await two_workers_draining(kube, queue_client, "rolling", 48, 3, [])
    before = {p["metadata"]["name"] for p in pool_pods(kube, "rolling")}
    kube.run("rollout", "restart", "deployment/rolling")

    tasks = await all_succeeded(queue_client, ids, 240)
    kube.run("rollout", "status", "deployment/rolling", "--timeout=180s")
    after = {p["metadata"]["name"] for p in pool_pods(kube, "rolling") if is_ready(p)}
    assert len(after) == 2 and not after & before, (before, after)
    attempts = {t.id: await queue_client.task_attempts(t.id) for t in tasks}
    assert all(
        [a.outcome for a in found] == ["succeeded"] for found in attempts.values()
    ), {i: [a.outcome for a in found] for i, found in attempts.items()}
    hosts = {t.result["host"] for t in tasks}
    assert hosts & before and hosts - before, (hosts, before)


async def test_the_operator_pod_killed_a_new_one_converges(
    release: Release, queue_client: taskq.Client
) -> None:
    """The operator pod force-deleted while its pool drains a backlog: the Deployment's new pod
    becomes Ready and takes over (kopf resumes from the objects, no state of its own), a TaskQueue
    made afterwards becomes Ready, and the pool goes back to zero once the queue drains. The
    workers never notice: every task has exactly one attempt."""
    kube = release.kube
    old = operator_pod(kube)
    old_name = old["metadata"]["name"]
    ids = await two_workers_draining(kube, queue_client, "phoenix", 24, 5, [])
    # The pool is a scaling one again: 0 to 2, so that the new operator must bring it to zero.
    kube.run("patch", "workerpool", "phoenix", "--type=merge", "-p", json.dumps({
        "spec": {"autoscaling": {
            "minReplicas": 0, "maxReplicas": 2, "targetBacklogPerReplica": 4,
            "scaleDownStabilizationSeconds": 5, "pollIntervalSeconds": 1,
        }},
    }))
    killed_at = time.monotonic()
    kube.run("delete", "pod", old_name, "--grace-period=0", "--force")
    pending = [t for t in [await queue_client.get_task(i) for i in ids] if t.state != "succeeded"]
    assert pending, "the queue drained before the operator pod was killed"

    def new_operator() -> dict[str, Any] | None:
        pods = [p for p in kube.pods(OPERATOR) if p["metadata"]["name"] != old_name]
        return next((p for p in pods if is_ready(p)), None)

    new = wait("a new operator pod Ready", new_operator, 180)
    print(f"operator pod killed -> a new one Ready in {time.monotonic() - killed_at:.2f}s")
    assert {p["metadata"]["name"] for p in kube.pods(OPERATOR)} == {new["metadata"]["name"]}
    operator_pod_checks(kube, new)

    kube.apply({
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "reborn"},
        "spec": {"deletionPolicy": "Retain"},
    })
    wait("a TaskQueue made after the kill Ready",
         lambda: (condition(kube.get("taskqueue", "reborn")) or {}).get("status") == "True", 120)

    tasks = await all_succeeded(queue_client, ids, 240)
    attempts = {t.id: [a.outcome for a in await queue_client.task_attempts(t.id)] for t in tasks}
    assert all(found == ["succeeded"] for found in attempts.values()), attempts

    def scaled_to_zero() -> bool:
        spec = kube.get("deployment", "phoenix")["spec"]
        return spec["replicas"] == 0 and not pool_pods(kube, "phoenix")

    wait("the pool back to zero workers (scaled by the new operator)", scaled_to_zero, 120)
    assert kube.get("workerpool", "phoenix")["status"]["desiredReplicas"] == 0
