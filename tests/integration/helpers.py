"""Shared helpers of the integration tests: wait on database state, drive the store directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from taskq.models import QueueInfo
from taskq.store import execution as store
from taskq.store import tasks as task_store
from taskq.store.execution import ClaimedTask, Completion, Outcome
from taskq.store.worker_store import WorkerStore
from taskq.worker.loop import Worker
from taskq.worker.main import worker_pool
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings

T = TypeVar("T")

WORKER = "test-worker"


async def wait_for(
    probe: Callable[[], Awaitable[T]], predicate: Callable[[T], bool],
    limit: float = 15.0, interval: float = 0.05, what: str = "a condition",
) -> T:
    """Poll `probe` until `predicate` holds of its value; fail with the last value seen."""
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


async def claim(
    db: asyncpg.Pool | asyncpg.Connection, queue: QueueInfo, limit: int = 10,
    lease: float = 30.0, worker: str = WORKER,
) -> list[ClaimedTask]:
    return await store.claim(db, queue.id, queue.full_name, worker, limit, lease)


async def finish(
    db: asyncpg.Pool, task: ClaimedTask, outcome: Outcome, *, result: Any = None,
    error: dict[str, Any] | None = None, worker: str = WORKER,
) -> str | None:
    """Record one attempt's outcome; returns the task's new state (None: the attempt was stale)."""
    if error is None and outcome != "succeeded":
        error = {"type": "Boom", "message": f"{outcome} on purpose"}
    states = await store.complete(db, worker, [Completion(
        task.queue_id, task.id, task.attempt_id, outcome,
        None if result is None else json.dumps(result),
        None if error is None else json.dumps(error),
    )])
    return states.get(task.id)


_task_queues: dict[int, int] = {}


async def queue_of(pool: asyncpg.Pool, task_id: int) -> int | None:
    """The id of the task's queue (None: no such task). Helpers address a task through its
    queue: a statement on taskq.tasks by id alone would lock every queue's partition and its
    indexes, which the test session's hundreds of queues turn into 'out of shared memory'
    (migration 0021). A remembered queue is checked first (one partition): tests on servers
    of their own reuse task ids, and a stale entry once sent a webhook test to another
    server's queue ("last: None")."""
    known = _task_queues.get(task_id)
    if known is not None and await pool.fetchval(
        "SELECT taskq.task_state(p_queue_id => $1, p_task_id => $2) IS NOT NULL", known, task_id
    ):
        return known
    queue_id = await task_store.find_task_queue(pool, task_id)
    if queue_id is None:
        return None
    _task_queues[task_id] = queue_id
    return queue_id


async def tasks_of(pool: asyncpg.Pool, task_id: int) -> str:
    """The task's partition of taskq.tasks (its name comes from an integer)."""
    queue_id = await queue_of(pool, task_id)
    assert queue_id is not None, f"task {task_id} not found"
    return f"taskq.tasks_q{queue_id}"


async def expire_lease(pool: asyncpg.Pool, task_id: int) -> None:
    """Make a running task's lease lapse now (as if its worker had stopped renewing it)."""
    await pool.execute(
        f"UPDATE {await tasks_of(pool, task_id)}"
        " SET lease_expires_at = now() - interval '1 second'"
        " WHERE id = $1 AND state = 'running'", task_id)


async def make_due(pool: asyncpg.Pool, task_id: int) -> None:
    """Bring a waiting (scheduled or retrying) task's run_at to now."""
    await pool.execute(
        f"UPDATE {await tasks_of(pool, task_id)} SET run_at = now() WHERE id = $1 "
        "AND state IN ('scheduled', 'retrying')", task_id)


async def task_row(pool: asyncpg.Pool, task_id: int) -> asyncpg.Record:
    row = await pool.fetchrow(f"SELECT * FROM {await tasks_of(pool, task_id)} WHERE id = $1",
                              task_id)
    assert row is not None, f"task {task_id} not found"
    return row


async def attempt_rows(pool: asyncpg.Pool, task_id: int) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT * FROM taskq.task_attempts(p_queue_id => $1, p_task_id => $2) ORDER BY attempt",
        await queue_of(pool, task_id), task_id))


def new_attempt_id() -> uuid.UUID:
    return uuid.uuid4()


@contextlib.asynccontextmanager
async def running_worker(
    dsn: str,
    registry: Registry,
    queues: list[str],
    store: Callable[[asyncpg.Pool, float], WorkerStore] = WorkerStore,
    **settings: Any,
) -> AsyncIterator[Worker]:
    """A real Worker serving `queues` in this event loop until the block ends (then a graceful
    stop, which the block may also trigger itself through `worker_stop`). `store` makes its
    database port from the pool and the call deadline (tests wrap it to inject faults)."""
    options: dict[str, Any] = {
        "poll_interval": 0.2, "maintenance_interval": 60.0, "shutdown_grace": 5.0,
        "concurrency": 10,
    }
    options.update(settings)
    worker_settings = WorkerSettings(dsn=dsn, queues=queues, app="unused", metrics_port=0,
                                     **options)
    # the worker's own pool: its sessions end a statement past the deadline server-side, so a
    # call the worker gave up on cannot commit later (a claim held up by a lock would)
    pool = await worker_pool(dsn, worker_settings.db_deadline, worker_settings.db_pool_mode)
    worker = Worker(
        pool, registry, worker_settings, f"test-{uuid.uuid4().hex[:8]}",
        db=store(pool, worker_settings.db_deadline),
    )
    stop = asyncio.Event()
    _stops[id(worker)] = stop
    runner = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        try:
            await asyncio.wait_for(runner, 60)
        finally:
            _stops.pop(id(worker), None)
            await pool.close()


_stops: dict[int, asyncio.Event] = {}


def worker_stop(worker: Worker) -> asyncio.Event:
    """The event that stops a worker started by running_worker."""
    return _stops[id(worker)]


async def task_state(pool: asyncpg.Pool, task_id: int) -> str | None:
    """The task's state (None once it is gone)."""
    queue_id = await queue_of(pool, task_id)
    if queue_id is None:
        return None
    state: str | None = await pool.fetchval(
        "SELECT taskq.task_state(p_queue_id => $1, p_task_id => $2)", queue_id, task_id)
    return state


async def wait_for_state(
    pool: asyncpg.Pool, task_id: int, *states: str, limit: float = 15.0
) -> asyncpg.Record:
    await wait_for(lambda: task_state(pool, task_id), lambda s: s in states, limit=limit,
                   what=f"task {task_id} to be {' or '.join(states)}")
    return await task_row(pool, task_id)
