"""An outage alone causes no rescue (issue 16, item 3; migration 0019): the time the database
was down does not count against a worker's beats or leases.

First on a real restart: a worker's tasks finish while PostgreSQL is down for longer than a
lease, and the rescues that run first once it is back (the worker's own maintenance and beat,
and another process's) must leave them to it. Then the rules one by one, on a fresh database of
the session's server, with the pause recorded by a turn whose previous one is dated before the
server started (as after a restart) and leases and beats dated around it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import asyncpg
import pytest
from devenv.postgres import LocalPostgres

from taskq import TaskContext, TaskRequest
from taskq.client import Client
from taskq.store.execution import Completion
from taskq.store.maintenance import ask_turn, rescue_expired
from taskq.store.migrations import migrate
from taskq.store.worker_store import WorkerStore
from taskq.worker.registry import Registry
from tests.conftest import fresh_database
from tests.integration.helpers import claim, running_worker, wait_for

LEASES = "rescue_expired_leases"
BEATS = "rescue_dead_workers"


class Gate:
    """Holds the worker's lease renewals and acknowledgements while closed: the test decides
    when the worker is back, after the first rescues had their chance."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def store(self, pool: asyncpg.Pool, deadline: float) -> WorkerStore:
        gate = self.open

        class Gated(WorkerStore):
            async def complete(self, worker_id: str, done: Sequence[Completion]) -> dict[int, str]:
                await gate.wait()
                return await super().complete(worker_id, done)

            async def heartbeat(
                self, queue_id: int, held: Sequence[tuple[int, uuid.UUID, str | None]],
                lease_s: float,
            ) -> dict[int, bool]:
                await gate.wait()
                return await super().heartbeat(queue_id, held, lease_s)

        return Gated(pool, deadline)


async def _counts(dsn: str, queue_id: int) -> tuple[int, int]:
    """(tasks succeeded, attempts lost) in the queue."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND state = 'succeeded')"
            " AS done, (SELECT count(*) FROM taskq.attempts WHERE queue_id = $1 "
            "AND outcome = 'lost') AS lost", queue_id)
        assert row is not None
        return row["done"], row["lost"]
    finally:
        await conn.close()


async def test_tasks_finished_during_a_restart_longer_than_a_lease_run_once() -> None:
    server = LocalPostgres.temporary()
    server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        await migrate(conn)
        await conn.close()
        client = Client(await asyncpg.create_pool(server.dsn, min_size=1, max_size=2))
        queue = await client.ensure_queue("outage/q")
        await client.enqueue_many(queue.full_name, [TaskRequest("slow", {}) for _ in range(8)])
        await client.pool.close()
        runs: dict[int, int] = {}
        registry = Registry()

        @registry.task("slow")
        async def slow(ctx: TaskContext) -> None:
            runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
            await asyncio.sleep(1.0)

        gate = Gate()
        async with running_worker(
            server.dsn, registry, [queue.full_name], store=gate.store, concurrency=8,
            # a lease long enough that a loaded machine's restart leaves some of it: the pause
            # grants a lease what it had left when the database went (heartbeats every 4 s)
            lease_seconds=12, db_timeout=1, maintenance_interval=0.5,
        ):
            await wait_for(lambda: asyncio.sleep(0, len(runs)), lambda n: n == 8,
                           what="every task to start")
            server.stop("fast")
            gate.open.clear()
            await asyncio.sleep(13)  # longer than a lease; every handler finished meanwhile
            server.start()
            # another process's rescues, first thing: a beat and a maintenance turn
            conn = await asyncpg.connect(server.dsn)
            try:
                assert await conn.fetchval(
                    "SELECT rescued FROM taskq.worker_beat('other', 3, 1)") == 0
                if not (await ask_turn(conn, LEASES, 0.5)).taken:
                    # the worker's maintenance holds the turn, and records the pause as its
                    # statement commits (a turn being taken is lost at once, not waited for)
                    await wait_for(lambda: conn.fetchval(
                        "SELECT resumed_at >= pg_postmaster_start_time() FROM taskq.duties"
                        " WHERE name = $1", LEASES), bool, what="the pause recorded")
                assert await rescue_expired(conn, queue.id) == 0
            finally:
                await conn.close()
            await asyncio.sleep(1.0)  # the worker's own beat and maintenance take turns too
            gate.open.set()
            _, lost = await wait_for(lambda: _counts(server.dsn, queue.id),
                                     lambda c: c[0] == 8, what="every task to succeed")
        assert lost == 0
        assert runs == dict.fromkeys(runs, 1) and len(runs) == 8
    finally:
        server.destroy()


@pytest.fixture
async def restarted(pg: LocalPostgres) -> AsyncIterator[asyncpg.Pool]:
    """A fresh database whose rescue duties last ran a minute before the server started:
    their next turns find a restart in between."""
    dsn = await fresh_database(pg, "taskq_outage")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert pool is not None
    await pool.execute(
        "INSERT INTO taskq.duties (name, last_run_at) "
        "SELECT unnest($1::text[]), pg_postmaster_start_time() - interval '1 minute' "
        "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at", [LEASES, BEATS])
    yield pool
    await pool.close()


async def _task_held(pool: asyncpg.Pool, worker: str, lease_expires_at: str) -> int:
    """A task claimed by `worker` whose lease runs out at the SQL expression given."""
    client = Client(pool)
    queue = await client.ensure_queue(f"outage/{uuid.uuid4().hex[:8]}")
    await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue, worker=worker)
    await pool.execute(
        f"UPDATE taskq.tasks SET lease_expires_at = {lease_expires_at} WHERE id = $1", task.id)
    return queue.id


async def _pause(pool: asyncpg.Pool, duty: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT paused_at, resumed_at, pg_postmaster_start_time() AS started, now() AS now "
        "FROM taskq.duties WHERE name = $1", duty)
    assert row is not None
    return row


async def test_the_first_turn_after_a_restart_records_the_pause(restarted: asyncpg.Pool) -> None:
    assert (await ask_turn(restarted, LEASES, 5.0)).taken
    pause = await _pause(restarted, LEASES)
    assert pause["paused_at"] < pause["started"] <= pause["resumed_at"] <= pause["now"]
    # a later turn, its previous one long ago but after the server started: no new pause
    await restarted.execute("UPDATE taskq.duties SET last_run_at = pg_postmaster_start_time() "
                            "WHERE name = $1", LEASES)
    assert (await ask_turn(restarted, LEASES, 0.001)).taken
    again = await _pause(restarted, LEASES)
    assert (again["paused_at"], again["resumed_at"]) == (pause["paused_at"], pause["resumed_at"])


async def test_a_lease_run_out_during_the_pause_keeps_what_it_had_left(
    restarted: asyncpg.Pool,
) -> None:
    assert (await ask_turn(restarted, LEASES, 5.0)).taken
    # the paused_at turn came 60 s before the server started; a lease that had 20 s left then
    during = await _task_held(
        restarted, "live", "(SELECT paused_at + interval '20 s' FROM taskq.duties "
        f"WHERE name = '{LEASES}')")
    assert await rescue_expired(restarted, during) == 0
    # ... is rescued 20 s after the database came back
    await restarted.execute("UPDATE taskq.duties SET resumed_at = now() - interval '21 s' "
                            "WHERE name = $1", LEASES)
    assert await rescue_expired(restarted, during) == 1


async def test_a_lease_run_out_before_the_pause_is_rescued_at_once(
    restarted: asyncpg.Pool,
) -> None:
    assert (await ask_turn(restarted, LEASES, 5.0)).taken
    before = await _task_held(
        restarted, "dead-before", "(SELECT paused_at - interval '1 s' FROM taskq.duties "
        f"WHERE name = '{LEASES}')")
    assert await rescue_expired(restarted, before) == 1


async def test_silence_counts_from_the_restart_not_from_the_last_beat(
    restarted: asyncpg.Pool,
) -> None:
    queue_id = await _task_held(restarted, "quiet", "now() + interval '1 hour'")
    await restarted.execute(  # its last beat came just before the server went down
        "INSERT INTO taskq.workers (worker_id, beat_at, dead_after_s) "
        "VALUES ('quiet', pg_postmaster_start_time() - interval '61 s', 3)")
    assert await restarted.fetchval("SELECT rescued FROM taskq.worker_beat('other', 3, 1)") == 0
    assert (await _pause(restarted, BEATS))["resumed_at"] is not None
    # still silent 3 s after the database came back: dead
    await restarted.execute("UPDATE taskq.duties SET resumed_at = now() - interval '4 s' "
                            "WHERE name = $1", BEATS)
    assert await restarted.fetchval(
        "SELECT rescued FROM taskq.worker_beat('other', 3, 0.001)") == 1
    assert await restarted.fetchval(
        "SELECT state FROM taskq.tasks WHERE queue_id = $1", queue_id) == "ready"


async def test_a_duty_that_never_ran_takes_the_pause_from_the_last_sign_of_the_old_server(
    pg: LocalPostgres,
) -> None:
    """The lease duty had no turn before the outage (a worker that claimed at once and lost
    the database within its first maintenance period): the pause starts at the last turn of
    another duty or the last beat, whichever is later."""
    dsn = await fresh_database(pg, "taskq_outage")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute(
            "INSERT INTO taskq.duties (name, last_run_at) VALUES "
            "($1, '-infinity'), ($2, pg_postmaster_start_time() - interval '2 minutes') "
            "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at", LEASES, BEATS)
        await pool.execute(
            "INSERT INTO taskq.workers (worker_id, beat_at, dead_after_s) "
            "VALUES ('w', pg_postmaster_start_time() - interval '1 minute', 30)")
        assert (await ask_turn(pool, LEASES, 5.0)).taken
        pause = await _pause(pool, LEASES)
        assert pause["paused_at"] == pause["started"] - timedelta(minutes=1)
        assert pause["started"] <= pause["resumed_at"] <= pause["now"]
    finally:
        await pool.close()


async def test_a_database_first_used_by_this_server_records_no_pause(pg: LocalPostgres) -> None:
    dsn = await fresh_database(pg, "taskq_outage")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute("INSERT INTO taskq.duties (name) VALUES ($1) ON CONFLICT DO NOTHING",
                           LEASES)
        assert (await ask_turn(pool, LEASES, 5.0)).taken
        pause = await _pause(pool, LEASES)
        assert (pause["paused_at"], pause["resumed_at"]) == (None, None)
    finally:
        await pool.close()
