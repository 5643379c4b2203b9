"""TaskSchedules on the real local control plane and a real PostgreSQL: declared in their
queue's database, fired by the operator's scheduler, shown by `kubectl get taskschedules`,
invalid ones refused by the API server or reported naming the field, removed on deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from . import cluster
from .operator import (
    Operator,
    apply,
    assert_refused,
    condition,
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
    yield
    cluster.kubectl(
        "-n", namespace, "delete", "taskschedules,taskqueues", "--all", "--wait=true",
        "--timeout=60s", kubeconfig=kubeconfig, check=False,
    )  # fmt: skip


def sql(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def ready_schedule(kubeconfig: Path, namespace: str) -> dict[str, Any] | None:
    obj = get(kubeconfig, namespace, "taskschedule", "sweep")
    found = condition(obj)
    return obj if found and found["status"] == "True" else None


def test_a_schedule_fires_into_its_queue_and_shows_it(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    apply(kubeconfig, namespace, example("taskqueue.yaml"))
    apply(kubeconfig, namespace, example("taskschedule.yaml"))
    declared = wait_for(lambda: ready_schedule(kubeconfig, namespace), "TaskSchedule Ready")
    assert declared["status"]["nextScheduleTime"]
    (row,) = sql(dsn, "SELECT * FROM taskq.schedules WHERE namespace = $1", namespace)
    assert (row["cron"], row["time_zone"], row["concurrency_policy"]) == (
        "* * * * *", "Europe/Berlin", "Forbid"
    )

    # due now rather than at the next minute: the operator's scheduler fires it
    sql(dsn, "UPDATE taskq.schedules SET next_run_at = now() WHERE namespace = $1", namespace)

    def fired() -> dict[str, Any] | None:
        obj = ready_schedule(kubeconfig, namespace)
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
