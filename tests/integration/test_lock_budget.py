"""Statements whose locks do not grow with the number of queues. Lookups by task id alone
(Client.get_task, task_attempts, cancel: `taskq tasks show`, the API's GET /v1/tasks/{id}, waits
and watches) hold a bounded number of locks, whatever the number of queues (migration 0021); so
do the statements of one queue (0022) and a dead worker's rescue (0023). Before, each planned
every queue's partition and its indexes (9 locks per queue) and held them to its end: at a few
hundred queues a few of them at once filled PostgreSQL's shared lock table and every transaction
failed with 'out of shared memory'.

The queues here live on a server of their own whose lock table is far smaller than one such
statement needs (checked first), so every statement below would fail if it locked every
partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from devenv.postgres import LocalPostgres

from taskq import UnknownTaskError
from taskq.client import Client
from taskq.store import execution
from taskq.store import schedules as schedule_store
from taskq.store import tasks as task_store
from taskq.store.sqlfiles import query
from taskq.store.types import Connection
from tests.conftest import fresh_database

QUEUES = 300
# 10 locks per transaction x (10 connections + the server's own processes): a few hundred
# entries, against the 9 x 300 that one statement over every partition takes.
SMALL_LOCK_TABLE = {"max_connections": "10", "max_locks_per_transaction": "10"}
# The relation locks one statement of a known queue may hold: its tasks partition and 8
# indexes, its attempts partition and primary key, the queues table and 2 indexes, some in two
# modes (FOR UPDATE), against 9 per queue (2,700 here) when every partition is planned.
BOUND = 30
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a window of every creation time
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
UNKNOWN = 2**62


@dataclass
class Queues:
    dsn: str
    tasks: dict[int, int]  # queue id -> its task's id


@pytest.fixture(scope="module")
async def queues() -> AsyncIterator[Queues]:
    server = LocalPostgres.temporary(settings=SMALL_LOCK_TABLE)
    server.start()
    try:
        dsn = await fresh_database(server, "lookup_by_id")
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        assert pool is not None
        client = Client(pool)
        tasks = {}
        for n in range(QUEUES):
            queue = await client.ensure_queue(f"n{n}/q")
            tasks[queue.id] = (await client.enqueue(queue.full_name, "t", {"n": n})).id
        await pool.close()
        yield Queues(dsn, tasks)
    finally:
        server.destroy()


@pytest.fixture
async def pool(queues: Queues) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(queues.dsn, min_size=1, max_size=6)
    assert created is not None
    yield created
    await created.close()


async def relation_locks(conn: Connection) -> dict[str, int]:
    """This backend's relation locks: how many ("held"), and how many outside its fast-path
    slots ("shared": those take entries of the shared lock table)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS held, count(*) FILTER (WHERE NOT fastpath) AS shared FROM pg_locks"
        " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
        "   AND relation <> 'pg_locks'::regclass"
    )
    assert row is not None
    return {"held": row["held"], "shared": row["shared"]}


async def test_a_statement_by_id_alone_runs_this_lock_table_out(pool: asyncpg.Pool) -> None:
    """The server reproduces the failure: what every lookup below would meet if it planned
    every partition."""
    with pytest.raises(asyncpg.OutOfMemoryError, match="out of shared memory"):
        await pool.fetchrow("SELECT * FROM taskq.task_details WHERE id = $1", UNKNOWN)


async def test_a_task_is_found_in_any_queue(pool: asyncpg.Pool, queues: Queues) -> None:
    client = Client(pool)
    ids = sorted(queues.tasks)
    for queue_id in (ids[0], ids[len(ids) // 2], ids[-1]):
        task_id = queues.tasks[queue_id]
        task = await client.get_task(task_id)
        assert (task.id, task.state, task.payload) == (task_id, "ready", {"n": ids.index(queue_id)})
        assert await client.task_attempts(task_id) == []
        assert await task_store.find_task_queue(pool, task_id) == queue_id


async def test_an_unknown_id_is_no_task(pool: asyncpg.Pool) -> None:
    client = Client(pool)
    with pytest.raises(UnknownTaskError):
        await client.get_task(UNKNOWN)
    with pytest.raises(UnknownTaskError):
        await client.cancel(UNKNOWN)
    assert await client.task_attempts(UNKNOWN) == []
    assert await task_store.find_task_queue(pool, UNKNOWN) is None


async def test_lookups_at_once_fit_the_lock_table(pool: asyncpg.Pool, queues: Queues) -> None:
    """Misses (every queue probed) and hits in the oldest queues (nearly every queue probed),
    six at a time, from clients that remember nothing."""
    oldest = sorted(queues.tasks)[:6]

    async def lookup(task_id: int) -> int | None:
        try:
            return (await Client(pool).get_task(task_id)).id
        except UnknownTaskError:
            return None

    found = await asyncio.gather(
        *(lookup(queues.tasks[q]) for q in oldest), *(lookup(UNKNOWN + n) for n in range(6))
    )
    assert found == [queues.tasks[q] for q in oldest] + [None] * 6


async def test_cancel_finds_the_task_and_a_schedule_looks_in_its_queue(
    pool: asyncpg.Pool, queues: Queues
) -> None:
    queue_id = sorted(queues.tasks)[1]
    task_id = queues.tasks[queue_id]
    namespace = await pool.fetchval("SELECT namespace FROM taskq.queues WHERE id = $1", queue_id)
    assert await schedule_store.task_state(pool, namespace, "q", task_id) == "ready"
    assert await schedule_store.task_state(pool, "n-none", "q", task_id) is None
    result = await Client(pool).cancel(task_id)
    assert (result.state, result.cancel_requested) == ("canceled", False)
    assert await schedule_store.task_state(pool, namespace, "q", task_id) == "canceled"


async def test_a_statement_of_a_known_queue_locks_that_queue_only(
    pool: asyncpg.Pool, queues: Queues
) -> None:
    queue_id = sorted(queues.tasks)[2]
    task_id = queues.tasks[queue_id]
    reads = [
        (query("get_task"), (queue_id, task_id), 1),
        (query("task_attempts"), (queue_id, task_id), 0),
        (query("cancel_task"), (queue_id, task_id), 1),
        (query("task_state"), ("n2", "q", task_id), 1),
        # statements of one queue, lookups by id or not
        (query("task_states_locked"), (queue_id, [task_id]), 1),
        (query("task_traceparents"), (queue_id, [task_id]), 0),
        (query("list_dead"), (queue_id, 10), 0),
        (query("list_tasks"), (queue_id, None, None, None, EARLIEST, LATEST, 2**63 - 1, 10), 1),
        (query("queue_tasks_by_id"), ("n2/q", [task_id]), 1),
        # the dashboard's charts (migration 0024); rows: minutes, not checked
        (query("queue_throughput_minutes"), (queue_id, 60), None),
        (query("queue_throughput"), (queue_id, datetime.now(UTC) - timedelta(minutes=5)), None),
        (query("queue_wait"), (queue_id, 60, 200), None),
        # the task search by error text and the bulk actions (0031); each task here has no
        # error: no match, and a walk that reaches the queue's first task (no last row)
        (query("list_tasks_by_error"),
         (queue_id, None, None, None, EARLIEST, LATEST, 2**63 - 1, 10, "boom", 100), 0),
        (query("cancel_many"), (queue_id, [task_id, UNKNOWN]), 1),
        (query("retry_many"), (queue_id, [task_id]), 1),
    ]
    async with pool.acquire() as conn:
        for sql, args, rows in reads:
            # more runs than asyncpg's prepared statement takes before a generic plan is tried
            for _ in range(8):
                transaction = conn.transaction()
                await transaction.start()
                try:
                    found = await conn.fetch(sql, *args)
                    assert rows is None or len(found) == rows
                    assert (await relation_locks(conn))["held"] <= BOUND, sql
                finally:
                    await transaction.rollback()


async def test_a_probe_fits_a_backends_fast_path_slots(pool: asyncpg.Pool, queues: Queues) -> None:
    """One probe locks one partition and its indexes: few enough for the backend's 16 fast-path
    slots, so find_task_queue, which commits after each probe, never takes an entry of the
    shared lock table."""
    queue_id = sorted(queues.tasks)[3]
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT taskq.task_queue_among(p_task_id => $1, p_queue_ids => ARRAY[$2::int])",
            queues.tasks[queue_id],
            queue_id,
        )
        assert found == queue_id
        locks = await relation_locks(conn)
    assert 0 < locks["held"] <= 16
    assert locks["shared"] == 0


async def test_a_queue_gone_is_skipped(pool: asyncpg.Pool, queues: Queues) -> None:
    queue_id = max(queues.tasks)
    found = await pool.fetchval(
        "SELECT taskq.task_queue_among(p_task_id => $1, p_queue_ids => ARRAY[$2::int, $3::int])",
        queues.tasks[queue_id],
        queue_id + 1_000_000,  # no such queue, no such partition
        queue_id,
    )
    assert found == queue_id


async def test_inside_a_transaction_the_lookup_probes_without_committing(
    pool: asyncpg.Pool, queues: Queues
) -> None:
    """A procedure cannot commit inside a transaction block: CALLed there it fails, and the
    store probes with task_queue_among instead, whose probes stay locked until the end (the
    newest queue's task is found at the first)."""
    newest = max(queues.tasks)
    async with pool.acquire() as conn:
        async with conn.transaction():
            with pytest.raises(asyncpg.InvalidTransactionTerminationError):
                await conn.fetchval(query("find_task_queue"), queues.tasks[newest])
        async with conn.transaction():
            assert await task_store.find_task_queue(conn, queues.tasks[newest]) == newest
            assert (await relation_locks(conn))["held"] <= BOUND
        # outside a transaction a connection CALLs the procedure
        assert await task_store.find_task_queue(conn, queues.tasks[newest]) == newest
        assert not conn.is_in_transaction()


async def test_a_dead_workers_tasks_are_rescued_from_its_own_queues(
    pool: asyncpg.Pool, queues: Queues
) -> None:
    """Before migration 0023 the rescue read and updated taskq.tasks across every partition
    in one transaction: on this server, 'out of shared memory'."""
    queue_id = sorted(queues.tasks)[7]
    async with pool.acquire() as conn:
        [claimed] = await execution.claim(conn, queue_id, "n7/q", "w-gone", 1, 3600.0)
        # its beat says where it claims; its silence, three seconds, makes it dead
        await conn.execute(
            "SELECT rescued FROM taskq.worker_beat('w-gone', 3, 86400, ARRAY[$1::integer])",
            queue_id)
        await conn.execute(
            "UPDATE taskq.workers SET beat_at = now() - interval '1 minute'"
            " WHERE worker_id = 'w-gone'")
        transaction = conn.transaction()
        await transaction.start()
        try:
            assert await conn.fetchval("SELECT taskq.rescue_dead_workers()") == 1
            # one queue's tasks and attempts partitions with their indexes, and the small
            # tables (workers, duties, queues): 38 measured, against about 11 per queue before
            assert (await relation_locks(conn))["held"] <= 2 * BOUND
        finally:
            await transaction.commit()
        info = await task_store.get_task(conn, queue_id, claimed.id)
        assert info is not None and info.state == "ready"
        assert await conn.fetchval(
            "SELECT count(*) FROM taskq.workers WHERE worker_id = 'w-gone'") == 0
