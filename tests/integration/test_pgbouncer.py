"""taskq through a real PgBouncer in transaction pooling (TASKQ_DB_POOL_MODE=transaction):
migrations, the producer Client and the CLI, the worker's whole cycle (claim, complete, retry,
lease renewal, cancellation, maintenance's rescue, shutdown, a `taskq worker` process), and many
workers sharing the pooler's few server connections. Everything through the pooler runs on
server connections other clients used before and will use next, so a statement relying on
session state (a cached prepared statement, a setting, LISTEN, a session lock) fails here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from devenv.pgbouncer import LocalPgBouncer
from devenv.postgres import LocalPostgres

from taskq import BackoffPolicy, TaskContext, TaskRequest
from taskq.client import Client, connect
from taskq.models import QueueInfo, QueueSettings
from taskq.store.codecs import learn_types
from taskq.store.sqlfiles import migrations, queries
from taskq.worker.loop import Worker, shutdown_bound
from taskq.worker.main import EXIT_MARGIN
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings
from tests.conftest import PGBOUNCER_POOL_SIZE, fresh_database
from tests.integration.helpers import (
    attempt_rows,
    claim,
    running_worker,
    wait_for,
    wait_for_state,
    worker_stop,
)
from tests.integration.test_cli import ok, one_line_error, taskq

REPO = Path(__file__).resolve().parents[2]
DATABASE = "taskq_pooled"  # reached through the pooler only, so its backends are the pooler's
POOLED: dict[str, Any] = {"db_pool_mode": "transaction", "listen": False}


@pytest.fixture(scope="module")
async def pooled_dsn(pg: LocalPostgres, pgbouncer: LocalPgBouncer) -> str:
    await fresh_database(pg, DATABASE, migrated=False)
    dsn = pgbouncer.dsn(DATABASE)
    async with await connect(dsn, pool_mode="transaction") as client:
        await client.migrate()
    return dsn


@pytest.fixture
async def pooled(pooled_dsn: str) -> AsyncIterator[Client]:
    async with await connect(pooled_dsn, max_size=4, pool_mode="transaction") as client:
        yield client


_numbers = iter(range(1, 1_000_000))


async def _queue(client: Client, **settings: object) -> QueueInfo:
    return await client.ensure_queue(f"p{next(_numbers)}/q", QueueSettings(**settings))


async def _server_connections(pg: LocalPostgres, database: str) -> int:
    """Backends of `database`: only the pooler connects to it."""
    conn = await asyncpg.connect(pg.dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database)
        return count
    finally:
        await conn.close()


def _no_database_errors(worker: Worker) -> None:
    """Every call worked the first time: a call relying on session state fails whenever the
    pooler lends another server connection (the worker would retry it and carry on)."""
    assert worker.metrics.db_errors == {}


async def test_the_pooler_sets_nothing_before_a_taskq_statement(
    pg: LocalPostgres, pgbouncer: LocalPgBouncer
) -> None:
    """PgBouncer sends SET for each startup parameter whose value differs from the server
    connection's before lending it. asyncpg announces client_encoding as 'utf-8', which
    never equals PostgreSQL's UTF8: a SET before every transaction, doubling the statements.
    taskq's connections spell it as the server does. Seen in the server's statement log."""
    database = "taskq_encoding"
    await fresh_database(pg, database, migrated=False)
    admin = await asyncpg.connect(pg.dsn)
    try:
        await admin.execute(f"ALTER DATABASE {database} SET log_statement = 'all'")
    finally:
        await admin.close()
    log = pg.datadir / "server.log"

    async def statements(run: Any) -> tuple[int, int]:
        """Runs 10 marked statements through the pooler; returns how many the server logged
        and how many SETs of client_encoding it logged meanwhile."""
        marker = f"encoding-check-{next(_numbers)}"
        start = log.stat().st_size
        await run(marker)
        logged = ""
        for _ in range(50):  # the server writes its log a moment later
            with log.open(errors="replace") as f:
                f.seek(start)
                logged = f.read()
            if logged.count(marker) >= 10:
                break
            await asyncio.sleep(0.1)
        return logged.count(marker), logged.count("SET client_encoding")

    async def bare(marker: str) -> None:  # asyncpg's own startup parameters
        conns = [await asyncpg.connect(pgbouncer.dsn(database), statement_cache_size=0)
                 for _ in range(2)]
        try:
            for n in range(5):
                await asyncio.gather(*(c.fetchval(f"SELECT '{marker}', {n}") for c in conns))
        finally:
            for c in conns:
                await c.close()

    async def ours(marker: str) -> None:
        async with await connect(pgbouncer.dsn(database), max_size=2,
                                 pool_mode="transaction") as client:
            for n in range(5):
                await asyncio.gather(*(client.pool.fetchval(f"SELECT '{marker}', {n + m}")
                                       for m in range(2)))

    seen, sets = await statements(bare)
    assert seen == 10 and sets > 0  # what taskq avoids: the pooler's SET is real
    seen, sets = await statements(ours)
    assert (seen, sets) == (10, 0)


async def test_migrations_run_through_the_pooler_twice_at_once(
    pg: LocalPostgres, pgbouncer: LocalPgBouncer
) -> None:
    """The migration lock lasts a transaction: a session lock would stay with whichever server
    connection took it, and the next run on that connection would wait for ever."""
    await fresh_database(pg, "taskq_pooled_migrate", migrated=False)
    dsn = pgbouncer.dsn("taskq_pooled_migrate")
    clients = [await connect(dsn, pool_mode="transaction") for _ in range(2)]
    try:
        applied = await asyncio.gather(*(c.migrate() for c in clients))
        assert sorted(applied[0] + applied[1]) == [
            f"{m.version:04d}_{m.name}" for m in migrations()]
        assert await clients[0].migrate() == []
        versions = await clients[0].pool.fetchval("SELECT count(*) FROM taskq.schema_migrations")
        assert versions == len(migrations())
    finally:
        for client in clients:
            await client.close()


async def test_the_client_produces_and_administers_through_the_pooler(pooled: Client) -> None:
    queue = await _queue(pooled)
    first = await pooled.enqueue(queue.full_name, "t", {"n": 1}, idempotency_key="k1")
    again = await pooled.enqueue(queue.full_name, "t", {"n": 2}, idempotency_key="k1")
    assert (again.id, again.created) == (first.id, False)
    copied = await pooled.enqueue_many(  # enough for COPY, in a transaction of its own
        queue.full_name, [TaskRequest("t", {"n": n}) for n in range(100)])
    assert len({r.id for r in copied}) == 100
    async with pooled.pool.acquire() as conn:
        async with conn.transaction():
            kept = await pooled.enqueue(queue.full_name, "t", connection=conn)
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                await pooled.enqueue(queue.full_name, "t", connection=conn)
                raise RuntimeError("roll back")
    stats = await pooled.queue_stats(queue.full_name)
    assert stats.ready == 102
    assert (await pooled.get_task(kept.id)).state == "ready"
    page = await pooled.list_tasks(queue.full_name, limit=5)  # newest first
    assert [t.id for t in page] == [kept.id, *sorted((r.id for r in copied), reverse=True)[:4]]
    assert (await pooled.cancel(first.id)).state == "canceled"
    assert await pooled.schema_version() == len(migrations())


async def test_the_cli_reads_the_pool_mode(pooled_dsn: str, pooled: Client) -> None:
    queue = await _queue(pooled)
    env = {"TASKQ_DB_POOL_MODE": "transaction"}
    ok(await taskq("migrate", dsn=pooled_dsn, env=env))
    ok(await taskq("enqueue", queue.full_name, "t", "{}", dsn=pooled_dsn, env=env))
    assert (await pooled.queue_stats(queue.full_name)).ready == 1
    run = await taskq("queue", "stats", queue.full_name, dsn=pooled_dsn,
                      env={"TASKQ_DB_POOL_MODE": "statement"})
    one_line_error(run, "TASKQ_DB_POOL_MODE", "session or transaction")


def _registry(attempts: dict[int, int]) -> Registry:
    registry = Registry()

    @registry.task("add")
    async def add(ctx: TaskContext) -> int:
        return int(ctx.payload["a"]) + int(ctx.payload["b"])

    @registry.task("flaky")
    async def flaky(ctx: TaskContext) -> str:
        attempts[ctx.task_id] = ctx.attempt
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    @registry.task("sleep")
    async def sleep(ctx: TaskContext) -> str:
        await asyncio.sleep(float(ctx.payload["seconds"]))
        return "slept"

    return registry


async def test_a_worker_runs_and_retries_through_the_pooler(
    pooled_dsn: str, pooled: Client
) -> None:
    queue = await _queue(pooled, backoff=BackoffPolicy(kind="fixed", base_seconds=0.1, jitter=0))
    adds = await pooled.enqueue_many(
        queue.full_name, [TaskRequest("add", {"a": n, "b": 1}) for n in range(300)])
    flaky = await pooled.enqueue(queue.full_name, "flaky")
    attempts: dict[int, int] = {}
    async with running_worker(
        pooled_dsn, _registry(attempts), [queue.full_name], **POOLED
    ) as worker:
        await wait_for_state(pooled.pool, flaky.id, "succeeded")
        for result in (adds[0], adds[-1]):
            await wait_for_state(pooled.pool, result.id, "succeeded")
    _no_database_errors(worker)
    assert (await pooled.get_task(adds[7].id)).result == 8
    assert (await pooled.queue_stats(queue.full_name)).ready == 0
    history = await attempt_rows(pooled.pool, flaky.id)
    assert [row["outcome"] for row in history] == ["failed", "succeeded"]
    assert attempts[flaky.id] == 2


async def test_leases_are_renewed_and_cancellations_arrive_through_the_pooler(
    pooled_dsn: str, pooled: Client
) -> None:
    """Without LISTEN a cancellation arrives with the next lease renewal."""
    queue = await _queue(pooled)
    long = await pooled.enqueue(queue.full_name, "sleep", {"seconds": 5})  # 2.5 leases
    doomed = await pooled.enqueue(queue.full_name, "sleep", {"seconds": 600})
    async with running_worker(pooled_dsn, _registry({}), [queue.full_name], lease_seconds=2,
                              **POOLED) as worker:
        await wait_for_state(pooled.pool, doomed.id, "running")
        await pooled.cancel(doomed.id)
        await wait_for_state(pooled.pool, doomed.id, "canceled")
        await wait_for_state(pooled.pool, long.id, "succeeded")
    _no_database_errors(worker)
    assert [row["outcome"] for row in await attempt_rows(pooled.pool, long.id)] == ["succeeded"]


async def test_maintenance_rescues_expired_leases_through_the_pooler(
    pooled_dsn: str, pooled: Client
) -> None:
    queue = await _queue(pooled, backoff=BackoffPolicy(kind="fixed", base_seconds=0, jitter=0))
    lost = await pooled.enqueue(queue.full_name, "add", {"a": 1, "b": 2})
    # a worker that claimed it and vanished without a beat: only its lease tells
    (taken,) = await claim(pooled.pool, queue, lease=1.0, worker="ghost")
    assert taken.id == lost.id
    async with running_worker(pooled_dsn, _registry({}), [queue.full_name],
                              maintenance_interval=0.3, **POOLED) as worker:
        await wait_for_state(pooled.pool, lost.id, "succeeded")
    _no_database_errors(worker)
    history = await attempt_rows(pooled.pool, lost.id)
    assert [row["outcome"] for row in history] == ["lost", "succeeded"]
    assert history[0]["worker_id"] == "ghost"


async def test_a_stopping_worker_gives_back_its_tasks_through_the_pooler(
    pooled_dsn: str, pooled: Client
) -> None:
    queue = await _queue(pooled)
    stuck = await pooled.enqueue(queue.full_name, "sleep", {"seconds": 600})
    async with running_worker(pooled_dsn, _registry({}), [queue.full_name],
                              shutdown_grace=0.2, **POOLED) as worker:
        await wait_for_state(pooled.pool, stuck.id, "running")
        worker_stop(worker).set()
    _no_database_errors(worker)
    assert (await pooled.get_task(stuck.id)).state == "ready"
    assert [row["outcome"] for row in await attempt_rows(pooled.pool, stuck.id)] == ["released"]
    gone = await pooled.pool.fetchval(
        "SELECT NOT EXISTS (SELECT FROM taskq.workers WHERE worker_id = $1)", worker.worker_id)
    assert gone


async def test_a_taskq_worker_process_through_the_pooler(pooled_dsn: str, pooled: Client) -> None:
    """`taskq worker` as a pod runs it: drains, then exits cleanly on SIGTERM."""
    queue = await _queue(pooled)
    tasks = await pooled.enqueue_many(
        queue.full_name, [TaskRequest("sleep", {"seconds": 0.05}) for _ in range(40)])
    env = {"TASKQ_APP": "tests.integration.apps.sleeping", "TASKQ_CONCURRENCY": "8",
           "TASKQ_POLL_INTERVAL": "0.2", "TASKQ_SHUTDOWN_GRACE": "1", "TASKQ_METRICS_PORT": "0",
           "TASKQ_DB_POOL_MODE": "transaction", "TASKQ_LISTEN": "false",
           "TASKQ_DSN": pooled_dsn, "TASKQ_QUEUES": queue.full_name}
    settings = WorkerSettings.model_validate(
        {k.removeprefix("TASKQ_").lower(): v for k, v in env.items()})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq.cli.main", "worker", cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        for task in (tasks[0], tasks[-1]):
            await wait_for_state(pooled.pool, task.id, "succeeded", limit=30)
        process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), shutdown_bound(settings) + EXIT_MARGIN)
        assert process.stderr is not None
        assert status == 0, (await process.stderr.read()).decode(errors="replace")[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (await pooled.queue_stats(queue.full_name)).ready == 0


async def test_many_workers_share_the_poolers_few_server_connections(
    pg: LocalPostgres, pooled_dsn: str, pooled: Client
) -> None:
    """30 workers (each a pool of 2-4 connections and a beat's) through a pooler lending at
    most PGBOUNCER_POOL_SIZE server connections: the database never sees more."""
    queue = await _queue(pooled)
    tasks = await pooled.enqueue_many(
        queue.full_name, [TaskRequest("sleep", {"seconds": 0.02}) for _ in range(600)])
    seen: list[int] = []
    workers = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(30):
            workers.append(await stack.enter_async_context(running_worker(
                pooled_dsn, _registry({}), [queue.full_name], concurrency=2, batch_size=2,
                **POOLED)))

        async def drained() -> int:
            seen.append(await _server_connections(pg, DATABASE))
            ready: int = await pooled.pool.fetchval(
                "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND state <> 'succeeded'",
                queue.id)
            return ready

        await wait_for(drained, lambda left: left == 0, limit=60, interval=0.02,
                       what="every task to succeed")
    assert 1 <= max(seen) <= PGBOUNCER_POOL_SIZE, seen
    for worker in workers:
        _no_database_errors(worker)
    took_part = await pooled.pool.fetchval(
        "SELECT count(DISTINCT worker_id) FROM taskq.tasks WHERE id = ANY($1)",
        [t.id for t in tasks])
    # many of the 30 did (not all: the first started drain much of it, and the others poll
    # less often the more of them poll: claim_policy.poll_every)
    assert took_part >= 10


async def test_no_session_state_is_left_on_the_poolers_server_connections(
    pooled_dsn: str, pooled: Client
) -> None:
    """After workers and producers on fresh connections (asyncpg looks types up on each), every
    server connection the pooler lends is as it was: JIT as configured, no prepared statement,
    no LISTEN, no advisory lock."""
    queue = await _queue(pooled)
    async with contextlib.AsyncExitStack() as stack:
        producers = [await stack.enter_async_context(
            await connect(pooled_dsn, pool_mode="transaction")) for _ in range(8)]
        for _ in range(8):
            await stack.enter_async_context(running_worker(
                pooled_dsn, _registry({}), [queue.full_name], concurrency=4, batch_size=4,
                **POOLED))
        results = await asyncio.gather(*(p.enqueue_many(
            queue.full_name, [TaskRequest("add", {"a": n, "b": 0}) for n in range(20)])
            for p in producers))
        for done in results:
            await wait_for_state(pooled.pool, done[-1].id, "succeeded")
    # as many transactions open at once as the pooler has server connections: one on each
    held = [await pooled.pool.acquire() for _ in range(PGBOUNCER_POOL_SIZE)]
    try:
        states = []
        for conn in held:
            await conn.execute("BEGIN")
            row = await conn.fetchrow(
                "SELECT pg_backend_pid(), current_setting('jit'),"
                " (SELECT count(*) FROM pg_prepared_statements),"
                " (SELECT count(*) FROM pg_listening_channels()),"
                " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                "  AND pid = pg_backend_pid())")
            assert row is not None
            states.append(tuple(row))
        for conn in held:
            await conn.execute("ROLLBACK")
    finally:
        for conn in held:
            await pooled.pool.release(conn)
    assert len({state[0] for state in states}) == PGBOUNCER_POOL_SIZE
    assert [state[1:] for state in states] == [("on", 0, 0, 0)] * PGBOUNCER_POOL_SIZE


class _Counting(asyncpg.Connection):
    """Counts asyncpg's type lookups (its private hook: test code only)."""

    lookups = 0

    async def _introspect_types(self, typeoids: Any, timeout: Any) -> Any:
        _Counting.lookups += 1
        return await super()._introspect_types(typeoids, timeout)  # type: ignore[misc]


async def test_learn_types_covers_every_query(dsn: str) -> None:
    """After learn_types, no named query makes asyncpg look a type up: learn_types holds every
    type of theirs asyncpg has no codec for."""
    conn = await asyncpg.connect(dsn, connection_class=_Counting, statement_cache_size=0)
    try:
        await learn_types(conn)
        before = _Counting.lookups
        for name, text in queries().items():
            await conn.prepare(text)
            assert _Counting.lookups == before, f"query {name} has a type learn_types lacks"
    finally:
        await conn.close()
