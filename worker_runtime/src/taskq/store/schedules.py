"""Schedules in PostgreSQL (taskq.schedules, migration 0015): declare, list, suspend, delete,
and fire the due ones. Which ticks a pass runs is decided by taskq.schedules.plan; here it is
done under the schedule's row lock, in the transaction that records it (docs/schedules.md).

Every call translates database errors (store/dberrors.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from taskq.errors import ScheduleExistsError, TaskqError
from taskq.models import TaskRequest
from taskq.names import check_label
from taskq.schedules import ConcurrencyPolicy, ScheduleSpec, idempotency_key, next_tick, plan
from taskq.store.dberrors import translated
from taskq.store.sqlfiles import query
from taskq.store.tasks import cancel_task, enqueue_many
from taskq.store.types import Connection, Executor

UNFINISHED = frozenset({"scheduled", "ready", "running", "retrying"})


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule and what its scheduler last did."""

    namespace: str
    name: str
    spec: ScheduleSpec
    next_run_at: datetime
    last_schedule_time: datetime | None
    last_task_id: int | None
    last_skipped_time: datetime | None
    last_skipped_reason: str | None
    last_error: str | None
    created_at: datetime

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Fired:
    """One pass over a due schedule."""

    schedule: str  # namespace/name
    enqueued: tuple[int, ...]  # task ids, oldest tick first
    skipped: tuple[tuple[datetime, str], ...]
    error: str | None  # the pass could not enqueue; its ticks stay due


def _info(row: asyncpg.Record) -> ScheduleInfo:
    payload = row["payload"]
    spec = ScheduleSpec(
        queue=row["queue"],
        task_name=row["task_name"],
        payload=json.loads(payload) if isinstance(payload, str) else payload,
        priority=row["priority"],
        cron=row["cron"],
        time_zone=row["time_zone"],
        suspend=row["suspend"],
        concurrency_policy=row["concurrency_policy"],
        starting_deadline_seconds=row["starting_deadline_s"],
        max_missed_runs=row["max_missed_runs"],
    )
    return ScheduleInfo(
        namespace=row["namespace"],
        name=row["name"],
        spec=spec,
        next_run_at=row["next_run_at"],
        last_schedule_time=row["last_schedule_time"],
        last_task_id=row["last_task_id"],
        last_skipped_time=row["last_skipped_time"],
        last_skipped_reason=row["last_skipped_reason"],
        last_error=row["last_error"],
        created_at=row["created_at"],
    )


async def database_now(db: Executor) -> datetime:
    """The database's clock: every process's scheduler agrees on it."""
    with translated():
        now: datetime = await db.fetchval(query("database_now"))
    return now


async def _columns(db: Executor, namespace: str, name: str, spec: ScheduleSpec) -> list[Any]:
    check_label(namespace, "namespace")
    check_label(name, "schedule name")
    first = next_tick(spec.cron, spec.time_zone, await database_now(db))
    return [
        namespace,
        name,
        spec.queue,
        spec.task_name,
        json.dumps(spec.payload),
        spec.priority,
        spec.cron,
        spec.time_zone,
        spec.suspend,
        spec.concurrency_policy.value,
        spec.starting_deadline_seconds,
        spec.max_missed_runs,
        first,
    ]


async def create_schedule(
    db: Executor, namespace: str, name: str, spec: ScheduleSpec
) -> ScheduleInfo:
    """A new schedule; ScheduleExistsError when the name is taken."""
    columns = await _columns(db, namespace, name, spec)
    with translated():
        row = await db.fetchrow(query("create_schedule"), *columns)
    if row is None:
        raise ScheduleExistsError(f"{namespace}/{name}")
    return _info(row)


async def put_schedule(
    db: Executor, namespace: str, name: str, spec: ScheduleSpec
) -> ScheduleInfo:
    """Create or update; an update keeps the next tick unless the cron, the time zone or a
    resume moves it."""
    columns = await _columns(db, namespace, name, spec)
    with translated():
        row = await db.fetchrow(query("put_schedule"), *columns)
    assert row is not None  # an upsert returns its row
    return _info(row)


async def get_schedule(db: Executor, namespace: str, name: str) -> ScheduleInfo | None:
    with translated():
        row = await db.fetchrow(query("get_schedule"), namespace, name)
    return None if row is None else _info(row)


async def list_schedules(db: Executor, namespace: str | None = None) -> list[ScheduleInfo]:
    with translated():
        rows = await db.fetch(query("list_schedules"), namespace)
    return [_info(row) for row in rows]


async def set_suspended(
    db: Executor, namespace: str, name: str, suspend: bool
) -> ScheduleInfo | None:
    """None when there is no such schedule. Resuming starts at the next tick from now."""
    found = await get_schedule(db, namespace, name)
    if found is None:
        return None
    resume_at = next_tick(found.spec.cron, found.spec.time_zone, await database_now(db))
    with translated():
        row = await db.fetchrow(
            query("set_schedule_suspended"), namespace, name, suspend, resume_at
        )
    return None if row is None else _info(row)


async def delete_schedule(db: Executor, namespace: str, name: str) -> bool:
    with translated():
        deleted = await db.fetchval(query("delete_schedule"), namespace, name)
    return deleted is not None


async def task_state(db: Executor, namespace: str, queue: str, task_id: int) -> str | None:
    """The state of a schedule's last task, looked for in the schedule's queue (`namespace`,
    `queue`: a task id alone would have every queue's partition probed); None once it was
    purged or its queue dropped."""
    last = await _last_task(db, namespace, queue, task_id)
    return None if last is None else last[1]


async def _last_task(
    db: Executor, namespace: str, queue: str, task_id: int
) -> tuple[int, str] | None:
    """The queue id and state of a schedule's last task; None once it is gone."""
    with translated():
        row = await db.fetchrow(query("task_state"), namespace, queue, task_id)
    if row is None or row["state"] is None:
        return None
    return row["queue_id"], row["state"]


async def fire_due(conn: Connection, now: datetime, limit: int = 100) -> list[Fired]:
    """Run the ticks due at `now` of up to `limit` schedules, each in its own transaction
    under its row lock (a schedule another scheduler holds is skipped: it is being fired)."""
    with translated():
        due = [row["id"] for row in await conn.fetch(query("due_schedules"), now, limit)]
    fired = []
    for schedule_id in due:
        with translated():
            async with conn.transaction():
                row = await conn.fetchrow(query("lock_due_schedule"), schedule_id, now)
                if row is not None:
                    fired.append(await _fire(conn, schedule_id, _info(row), now))
    return fired


async def _fire(conn: Connection, schedule_id: int, info: ScheduleInfo, now: datetime) -> Fired:
    spec = info.spec
    last = None  # the queue id and state of the schedule's last task, when they matter
    if info.last_task_id is not None and spec.concurrency_policy is not ConcurrencyPolicy.ALLOW:
        last = await _last_task(conn, info.namespace, spec.queue, info.last_task_id)
    unfinished = last is not None and last[1] in UNFINISHED
    todo = plan(spec, info.next_run_at, now, unfinished)
    queue = f"{info.namespace}/{spec.queue}"
    requests = [
        TaskRequest(
            spec.task_name,
            spec.payload,
            priority=spec.priority,
            idempotency_key=idempotency_key(info.namespace, info.name, tick),
        )
        for tick in todo.run
    ]
    try:
        async with conn.transaction():  # a savepoint: a failure is recorded, not raised
            with translated(queue):
                if todo.cancel_previous and last is not None and info.last_task_id is not None:
                    await cancel_task(conn, last[0], info.last_task_id)
                results = await enqueue_many(conn, queue, requests) if requests else []
    except TaskqError as error:
        await conn.execute(query("record_schedule_error"), schedule_id, str(error))
        return Fired(info.full_name, (), (), str(error))
    skipped = todo.skipped[-1] if todo.skipped else (None, None)
    await conn.execute(
        query("record_schedule_pass"),
        schedule_id,
        todo.next_run_at,
        todo.run[-1] if todo.run else None,
        results[-1].id if results else None,
        *skipped,
    )
    return Fired(info.full_name, tuple(r.id for r in results), todo.skipped, None)
