"""The operator on the real local control plane and a real PostgreSQL: TaskQueues provision
queues and report depth; WorkerPools own a Deployment that follows the depth; TaskSchedules are
declared in their queue's database and fired by the operator's scheduler; the API server
refuses invalid manifests with a message naming the field."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from devenv.operator import REPO
from devenv.postgres import LocalPostgres
from examples.webhook_receiver import WebhookReceiver

from taskq import BackoffPolicy, QueueSettings, TaskRequest
from taskq.client import connect
from taskq.models import WorkerPoolInfo
from tests.queue_settings import assert_stored, other_settings, taskqueue_spec

from . import cluster
from .operator import (
    Operator,
    apply,
    assert_refused,
    condition,
    deployment_replicas,
    events,
    example,
    get,
    install_crds,
    wait_for,
)


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    install_crds(kubeconfig)
    running = Operator(kubeconfig, dsn, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _release_finalizers(kubeconfig: Path, namespace: str, operator: Operator) -> Iterator[None]:
    """Delete the test's resources while the operator still runs: their finalizers are the
    operator's to release, and a namespace holding them would never finish deleting."""
    yield
    cluster.kubectl(
        "-n",
        namespace,
        "delete",
        "taskschedules,workerpools,taskqueues",
        "--all",
        "--wait=true",
        "--timeout=60s",
        kubeconfig=kubeconfig,
        check=False,
    )


def ready(kubeconfig: Path, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    obj = get(kubeconfig, namespace, kind, name)
    found = condition(obj)
    return obj if found and found["status"] == "True" else None


def enqueue(dsn: str, queue: str, count: int) -> None:
    async def run() -> None:
        async with await connect(dsn) as client:
            await client.enqueue_many(
                queue, [TaskRequest("make_thumbnail", {"image": f"p{n}.png"}) for n in range(count)]
            )

    asyncio.run(run())


def queue_exists(dsn: str, queue: str) -> bool:
    async def run() -> bool:
        async with await connect(dsn) as client:
            return any(q.full_name == queue for q in await client.list_queues())

    return asyncio.run(run())


def stored_queue(dsn: str, namespace: str, name: str) -> asyncpg.Record:
    """The queue's row of taskq.queues."""

    async def run() -> asyncpg.Record:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT * FROM taskq.queues WHERE namespace = $1 AND name = $2", namespace, name
            )
        finally:
            await conn.close()
        assert row is not None, f"no queue {namespace}/{name} in the database"
        return row

    return asyncio.run(run())


def applied(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any] | None:
    """The TaskQueue once Ready with its current generation's settings applied."""
    obj = ready(kubeconfig, namespace, "taskqueue", name)
    if obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def test_taskqueue_becomes_ready_with_its_settings_in_postgres(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    started = time.monotonic()
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    obj = wait_for(
        lambda: ready(kubeconfig, namespace, "taskqueue", "thumbnails"),
        "the TaskQueue to be Ready",
        limit=15,
    )
    elapsed = time.monotonic() - started
    assert queue_exists(dsn, f"{namespace}/thumbnails")
    assert obj["status"]["tasks"] == {"ready": 0, "scheduled": 0, "running": 0, "dead": 0}
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    printed = cluster.kubectl("-n", namespace, "get", "taskqueues", kubeconfig=kubeconfig).stdout
    header, row = printed.splitlines()[:2]
    assert header.split()[:7] == [
        "NAME", "READY", "PENDING", "RUNNING", "DEAD", "CAPPED", "OLDEST"
    ]
    assert row.split()[:5] == ["thumbnails", "True", "0", "0", "0"]
    assert "tasks." not in row  # exact counts: nothing in the Capped column
    assert elapsed < 15
    # The example's settings, the ones it leaves out at their defaults, are in the queue's row.
    example_settings = QueueSettings(
        max_attempts=5,
        backoff=BackoffPolicy(kind="exponential", base_seconds=1, max_seconds=300),
        timeout_seconds=60,
        retention_succeeded_seconds=3600,
        retention_dead_seconds=604800,
    )
    assert_stored(stored_queue(dsn, namespace, "thumbnails"), example_settings)

    # An update of the spec changing every setting reaches the database.
    updated = other_settings(example_settings)
    manifest = example("taskqueue.yaml")
    manifest["spec"] = {**taskqueue_spec(updated), "deletionPolicy": "Retain"}
    apply(kubeconfig, namespace, manifest)
    obj = wait_for(lambda: applied(kubeconfig, namespace, "thumbnails"), "the update applied")
    assert obj["metadata"]["generation"] == 2
    assert_stored(stored_queue(dsn, namespace, "thumbnails"), updated)


def test_a_taskqueue_with_every_setting_creates_its_queue_with_them(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    settings = other_settings()
    manifest = example("taskqueue.yaml")
    manifest["metadata"]["name"] = "every-setting"
    manifest["spec"] = taskqueue_spec(settings)
    apply(kubeconfig, namespace, manifest)
    wait_for(lambda: applied(kubeconfig, namespace, "every-setting"), "the TaskQueue Ready")
    assert_stored(stored_queue(dsn, namespace, "every-setting"), settings)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"retry": {"maxAttempts": 0}}}, "spec.retry.maxAttempts"),
        ({"spec": {"retry": {"backoff": {"baseSeconds": 60, "maxSeconds": 1}}}}, "maxSeconds"),
        ({"spec": {"deletionPolicy": "Sometimes"}}, "spec.deletionPolicy"),
        ({"spec": {"payloadLimitBytes": -1}}, "spec.payloadLimitBytes"),
        ({"spec": {"retentionDays": 3}}, "retentionDays"),
    ],
)
def test_invalid_taskqueues_are_refused_naming_the_field(
    kubeconfig: Path, namespace: str, operator: Operator, patch: dict[str, Any], message: str
) -> None:
    manifest = example("taskqueue.yaml")
    manifest["metadata"]["name"] = "invalid"
    for key, value in patch["spec"].items():
        manifest["spec"][key] = value
    assert_refused(kubeconfig, namespace, manifest, message)


def test_invalid_workerpools_are_refused_naming_the_field(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    bad = [
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
        ({"replicas": 3}, "replicas"),
        ({"queues": []}, "spec.queues"),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "TASKQ_DSN", "value": "x"}]},
            "spec.env[1]: Invalid value: env must not set TASKQ_DSN: the operator sets",
        ),
        (
            {
                "pooler": {"secretKeyRef": {"name": "pgbouncer"}},
                "env": [{"name": "TASKQ_LISTEN", "value": "true"}],
            },
            "env must not set TASKQ_DB_POOL_MODE or TASKQ_LISTEN with pooler",
        ),
        ({"image": " example/thumbnailer:1"}, "spec.image: Invalid value"),
        ({"pod": {"labels": {"team name": "a"}}}, "spec.pod.labels: Invalid value: 'team name'"),
        ({"pod": {"nodeSelector": {"zone": "a b"}}}, "spec.pod.nodeSelector.zone"),
        (
            {"env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"key": "k"}}}]},
            "spec.env[0].valueFrom.secretKeyRef.name: Required value",
        ),
        ({"env": [{"name": "KEY", "valueFrom": {}}]}, "spec.env[0].valueFrom: Invalid value"),
    ]
    for change, message in bad:
        manifest = example("workerpool.yaml")
        manifest["spec"].update(change)
        assert_refused(kubeconfig, namespace, manifest, message)


def test_a_pool_whose_deployment_is_refused_says_why_in_its_own_fields(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    """What only the Deployment's validation can tell reaches the pool's Ready condition and
    one Warning Event, named by the pool's fields; fixing the spec makes the pool Ready."""
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    manifest = example("workerpool.yaml")
    manifest["spec"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    manifest["spec"]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "no.such.field"}}},
    ]
    apply(kubeconfig, namespace, manifest)

    def refused() -> dict[str, Any] | None:
        found = condition(get(kubeconfig, namespace, "workerpool", "thumbnailers"))
        return found if found and found["reason"] == "InvalidPodTemplate" else None

    refusal = wait_for(refused, "Ready=False InvalidPodTemplate")
    assert refusal["status"] == "False"
    assert "spec.resources.requests: Invalid value" in refusal["message"]
    assert "spec.env[1].valueFrom.fieldRef.fieldPath" in refusal["message"]
    assert "containers[0]" not in refusal["message"]
    warnings = wait_for(
        lambda: [
            m
            for kind, reason, m in events(kubeconfig, namespace, "WorkerPool", "thumbnailers")
            if (kind, reason) == ("Warning", "InvalidPodTemplate")
        ],
        "the Warning Event",
    )
    assert warnings == [refusal["message"][:1024]]
    assert get(kubeconfig, namespace, "deployment", "thumbnailers") is None
    # the user's error is no fault of the operator's: no traceback for it
    assert f"reconciling WorkerPool {namespace}/thumbnailers failed" not in (
        operator.log_path.read_text()
    )

    manifest["spec"]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    manifest["spec"]["env"] = [{"name": "A", "value": "1"}]
    apply(kubeconfig, namespace, manifest)
    wait_for(
        lambda: get(kubeconfig, namespace, "deployment", "thumbnailers"),
        "the Deployment once the spec is fixed",
    )
    wait_for(lambda: ready(kubeconfig, namespace, "workerpool", "thumbnailers"), "pool Ready")

    # Broken again: the running workers keep their template and still follow the depth.
    manifest["spec"]["image"] = "example/thumbnailer:2"
    manifest["spec"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    apply(kubeconfig, namespace, manifest)
    wait_for(refused, "Ready=False InvalidPodTemplate again")
    enqueue(dsn, f"{namespace}/thumbnails", 1000)
    wait_for(
        lambda: deployment_replicas(kubeconfig, namespace, "thumbnailers") == 5,
        "5 replicas for 1,000 tasks through the scale subresource",
    )
    deployment = get(kubeconfig, namespace, "deployment", "thumbnailers")
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == example("workerpool.yaml")["spec"]["image"]


def test_database_of_a_taskqueue_cannot_change(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    manifest = example("taskqueue.yaml")
    manifest["spec"]["database"] = {"secretKeyRef": {"name": "elsewhere", "key": "dsn"}}
    assert_refused(kubeconfig, namespace, manifest, "spec.database")


def test_workerpool_scales_with_depth_and_back_to_zero(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    wait_for(lambda: ready(kubeconfig, namespace, "taskqueue", "thumbnails"), "queue Ready")
    apply(kubeconfig, namespace, example("workerpool.yaml"))
    deployment = wait_for(
        lambda: get(kubeconfig, namespace, "deployment", "thumbnailers"), "the worker Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TASKQ_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "thumbnailers-taskq-dsn"
    assert "value" not in env["TASKQ_DSN"]
    assert env["TASKQ_QUEUES"]["value"] == f"{namespace}/thumbnails"
    assert deployment["spec"]["replicas"] == 0  # an empty queue, minReplicas 0
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"

    burst = time.monotonic()
    enqueue(dsn, f"{namespace}/thumbnails", 1000)
    wait_for(
        lambda: deployment_replicas(kubeconfig, namespace, "thumbnailers") == 5,
        "5 replicas for 1,000 tasks",
        limit=10,
    )
    reaction = time.monotonic() - burst
    pool = wait_for(
        lambda: ready(kubeconfig, namespace, "workerpool", "thumbnailers"),
        "the pods to be ready (kwok)",
        limit=30,
    )
    assert pool["status"]["desiredReplicas"] == 5
    assert reaction < 5

    # A worker started by hand with the pods' environment contract drains the queue.
    worker_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TASKQ_DSN": dsn,
        "TASKQ_METRICS_PORT": "0",
    }
    worker_env.update(
        {
            name: e["value"]
            for name, e in env.items()
            if "value" in e and name not in ("TASKQ_METRICS_HOST", "TASKQ_METRICS_PORT")
        }
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskq.cli.main", "worker"], env=worker_env, cwd=REPO
    )
    try:
        wait_for(
            lambda: deployment_replicas(kubeconfig, namespace, "thumbnailers") == 0,
            "scale back to zero after the drain and the 10 s window",
            limit=60,
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert "taskq_workerpool_desired_replicas" in operator.metrics()


def recorded_pools(dsn: str, queue: str) -> list[WorkerPoolInfo]:
    async def run() -> list[WorkerPoolInfo]:
        async with await connect(dsn) as client:
            return await client.worker_pools(queue)

    return asyncio.run(run())


def test_a_pools_scaling_is_recorded_in_its_queues_database_for_the_dashboard(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    queue = f"{namespace}/thumbnails"
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    wait_for(lambda: ready(kubeconfig, namespace, "taskqueue", "thumbnails"), "queue Ready")
    apply(kubeconfig, namespace, example("workerpool.yaml"))
    (idle,) = wait_for(lambda: recorded_pools(dsn, queue), "the pool recorded")
    assert (idle.name, idle.queues, idle.desired) == ("thumbnailers", ("thumbnails",), 0)

    enqueue(dsn, queue, 1000)
    wait_for(
        lambda: [p for p in recorded_pools(dsn, queue) if p.ready == 5],
        "5 ready replicas recorded (kwok)",
        limit=30,
    )
    (pool,) = recorded_pools(dsn, queue)
    assert (pool.desired, pool.replicas, pool.autoscaling) == (5, 5, "Builtin")
    decision = pool.decisions[0]
    assert (decision.from_replicas, decision.to_replicas) == (0, 5)
    assert decision.reason == "WakeFromZero"
    # the pool counts up to what calls for maxReplicas (5 x 100): at least that many
    assert "at least 500 tasks (ready 500 + running 0)" in decision.message
    found = get(kubeconfig, namespace, "workerpool", "thumbnailers")
    assert found is not None
    assert found["status"]["lastScaleReason"] == decision.reason

    cluster.kubectl(
        "-n", namespace, "delete", "workerpool", "thumbnailers", "--wait=true",
        kubeconfig=kubeconfig,
    )
    wait_for(lambda: recorded_pools(dsn, queue) == [], "the record removed with the pool")


def test_deletion_policy(kubeconfig: Path, namespace: str, operator: Operator, dsn: str) -> None:
    for name, policy in (("kept", "Retain"), ("dropped", "Delete")):
        manifest = example("taskqueue.yaml")
        manifest["metadata"]["name"] = name
        manifest["spec"]["deletionPolicy"] = policy
        apply(kubeconfig, namespace, manifest)
    for name in ("kept", "dropped"):
        wait_for(partial(ready, kubeconfig, namespace, "taskqueue", name), f"{name} Ready")
    for name in ("kept", "dropped"):
        cluster.kubectl(
            "-n", namespace, "delete", "taskqueue", name, "--timeout=30s", kubeconfig=kubeconfig
        )
    assert queue_exists(dsn, f"{namespace}/kept")
    assert not queue_exists(dsn, f"{namespace}/dropped")


def test_deleting_the_whole_namespace_finishes(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    """Deleting a namespace that holds a TaskQueue and a WorkerPool completes, the queue is
    dropped (Delete policy), and nothing is left Terminating: also when kopf stops watching
    the namespace before the deletion of its objects reaches it (the daemons then finish the
    deletion themselves)."""
    queue = example("taskqueue.yaml")
    queue["spec"]["deletionPolicy"] = "Delete"
    apply(kubeconfig, namespace, queue)
    wait_for(lambda: ready(kubeconfig, namespace, "taskqueue", "thumbnails"), "queue Ready")
    apply(kubeconfig, namespace, example("workerpool.yaml"))
    wait_for(lambda: get(kubeconfig, namespace, "deployment", "thumbnailers"), "the Deployment")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", kubeconfig=kubeconfig)

    def gone() -> bool:
        return (
            cluster.kubectl(
                "get", "namespace", namespace, kubeconfig=kubeconfig, check=False
            ).returncode
            != 0
        )

    wait_for(gone, f"namespace {namespace} to be deleted", limit=90)
    assert not queue_exists(dsn, f"{namespace}/thumbnails")


def test_database_down_marks_the_queue_not_ready_and_holds_replicas(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    server = LocalPostgres.temporary()
    server.start()
    try:
        cluster.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "own-db",
            f"--from-literal=dsn={server.dsn}",
            kubeconfig=kubeconfig,
        )
        queue = example("taskqueue.yaml")
        queue["metadata"]["name"] = "own"
        queue["spec"]["database"] = {"secretKeyRef": {"name": "own-db", "key": "dsn"}}
        apply(kubeconfig, namespace, queue)
        wait_for(partial(ready, kubeconfig, namespace, "taskqueue", "own"), "own Ready")
        pool = example("workerpool.yaml")
        pool["metadata"]["name"] = "own-workers"
        pool["spec"]["queues"] = ["own"]
        pool["spec"]["autoscaling"].update(
            minReplicas=1, targetBacklogPerReplica=10, scaleDownStabilizationSeconds=60
        )
        apply(kubeconfig, namespace, pool)
        enqueue(server.dsn, f"{namespace}/own", 25)
        wait_for(
            lambda: deployment_replicas(kubeconfig, namespace, "own-workers") == 3,
            "3 replicas for 25 tasks at 10 per replica",
            limit=15,
        )

        server.stop("immediate")
        down = wait_for(
            lambda: _not_ready_because(kubeconfig, namespace, "own", "DatabaseUnavailable"),
            "Ready=False with reason DatabaseUnavailable",
            limit=30,
        )
        assert "database" in down["message"]
        for _ in range(10):  # held, never scaled down or to zero on errors
            assert deployment_replicas(kubeconfig, namespace, "own-workers") == 3
            time.sleep(0.5)

        server.start()
        wait_for(
            partial(ready, kubeconfig, namespace, "taskqueue", "own"),
            "Ready again once the database is back",
            limit=30,
        )
    finally:
        server.destroy()


def _not_ready_because(
    kubeconfig: Path, namespace: str, name: str, reason: str
) -> dict[str, Any] | None:
    found = condition(get(kubeconfig, namespace, "taskqueue", name))
    return found if found and found["status"] == "False" and found["reason"] == reason else None


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    documents = []
    for n in range(5):
        queue = example("taskqueue.yaml")
        queue["metadata"]["name"] = f"q{n}"
        pool = example("workerpool.yaml")
        pool["metadata"]["name"] = f"p{n}"
        pool["spec"]["queues"] = [f"q{n}"]
        pool["spec"]["autoscaling"].update(minReplicas=1, maxReplicas=2)
        documents += [queue, pool]
    apply(kubeconfig, namespace, yaml.safe_dump_all(documents))
    time.sleep(0.3)
    operator.kill()  # in the middle of provisioning and building Deployments
    operator.start()
    for n in range(5):
        wait_for(
            partial(ready, kubeconfig, namespace, "taskqueue", f"q{n}"), f"q{n} Ready", limit=60
        )
        wait_for(
            partial(ready, kubeconfig, namespace, "workerpool", f"p{n}"), f"p{n} Ready", limit=60
        )
    listed = json.loads(
        cluster.kubectl(
            "-n",
            namespace,
            "get",
            "deployments,secrets",
            "-l",
            "app.kubernetes.io/managed-by=taskq-operator",
            "-o",
            "json",
            kubeconfig=kubeconfig,
        ).stdout
    )
    names = sorted((item["kind"], item["metadata"]["name"]) for item in listed["items"])
    assert names == sorted(
        [("Deployment", f"p{n}") for n in range(5)]
        + [("Secret", f"p{n}-taskq-dsn") for n in range(5)]
    )
    for item in listed["items"]:
        assert len(item["metadata"]["ownerReferences"]) == 1


def sql(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_schedule_fires_into_its_queue_and_shows_it(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    apply(kubeconfig, namespace, example("taskschedule.yaml"))
    declared = wait_for(
        lambda: ready(kubeconfig, namespace, "taskschedule", "sweep"), "TaskSchedule Ready"
    )
    assert declared["status"]["nextScheduleTime"]
    (row,) = sql(dsn, "SELECT * FROM taskq.schedules WHERE namespace = $1", namespace)
    assert (row["cron"], row["time_zone"], row["concurrency_policy"]) == (
        "* * * * *",
        "Europe/Berlin",
        "Forbid",
    )

    # due now rather than at the next minute: the operator's scheduler fires it
    sql(dsn, "UPDATE taskq.schedules SET next_run_at = now() WHERE namespace = $1", namespace)

    def fired() -> dict[str, Any] | None:
        obj = ready(kubeconfig, namespace, "taskschedule", "sweep")
        return obj if obj and obj["status"].get("lastTaskId") else None

    obj = wait_for(fired, "the tick's task in the status")
    assert obj["status"]["lastTaskState"] == "ready"
    (task,) = sql(
        dsn,
        "SELECT t.task_name, t.payload::text AS payload FROM taskq.tasks t"
        " JOIN taskq.queues q ON q.id = t.queue_id WHERE q.namespace = $1",
        namespace,
    )
    assert task["task_name"] == "make_thumbnail"
    table = cluster.kubectl(
        "-n", namespace, "get", "taskschedules", kubeconfig=kubeconfig
    ).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "LAST", "NEXT", "LAST-STATE", "AGE"
    ]  # fmt: skip
    assert table[1].split()[:5] == ["sweep", "*", "*", "*", "*"]
    assert "Europe/Berlin" in table[1] and "ready" in table[1]

    cluster.kubectl(
        "-n", namespace, "delete", "taskschedule", "sweep", "--wait=true", kubeconfig=kubeconfig
    )
    assert sql(dsn, "SELECT 1 FROM taskq.schedules WHERE namespace = $1", namespace) == []


def test_invalid_schedules_are_refused_or_reported_naming_the_field(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    for change, message in [
        ({"schedule": "every minute"}, "spec.schedule"),
        ({"schedule": "* * * *"}, "spec.schedule"),
        ({"timeZone": "Europe Berlin"}, "spec.timeZone"),
        ({"concurrencyPolicy": "Never"}, "spec.concurrencyPolicy"),
        ({"maxMissedRuns": -1}, "spec.maxMissedRuns"),
        ({"queue": "Thumbnails"}, "spec.queue"),
    ]:
        manifest = example("taskschedule.yaml")
        manifest["spec"].update(change)
        assert_refused(kubeconfig, namespace, manifest, message)

    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    manifest = example("taskschedule.yaml")
    manifest["spec"]["schedule"] = "61 * * * *"
    apply(kubeconfig, namespace, manifest)

    def reported() -> dict[str, Any] | None:
        found = condition(get(kubeconfig, namespace, "taskschedule", "sweep"))
        return found if found and found["reason"] == "InvalidSchedule" else None

    found = wait_for(reported, "Ready=False InvalidSchedule")
    assert found["message"].startswith("spec.schedule: '61 * * * *' is not a cron expression")

    manifest["spec"]["schedule"] = "* * * * *"
    manifest["spec"]["queue"] = "elsewhere"
    assert_refused(kubeconfig, namespace, manifest, "spec.queue is immutable")


def test_a_queues_webhook_is_declared_from_its_secret_and_called_when_a_task_finishes(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str, tmp_path: Path
) -> None:
    """spec.webhooks end to end: the operator declares the endpoint with the Secret's signing
    key, a real `taskq worker` runs the task and delivers the event, and the receiver verifies
    its Standard Webhooks signature; a missing Secret is reported naming the field."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = WebhookReceiver(secret, say=lambda _line: None)
    receiver.start()
    try:
        manifest = example("taskqueue.yaml")
        manifest["spec"]["webhooks"] = [{
            "name": "done", "url": f"{receiver.url}/done", "events": ["Succeeded"],
            "secretRef": {"name": "hooks", "key": "signing"}, "allowHosts": ["127.0.0.1"],
        }]  # fmt: skip
        apply(kubeconfig, namespace, manifest)

        def refused() -> dict[str, Any] | None:
            found = condition(get(kubeconfig, namespace, "taskqueue", "thumbnails"))
            return found if found and found.get("reason") == "SecretNotFound" else None

        missing = wait_for(refused, "Ready=False SecretNotFound")
        assert missing["message"].startswith("spec.webhooks[0].secretRef: ")
        cluster.kubectl(
            "-n", namespace, "create", "secret", "generic", "hooks",
            f"--from-literal=signing={secret}", kubeconfig=kubeconfig,
        )  # fmt: skip
        wait_for(lambda: ready(kubeconfig, namespace, "taskqueue", "thumbnails"), "Ready")
        wait_for(
            lambda: sql(
                dsn,
                "SELECT 1 FROM taskq.webhooks WHERE namespace = $1 AND url IS NOT NULL",
                namespace,
            ),
            "the webhook declared",
        )
        queue = f"{namespace}/thumbnails"
        enqueue(dsn, queue, 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskq.cli.main", "worker"],
            env={**env, "TASKQ_DSN": dsn, "TASKQ_QUEUES": queue, "PYTHONPATH": str(REPO),
                 "TASKQ_APP": "examples.thumbnails", "TASKQ_METRICS_PORT": "0"},
            stderr=(tmp_path / "worker.log").open("wb"), cwd=REPO,
        )  # fmt: skip
        try:
            assert receiver.wait(1, 60), (tmp_path / "worker.log").read_text()[-2000:]
        finally:
            worker.terminate()
            assert worker.wait(30) == 0
        (event,) = receiver.events
        assert (event["type"], event["data"]["queue"]) == ("task.succeeded", queue)
    finally:
        receiver.stop()
