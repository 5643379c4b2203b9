"""Maintenance on a real PostgreSQL: the Rescuer and the Pruner cover every queue of the
database; however many runners share a database, each service runs once per period, by one
of them (taskq.take_turn); when one stops the others go on; a runner whose database fails
recovers; and every worker runs one, for queues it does not serve too."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg

from taskq import BackoffPolicy, TaskRequest
from taskq.client import Client
from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics
from taskq.maintenance.pruner import Pruner
from taskq.maintenance.rescuer import Rescuer
from taskq.maintenance.runner import MaintenanceRunner, Service
from taskq.store.maintenance import MaintenanceStore
from taskq.store.types import Connection
from taskq.worker.context import TaskContext
from taskq.worker.registry import Registry
from tests.conftest import MakeQueue
from tests.integration.helpers import (
    attempt_rows,
    claim,
    expire_lease,
    running_worker,
    task_state,
    wait_for,
    wait_for_state,
)

P = ParamSpec("P")
T = TypeVar("T")
Runs = list[tuple[str, float]]  # who ran a service, when (monotonic)

PERIOD = 0.3
# take_turn compares the database's clock, runs are timed with this process's: a few ms apart
CLOCKS = 0.03


@dataclass
class Counts:
    """The metrics port, counted in memory."""

    turns: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    rescues: dict[str, int] = field(default_factory=dict)
    purges: int = 0
    ticks: dict[str, int] = field(default_factory=dict)
    dispatched: int = 0

    def turn_taken(self, service: str) -> None:
        self.turns[service] = self.turns.get(service, 0) + 1

    def maintenance_failed(self, service: str) -> None:
        self.failures[service] = self.failures.get(service, 0) + 1

    def rescued(self, cause: str, count: int) -> None:
        self.rescues[cause] = self.rescues.get(cause, 0) + count

    def purged(self, count: int) -> None:
        self.purges += count

    def schedule_ticks(self, outcome: str, count: int) -> None:
        self.ticks[outcome] = self.ticks.get(outcome, 0) + count

    def webhooks_dispatched(self, count: int) -> None:
        self.dispatched += count


@dataclass
class Recorded:
    """A service that notes who ran it when (a duty of its own, new to the database)."""

    name: str
    who: str
    runs: Runs
    period: float = PERIOD

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        self.runs.append((self.who, time.monotonic()))
        return 1


class FailingStore(MaintenanceStore):
    """The real store; every call fails while `failing` is set, as a lost database would."""

    failing = False

    async def _execute(
        self,
        conn: Connection,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self.failing:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return await super()._execute(conn, call, *args, **kwargs)


@contextlib.asynccontextmanager
async def running(runner: MaintenanceRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _runner(pool: asyncpg.Pool, service: Service, store: MaintenanceStore | None = None,
            metrics: Counts | None = None) -> MaintenanceRunner:
    return MaintenanceRunner(store or MaintenanceStore(pool, 2.0), [service], metrics or Counts())


def _duty() -> str:
    return f"test_{uuid.uuid4().hex[:8]}"


def _gaps(runs: Runs) -> list[float]:
    return [b - a for (_, a), (_, b) in itertools.pairwise(runs)]


async def test_rescuer_and_pruner_cover_every_queue(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queues = [await make_queue(retention_succeeded_seconds=0,
                               backoff=BackoffPolicy(base_seconds=0, jitter=0))
              for _ in range(2)]
    held, canceled = [], []
    for queue in queues:
        held.append((await client.enqueue(queue.full_name, "t")).id)
        (task,) = await claim(pool, queue, worker="crashed")
        await expire_lease(pool, task.id)
        canceled.append((await client.enqueue(queue.full_name, "t")).id)
        await client.cancel(canceled[-1])
    store, counts = MaintenanceStore(pool, 5.0), Counts()

    assert await Rescuer(PERIOD).run_once(store, counts) >= 2
    assert await Pruner(PERIOD).run_once(store, counts) >= 2

    for task_id in held:
        assert await task_state(pool, task_id) == "retrying"
        assert [h["outcome"] for h in await attempt_rows(pool, task_id)] == ["lost"]
    for task_id in canceled:
        assert await pool.fetchval("SELECT count(*) FROM taskq.tasks WHERE id = $1", task_id) == 0
    assert counts.rescues["lease_expired"] >= 2
    assert counts.purges >= 2


async def test_two_runners_run_each_service_once_per_period(pool: asyncpg.Pool) -> None:
    duty, runs = _duty(), Runs()
    first, second = Counts(), Counts()
    async with (
        running(_runner(pool, Recorded(duty, "first", runs), metrics=first)),
        running(_runner(pool, Recorded(duty, "second", runs), metrics=second)),
    ):
        await asyncio.sleep(3.0)
    assert all(gap >= PERIOD - CLOCKS for gap in _gaps(runs)), _gaps(runs)  # never twice
    assert all(gap <= 2 * PERIOD for gap in _gaps(runs)), _gaps(runs)  # never skipped
    assert 3.0 / (2 * PERIOD) <= len(runs) <= 3.0 / PERIOD + 1, runs
    assert first.turns.get(duty, 0) + second.turns.get(duty, 0) == len(runs)
    assert first.failures == second.failures == {}


async def test_when_one_runner_stops_the_other_takes_over(pool: asyncpg.Pool) -> None:
    duty, runs = _duty(), Runs()
    async with running(_runner(pool, Recorded(duty, "first", runs))) as first:
        await wait_for(lambda: asyncio.sleep(0, runs), lambda r: len(r) >= 2,
                       what="the first runner to run alone")
        async with running(_runner(pool, Recorded(duty, "second", runs))):
            await asyncio.sleep(2 * PERIOD)
            first.cancel()  # dies: it holds nothing, so there is nothing to fail over
            stopped_at = time.monotonic()
            await asyncio.sleep(4 * PERIOD)
    assert runs[0][0] == "first"
    assert {who for who, at in runs if at > stopped_at} == {"second"}, runs
    assert len([at for _, at in runs if at > stopped_at]) >= 3, runs
    # the takeover comes within a period or two, not after a lease-like timeout (generous: a
    # bound of two periods failed once on a quiet machine)
    assert all(gap <= 4 * PERIOD for gap in _gaps(runs)), _gaps(runs)


async def test_a_runner_whose_database_fails_recovers(pool: asyncpg.Pool) -> None:
    duty, runs = _duty(), Runs()
    store, counts = FailingStore(pool, 2.0), Counts()
    store.failing = True
    async with running(_runner(pool, Recorded(duty, "only", runs), store, counts)):
        await wait_for(lambda: asyncio.sleep(0, counts.failures.get(duty, 0)),
                       lambda n: n >= 3, what="turns to fail")
        assert runs == []
        store.failing = False
        await wait_for(lambda: asyncio.sleep(0, runs), lambda r: len(r) >= 2, limit=5,
                       what="runs after the database came back")
    assert counts.turns[duty] == len(runs)


async def test_a_worker_rescues_in_queues_it_does_not_serve(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    served, other = await make_queue(), await make_queue()
    (enqueued,) = await client.enqueue_many(other.full_name, [TaskRequest("t")])
    await pool.fetch("SELECT * FROM taskq.claim($1, 'vanished', 1, 0.5)", other.id)
    registry = Registry()

    @registry.task("t")
    async def handler(ctx: TaskContext) -> None:
        return None

    async with running_worker(dsn, registry, [served.full_name],
                              maintenance_interval=0.2) as worker:
        await wait_for_state(pool, enqueued.id, "retrying", "ready")
        assert worker.metrics.rescues["lease_expired"] >= 1
        assert worker.metrics.maintenance_turns[Rescuer.name] >= 1
    assert [h["outcome"] for h in await attempt_rows(pool, enqueued.id)] == ["lost"]
