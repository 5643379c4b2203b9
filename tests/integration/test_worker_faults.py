"""Faults in the worker's database calls, on a real PostgreSQL: every error class the loops can
meet (asyncpg's InternalClientError after a killed backend, a deadlock, a bug, a call that
hangs) is injected into claim, complete, heartbeat and maintenance through the worker's store
port (also its maintenance runner's port). No outcome is lost, claiming stops while outcomes
cannot be recorded, liveness says so, the loops go on, and a stopping worker still gives back
what it holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg
import pytest

from taskq.client import Client
from taskq.maintenance.runner import MaintenanceRunner
from taskq.models import BackoffPolicy
from taskq.store.types import Connection
from taskq.store.worker_store import WorkerStore
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker, WorkerFailedError
from taskq.worker.metrics import WorkerMetrics
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings
from tests.conftest import MakeQueue
from tests.integration.helpers import (
    attempt_rows,
    running_worker,
    task_state,
    wait_for,
    wait_for_state,
)

P = ParamSpec("P")
T = TypeVar("T")

KINDS = ["internal_client_error", "deadlock", "bug", "hang"]


def _error(kind: str) -> BaseException:
    return {
        "internal_client_error": asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        "deadlock": asyncpg.DeadlockDetectedError("deadlock detected"),
        "bug": RuntimeError("a bug on a rare path"),
    }[kind]


class FaultyStore(WorkerStore):
    """The real store; while a call's fault is on, that call fails on its acquired connection
    as asyncpg or a bug would make it fail (or hangs until the call's deadline)."""

    def __init__(self, pool: asyncpg.Pool, deadline: float) -> None:
        super().__init__(pool, deadline)
        self.faults: dict[str, str] = {}  # store function name -> kind
        self.hits: dict[str, int] = {}
        self.terminated = 0

    async def _execute(
        self,
        conn: Connection,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        kind = self.faults.get(call.__name__)
        if kind is not None:
            self.hits[call.__name__] = self.hits.get(call.__name__, 0) + 1
            try:
                if kind == "hang":
                    await asyncio.sleep(3600)
                raise _error(kind)
            finally:
                self.terminated += kind != "deadlock"  # only a server's answer keeps it
        return await super()._execute(conn, call, *args, **kwargs)


def _faulty() -> tuple[list[FaultyStore], Callable[[asyncpg.Pool, float], WorkerStore]]:
    made: list[FaultyStore] = []

    def make(pool: asyncpg.Pool, deadline: float) -> WorkerStore:
        made.append(FaultyStore(pool, deadline))
        return made[-1]

    return made, make


def _recording_registry(runs: list[int], seconds: float = 0.0) -> Registry:
    registry = Registry()

    @registry.task("work")
    async def work(ctx: TaskContext) -> int:
        runs.append(ctx.task_id)
        await asyncio.sleep(seconds)
        return ctx.task_id

    return registry


async def _lost_attempts(pool: asyncpg.Pool, ids: list[int]) -> int:
    lost: int = await pool.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE task_id = ANY($1) AND outcome = 'lost'", ids
    )
    return lost


async def _states(pool: asyncpg.Pool, ids: list[int]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) GROUP BY state", ids
    )
    return {row["state"]: row["n"] for row in rows}


@pytest.mark.parametrize("kind", KINDS)
async def test_outcomes_that_cannot_be_recorded_are_kept_and_stop_claiming(
    kind: str, dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    ids = [(await client.enqueue(queue.full_name, "work")).id for _ in range(60)]
    runs: list[int] = []
    made, store = _faulty()
    async with running_worker(
        dsn, _recording_registry(runs), [queue.full_name], store, concurrency=4, batch_size=4,
        lease_seconds=1.5, db_timeout=0.3, maintenance_interval=0.3,
    ) as worker:
        made[0].faults["complete"] = kind
        # outcomes pile up to the bound, then the worker stops claiming
        await wait_for(lambda: asyncio.sleep(0, worker.metrics.outcomes_pending()),
                       lambda n: n >= worker.max_pending_outcomes, what="outcomes to wait")
        await asyncio.sleep(1.0)
        started = len(runs)
        # the bound, the slots running when it was reached, and one claim in flight
        assert started <= worker.max_pending_outcomes + 4 + 4, runs
        await asyncio.sleep(0.5)
        assert len(runs) == started, "claimed on while outcomes could not be recorded"
        # no outcome was dropped: every finished attempt still waits in memory...
        pending = worker.metrics.outcomes_pending()
        assert pending == len(runs) - await pool.fetchval(
            "SELECT count(*) FROM taskq.tasks WHERE id = ANY($1) AND state = 'succeeded'", ids)
        # ...its task keeps its lease (renewed while outcomes wait), so no one runs it again
        problem = await wait_for(lambda: asyncio.sleep(0, worker.health_problem()), bool,
                                 limit=10, what="liveness to fail")
        assert problem is not None and "outcomes not recorded" in problem
        assert made[0].hits["complete"] >= 3  # retried, not given up
        del made[0].faults["complete"]
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 60},
                       limit=20, what="every task to succeed")
        assert worker.health_problem() is None
    assert sorted(runs) == sorted(ids), "a task ran twice or not at all"
    assert await _lost_attempts(pool, ids) == 0
    if kind != "deadlock":
        assert made[0].terminated >= 1  # the connection a failed call left in doubt is gone


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_claim_is_retried_with_backoff(
    kind: str, dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    runs: list[int] = []
    made, store = _faulty()
    async with running_worker(
        dsn, _recording_registry(runs), [queue.full_name], store, lease_seconds=3,
        db_timeout=0.3,
    ) as worker:
        made[0].faults["claim"] = kind
        ids = [(await client.enqueue(queue.full_name, "work")).id for _ in range(20)]
        await asyncio.sleep(1.5)
        assert runs == []
        # backing off from 25 ms: more than one try, far fewer than a busy loop would make
        assert 2 <= made[0].hits["claim"] <= 40, made[0].hits
        hits = made[0].hits["claim"]
        assert hits - 1 <= worker.metrics.db_errors["claim"] <= hits  # one may still hang
        del made[0].faults["claim"]
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 20},
                       limit=10, what="every task to succeed")
    assert sorted(runs) == sorted(ids)
    assert await _lost_attempts(pool, ids) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_lease_renewal_is_retried_before_the_lease_runs_out(
    kind: str, dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    runs: list[int] = []
    made, store = _faulty()
    enqueued = await client.enqueue(queue.full_name, "work")
    # lease 3 s, renewed every 1 s; other workers' maintenance would rescue an expired lease
    async with running_worker(
        dsn, _recording_registry(runs, seconds=5.0), [queue.full_name], store,
        lease_seconds=3, db_timeout=0.3, maintenance_interval=0.3,
    ) as worker:
        await wait_for(lambda: asyncio.sleep(0, runs), bool, what="the task to start")
        made[0].faults["heartbeat"] = kind
        await wait_for(lambda: asyncio.sleep(0, made[0].hits.get("heartbeat", 0)),
                       lambda n: n >= 2, what="lease renewals to fail")
        await asyncio.sleep(0.5)
        del made[0].faults["heartbeat"]
        row = await wait_for_state(pool, enqueued.id, "succeeded", limit=15)
        assert worker.metrics.lost_leases == 0
    assert runs == [enqueued.id], "the lease ran out under a running handler"
    assert row["attempts"] == 1
    assert [h["outcome"] for h in await attempt_rows(pool, enqueued.id)] == ["succeeded"]


@pytest.mark.parametrize("kind", KINDS)
async def test_maintenance_goes_on_after_it_fails(
    kind: str, dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(backoff=BackoffPolicy(base_seconds=0, jitter=0))
    runs: list[int] = []
    made, store = _faulty()
    enqueued = await client.enqueue(queue.full_name, "work")
    # a worker that claims and then vanishes, leaving a lease that runs out in a second
    await pool.fetch("SELECT * FROM taskq.claim($1, 'vanished', 1, 1.0)", queue.id)
    async with running_worker(
        dsn, _recording_registry(runs), [queue.full_name], store, maintenance_interval=0.2,
        lease_seconds=3, db_timeout=0.3,
    ):
        made[0].faults["rescue_expired"] = kind
        await wait_for(lambda: asyncio.sleep(0, made[0].hits.get("rescue_expired", 0)),
                       lambda n: n >= 3, what="maintenance to fail a few times")
        assert await task_state(pool, enqueued.id) == "running"
        del made[0].faults["rescue_expired"]
        await wait_for_state(pool, enqueued.id, "succeeded", limit=15)
    assert runs == [enqueued.id]
    assert [h["outcome"] for h in await attempt_rows(pool, enqueued.id)] == ["lost", "succeeded"]


async def test_a_hung_call_on_a_locked_partition_ends_at_its_deadline(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """A real hang, not an injected one: another session holds the queue's partition locked,
    so the claim waits on the lock until the worker's deadline cancels it."""
    queue = await make_queue()
    ids = [(await client.enqueue(queue.full_name, "work")).id for _ in range(10)]
    runs: list[int] = []
    async with pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(f"LOCK TABLE taskq.tasks_q{queue.id} IN ACCESS EXCLUSIVE MODE")
        async with running_worker(
            dsn, _recording_registry(runs), [queue.full_name], lease_seconds=3, db_timeout=0.3,
        ) as worker:
            await wait_for(lambda: asyncio.sleep(0, worker.metrics.db_errors.get("claim", 0)),
                           lambda n: n >= 2, what="claims to time out")
            assert runs == []
            await tx.rollback()
            await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 10},
                           limit=10, what="every task to succeed")
    assert sorted(runs) == sorted(ids)


async def test_a_claim_whose_reply_was_lost_gives_its_tasks_back(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """The claim commits, then the worker never hears of it (as when its backend is killed
    between commit and reply): the next claim first gives those tasks back, so they run now
    rather than after their lease."""

    class LosesOneReply(WorkerStore):
        lost = 0

        async def _execute(
            self,
            conn: Connection,
            call: Callable[Concatenate[Connection, P], Awaitable[T]],
            *args: P.args,
            **kwargs: P.kwargs,
        ) -> T:
            result = await super()._execute(conn, call, *args, **kwargs)
            if call.__name__ == "claim" and result and not self.lost:
                self.lost += 1
                raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
            return result

    queue = await make_queue()
    ids = [(await client.enqueue(queue.full_name, "work")).id for _ in range(5)]
    runs: list[int] = []
    started = time.monotonic()
    async with running_worker(
        dsn, _recording_registry(runs), [queue.full_name], LosesOneReply, lease_seconds=30,
    ):
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 5},
                       limit=10, what="every task to succeed")
    assert time.monotonic() - started < 20, "the tasks waited for their lease"
    assert sorted(runs) == sorted(ids)
    released = await pool.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE task_id = ANY($1) AND outcome = 'released'",
        ids)
    assert released == 5
    assert await _lost_attempts(pool, ids) == 0


async def test_a_stopping_worker_gives_back_its_tasks_when_outcomes_cannot_be_recorded(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """SIGTERM's path while `complete` keeps failing with a bug: the worker still gives back
    the task it holds, then reports the unrecorded outcomes as an error (exit status 1)."""
    queue = await make_queue()
    registry = Registry()

    @registry.task("quick")
    async def quick(ctx: TaskContext) -> None:
        return None

    @registry.task("stuck")
    async def stuck(ctx: TaskContext) -> None:
        await asyncio.sleep(3600)

    quick_ids = [(await client.enqueue(queue.full_name, "quick")).id for _ in range(3)]
    stuck_id = (await client.enqueue(queue.full_name, "stuck")).id
    settings = WorkerSettings(
        dsn=dsn, queues=[queue.full_name], app="unused", metrics_port=0, poll_interval=0.2,
        shutdown_grace=0.2, lease_seconds=3, db_timeout=0.3, maintenance_interval=60,
    )
    worker_pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert worker_pool is not None
    store = FaultyStore(worker_pool, settings.db_deadline)
    store.faults["complete"] = "bug"
    worker = Worker(worker_pool, registry, settings, f"test-{uuid.uuid4().hex[:8]}", db=store)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(lambda: _states(pool, [*quick_ids, stuck_id]),
                       lambda s: s == {"running": 4}, what="all four to be claimed")
        await wait_for(lambda: asyncio.sleep(0, worker.metrics.outcomes_pending()),
                       lambda n: n == 3, what="the quick ones to finish")
        stop.set()
        with pytest.raises(WorkerFailedError, match="3 outcomes could not be recorded"):
            await asyncio.wait_for(runner, 30)
    finally:
        await worker_pool.close()
    assert await task_state(pool, stuck_id) == "ready"
    history = await attempt_rows(pool, stuck_id)
    assert [h["outcome"] for h in history] == ["released"]


async def test_a_loop_that_ends_stops_the_worker_with_an_error(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """A loop that must run for the worker's life and returns is never left dead: the worker
    stops, gives back what it holds and reports which loop ended."""
    queue = await make_queue()

    class Ends(MaintenanceRunner):
        async def run(self) -> None:
            await asyncio.sleep(0.3)

    settings = WorkerSettings(dsn=dsn, queues=[queue.full_name], app="unused", metrics_port=0,
                              poll_interval=0.2, lease_seconds=3)
    worker_pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert worker_pool is not None
    metrics = WorkerMetrics()
    ends = Ends(WorkerStore(worker_pool, settings.db_deadline), [], metrics)
    worker = Worker(worker_pool, Registry(), settings, "test-ends", metrics, maintenance=ends)
    try:
        with pytest.raises(WorkerFailedError, match="the maintenance loop ended unexpectedly"):
            await asyncio.wait_for(worker.run(asyncio.Event()), 15)
    finally:
        await worker_pool.close()
    assert worker.health_problem() == "the maintenance loop ended unexpectedly"
