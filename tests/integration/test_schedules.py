"""Schedules on a real PostgreSQL: a due tick becomes exactly one task, whoever fires it and
however many fire at once, also when a scheduler dies mid-tick; a missing queue is an error the
schedule keeps until the queue exists; Forbid and Replace see the previous task's state; and a
worker's maintenance fires schedules on the database's clock. Ticks are driven by giving the
scheduler `now` (its service boundary), never by sleeping for minutes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from taskq.client import Client
from taskq.errors import InvalidArgumentError, ScheduleExistsError, UnknownScheduleError
from taskq.maintenance.scheduler import Scheduler
from taskq.models import QueueSettings
from taskq.schedules import ScheduleSpec, idempotency_key
from taskq.store.maintenance import MaintenanceStore
from taskq.store.schedules import fire_due
from taskq.worker.context import TaskContext
from taskq.worker.registry import Registry
from tests.integration.helpers import running_worker, task_state, wait_for
from tests.integration.test_maintenance import Counts

_namespaces = itertools.count()


def spec(**fields: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"queue": "reports", "task_name": "report", "cron": "@hourly"}
    return ScheduleSpec.model_validate(values | fields)


async def namespace_with_queue(client: Client, queue: str = "reports") -> str:
    namespace = f"sched{next(_namespaces)}"
    await client.ensure_queue(f"{namespace}/{queue}", QueueSettings())
    return namespace


async def tasks_of(pool: asyncpg.Pool, namespace: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT t.id, t.task_name, t.payload, t.priority, t.idempotency_key, t.state"
        "  FROM taskq.tasks t JOIN taskq.queues q ON q.id = t.queue_id"
        " WHERE q.namespace = $1 ORDER BY t.id",
        namespace,
    )


async def fire(pool: asyncpg.Pool, now: datetime) -> None:
    """Passes at `now` until every due schedule was fired. A pass fires 100 at most, and the
    session's other schedules (tests/api's too) are due at the same hours; those without a
    queue stay due, so the passes end at one that fires no schedule not fired yet."""
    fired: set[str] = set()
    async with pool.acquire() as conn:
        while not (passed := {f.schedule for f in await fire_due(conn, now)}) <= fired:
            fired |= passed


async def test_a_due_tick_is_one_task_and_the_schedule_moves_on(
    client: Client, pool: asyncpg.Pool
) -> None:
    namespace = await namespace_with_queue(client)
    created = await client.create_schedule(
        f"{namespace}/nightly", spec(payload={"kind": "daily"}, priority=80)
    )
    tick = created.next_run_at
    assert tick.minute == 0 and tick.second == 0  # @hourly: the next full hour

    await fire(pool, tick - timedelta(seconds=1))
    assert await tasks_of(pool, namespace) == []  # not due yet
    await fire(pool, tick + timedelta(seconds=1))
    await fire(pool, tick + timedelta(seconds=2))  # the same tick again: nothing more

    (task,) = await tasks_of(pool, namespace)
    assert task["task_name"] == "report"
    assert task["priority"] == 80
    assert task["idempotency_key"] == idempotency_key(namespace, "nightly", tick)
    after = await client.get_schedule(f"{namespace}/nightly")
    assert after.next_run_at == tick + timedelta(hours=1)
    assert after.last_schedule_time == tick
    assert after.last_task_id == task["id"]
    assert after.last_error is None


async def test_schedules_are_created_once_and_named_in_errors(client: Client) -> None:
    namespace = await namespace_with_queue(client)
    await client.create_schedule(f"{namespace}/a", spec())
    with pytest.raises(ScheduleExistsError, match=f"'{namespace}/a' already exists"):
        await client.create_schedule(f"{namespace}/a", spec())
    with pytest.raises(UnknownScheduleError, match="taskq schedules list"):
        await client.get_schedule(f"{namespace}/missing")
    with pytest.raises(InvalidArgumentError, match="invalid schedule name"):
        await client.create_schedule(f"{namespace}/Bad_Name", spec())
    assert [s.name for s in await client.list_schedules(namespace)] == ["a"]
    await client.delete_schedule(f"{namespace}/a")
    with pytest.raises(UnknownScheduleError):
        await client.delete_schedule(f"{namespace}/a")


async def test_many_schedulers_at_once_fire_each_tick_once(
    client: Client, pool: asyncpg.Pool
) -> None:
    namespace = await namespace_with_queue(client)
    ticks = [
        (await client.create_schedule(f"{namespace}/s{n}", spec())).next_run_at
        for n in range(20)
    ]
    now = max(ticks) + timedelta(seconds=1)

    await asyncio.gather(*(fire(pool, now) for _ in range(8)))

    found = await tasks_of(pool, namespace)
    assert len(found) == 20
    assert len({t["idempotency_key"] for t in found}) == 20


async def test_a_scheduler_killed_mid_tick_leaves_nothing_and_the_next_fires_it(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    namespace = await namespace_with_queue(client)
    tick = (await client.create_schedule(f"{namespace}/nightly", spec())).next_run_at
    now = tick + timedelta(seconds=1)
    doomed = await asyncpg.connect(dsn)
    try:
        transaction = doomed.transaction()
        await transaction.start()
        await fire_due(doomed, now)  # enqueued and recorded, not committed
        pid = doomed.get_server_pid()
        await pool.execute("SELECT pg_terminate_backend($1)", pid)

        async def gone() -> bool:
            return not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )

        await wait_for(gone, bool, what="the scheduler's backend to end")
    finally:
        doomed.terminate()
    assert await tasks_of(pool, namespace) == []

    await fire(pool, now)

    (task,) = await tasks_of(pool, namespace)
    assert task["idempotency_key"] == idempotency_key(namespace, "nightly", tick)


async def test_a_missing_queue_is_kept_as_the_schedules_error_until_it_exists(
    client: Client, pool: asyncpg.Pool
) -> None:
    namespace = await namespace_with_queue(client)
    created = await client.create_schedule(f"{namespace}/orphan", spec(queue="later"))
    tick = created.next_run_at
    store, counts = MaintenanceStore(pool, 5.0), Counts()

    # other tests' schedules due at that time fire too: only this one's outcome is asserted
    scheduler = Scheduler(clock=lambda _db: _at(tick + timedelta(seconds=1)))
    await scheduler.run_once(store, counts)
    failed = await client.get_schedule(f"{namespace}/orphan")
    assert failed.last_error is not None and f"'{namespace}/later'" in failed.last_error
    assert failed.next_run_at == tick  # still due: nothing was dropped
    assert counts.ticks.get("failed", 0) >= 1
    assert await tasks_of(pool, namespace) == []

    await client.ensure_queue(f"{namespace}/later", QueueSettings())
    await scheduler.run_once(store, counts)
    assert len(await tasks_of(pool, namespace)) == 1
    fixed = await client.get_schedule(f"{namespace}/orphan")
    assert fixed.last_error is None
    assert fixed.next_run_at == tick + timedelta(hours=1)


async def _at(now: datetime) -> datetime:
    return now


async def test_forbid_skips_while_the_previous_task_is_unfinished_and_replace_cancels_it(
    client: Client, pool: asyncpg.Pool
) -> None:
    namespace = await namespace_with_queue(client)
    forbid = await client.create_schedule(f"{namespace}/forbid", spec(concurrency_policy="Forbid"))
    replace = await client.create_schedule(
        f"{namespace}/replace", spec(concurrency_policy="Replace")
    )
    first = forbid.next_run_at
    assert replace.next_run_at == first
    await fire(pool, first + timedelta(seconds=1))
    second = first + timedelta(hours=1)
    await fire(pool, second + timedelta(seconds=1))

    forbidden = await client.get_schedule(f"{namespace}/forbid")
    assert forbidden.last_schedule_time == first
    assert (forbidden.last_skipped_time, forbidden.last_skipped_reason) == (
        second,
        "PreviousUnfinished",
    )
    replaced = await client.get_schedule(f"{namespace}/replace")
    assert replaced.last_schedule_time == second
    states = {t["idempotency_key"]: t["state"] for t in await tasks_of(pool, namespace)}
    assert states[idempotency_key(namespace, "replace", first)] == "canceled"
    assert states[idempotency_key(namespace, "replace", second)] == "ready"
    assert len(states) == 3


async def test_suspended_schedules_do_not_fire_and_resume_from_the_next_tick(
    client: Client, pool: asyncpg.Pool
) -> None:
    namespace = await namespace_with_queue(client)
    tick = (await client.create_schedule(f"{namespace}/s", spec(suspend=True))).next_run_at
    await fire(pool, tick + timedelta(hours=3))
    assert await tasks_of(pool, namespace) == []
    resumed = await client.set_schedule_suspended(f"{namespace}/s", False)
    assert not resumed.spec.suspend
    assert resumed.next_run_at == tick  # the next full hour from the database's now


async def test_changing_the_cron_moves_the_next_tick_and_redeclaring_keeps_it(
    client: Client,
) -> None:
    namespace = await namespace_with_queue(client)
    first = await client.put_schedule(f"{namespace}/s", spec(cron="0 3 * * *"))
    same = await client.put_schedule(f"{namespace}/s", spec(cron="0 3 * * *", priority=10))
    assert same.next_run_at == first.next_run_at and same.spec.priority == 10
    moved = await client.put_schedule(f"{namespace}/s", spec(cron="0 4 * * *"))
    assert moved.next_run_at.hour == 4


async def test_a_workers_maintenance_fires_a_due_schedule_on_the_database_clock(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    namespace = await namespace_with_queue(client)
    await client.create_schedule(f"{namespace}/now", spec(payload={"n": 1}))
    # due now: the tick moved back rather than the test waiting for the next hour
    await pool.execute(
        "UPDATE taskq.schedules SET next_run_at = date_trunc('hour', now())"
        " WHERE namespace = $1",
        namespace,
    )
    registry, seen = Registry(), []

    @registry.task("report")
    async def report(ctx: TaskContext) -> None:
        seen.append(ctx.payload)

    async def ran() -> list[Any]:
        return list(seen)

    async with running_worker(dsn, registry, [f"{namespace}/reports"]):
        await wait_for(ran, lambda found: found == [{"n": 1}], what="the scheduled task")
    (task,) = await tasks_of(pool, namespace)
    assert await task_state(pool, task["id"]) == "succeeded"
