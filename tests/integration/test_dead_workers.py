"""A dead worker's tasks run again within seconds, not after their lease: every worker process
beats once a second, and one live worker's beat gives back the tasks of a worker whose beats
stopped (taskq.rescue_dead_workers). A worker that only pauses keeps its tasks."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from tests.conftest import MakeQueue
from tests.integration.helpers import wait_for
from tests.integration.test_crash_safety import RUNS_TABLE, Workers, wait_all_succeeded

LEASE = "30"  # long: a rescue within the test's bounds cannot be the lease's doing


def _workers(dsn: str, queue: str) -> Workers:
    group = Workers(dsn, queue)
    group.env.update({"TASKQ_LEASE_SECONDS": LEASE, "TASKQ_MAINTENANCE_INTERVAL": "60",
                      "TASKQ_CONCURRENCY": "4", "TASKQ_BATCH_SIZE": "4"})
    return group


async def _held_by(pool: asyncpg.Pool, ids: list[int]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT worker_id, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) "
        "AND state = 'running' GROUP BY worker_id", ids)
    return {row["worker_id"]: row["n"] for row in rows}


async def test_a_killed_workers_tasks_run_again_within_seconds(
    dsn: str, pool: asyncpg.Pool, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await pool.execute(RUNS_TABLE)
    group = _workers(dsn, queue.full_name)
    try:
        victim = group.spawn()
        ids = [r.id for r in await client.enqueue_many(
            queue.full_name, [TaskRequest("record", {"sleep": 3}) for _ in range(4)])]
        held = await wait_for(lambda: _held_by(pool, ids), lambda h: sum(h.values()) == 4,
                              what="the first worker to hold all four")
        (victim_id,) = held
        group.spawn()  # the survivor
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        await wait_all_succeeded(dsn, ids, timeout=25)
        took = time.monotonic() - killed_at
    finally:
        group.stop_all()
    # 3 s handlers, rescued after at most ~4 s of silence: well inside the 30 s lease
    assert took < 20, f"the tasks waited {took:.1f}s: as long as their lease"
    lost = await pool.fetch(
        "SELECT worker_id, error FROM taskq.attempts WHERE task_id = ANY($1) "
        "AND outcome = 'lost'", ids)
    assert len(lost) == 4
    assert {row["worker_id"] for row in lost} == {victim_id}
    assert {json.loads(row["error"])["type"] for row in lost} == {"WorkerDied"}
    # the dead worker's row is gone with its tasks
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.workers WHERE worker_id = $1", victim_id) == 0


async def test_a_paused_worker_keeps_its_tasks(
    dsn: str, pool: asyncpg.Pool, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await pool.execute(RUNS_TABLE)
    group = _workers(dsn, queue.full_name)
    try:
        sleeper = group.spawn()
        ids = [r.id for r in await client.enqueue_many(
            queue.full_name, [TaskRequest("record", {"sleep": 3}) for _ in range(4)])]
        await wait_for(lambda: _held_by(pool, ids), lambda h: sum(h.values()) == 4,
                       what="the worker to hold all four")
        group.spawn()  # another worker that would take them if the first looked dead
        sleeper.send_signal(signal.SIGSTOP)
        await asyncio.sleep(1.0)  # shorter than the three missed beats that mean dead
        sleeper.send_signal(signal.SIGCONT)
        await wait_all_succeeded(dsn, ids, timeout=25)
    finally:
        group.stop_all()
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE task_id = ANY($1)", ids) == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq_test_runs WHERE task_id = ANY($1)", ids) == 4


async def test_a_worker_claims_only_once_its_beat_is_recorded(
    dsn: str, pool: asyncpg.Pool, client: Client, make_queue: MakeQueue
) -> None:
    """A process that died holding tasks before its first beat was recorded left no row to
    be found dead by: its tasks waited out their lease (seen in CI under load). So a worker
    claims nothing until a beat naming its queues is recorded. The beat is held back here by
    a lock on the workers' table that its write must wait for."""
    queue = await make_queue()
    await pool.execute(RUNS_TABLE)
    ids = [r.id for r in await client.enqueue_many(
        queue.full_name, [TaskRequest("record", {}) for _ in range(3)])]
    group = _workers(dsn, queue.full_name)
    blocker = await asyncpg.connect(dsn)
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE taskq.workers IN SHARE MODE")
        worker = group.spawn()
        pid = f":{worker.pid}:"
        # the worker is up (its startup reads) and its beat waits for the lock
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%worker_beat%'"),
            lambda n: n >= 1, limit=60, what="the beat waiting for the lock")
        await asyncio.sleep(1.0)  # time enough for a claim, were one sent
        states = await pool.fetch("SELECT state FROM taskq.tasks WHERE id = ANY($1)", ids)
        await lock.rollback()
        assert {row["state"] for row in states} == {"ready"}
        await wait_all_succeeded(dsn, ids, timeout=60)
        # the process's delivery worker shares the beat: its queue is named too
        webhooks = await pool.fetchval(
            "SELECT id FROM taskq.queues WHERE namespace = 'taskq-system' AND name = 'webhooks'")
        await wait_for(
            lambda: pool.fetchval(
                "SELECT queue_ids FROM taskq.workers WHERE worker_id LIKE '%' || $1 || '%'",
                pid),
            lambda named: named == sorted([queue.id, webhooks]), what="a beat naming both queues")
    finally:
        await blocker.close()
        group.stop_all()


async def test_a_worker_that_stops_cleanly_leaves_no_row(
    dsn: str, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    group = _workers(dsn, queue.full_name)
    worker = group.spawn()
    pid = f":{worker.pid}:"
    try:
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) FROM taskq.workers WHERE worker_id LIKE '%' || $1 || '%'", pid),
            lambda n: n == 1, what="the worker's first beat")
    finally:
        group.stop_all()
    assert worker.returncode == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.workers WHERE worker_id LIKE '%' || $1 || '%'", pid) == 0


async def test_exactly_one_caller_takes_a_periodic_turn(dsn: str) -> None:
    conns = [await asyncpg.connect(dsn) for _ in range(12)]
    try:
        await conns[0].execute(
            "INSERT INTO taskq.duties (name) VALUES ('test_turn') ON CONFLICT DO NOTHING")
        rounds = []
        for _ in range(3):
            taken = await asyncio.gather(
                *(c.fetchval("SELECT taskq.take_turn('test_turn', 0.5)") for c in conns))
            rounds.append(sum(taken))
            await asyncio.sleep(0.6)
        again = await asyncio.gather(
            *(c.fetchval("SELECT taskq.take_turn('test_turn', 60)") for c in conns))
    finally:
        await conns[0].execute("DELETE FROM taskq.duties WHERE name = 'test_turn'")
        for c in conns:
            await c.close()
    assert rounds == [1, 1, 1]
    assert sum(again) == 0  # the period has not passed since the last turn


async def test_a_turn_being_taken_is_lost_at_once(dsn: str) -> None:
    """A caller finding the turn's row locked (its winner's transaction still runs) loses it
    without waiting: a thousand beats a second queued behind each turn before (migration 0028).
    The waiting connection's lock_timeout turns any wait into an error."""
    winner, other = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await winner.execute(
            "INSERT INTO taskq.duties (name) VALUES ('test_locked_turn') ON CONFLICT DO NOTHING")
        await other.execute("SET lock_timeout = '200ms'")
        async with winner.transaction():
            assert await winner.fetchval("SELECT taskq.take_turn('test_locked_turn', 0.001)")
            assert not await other.fetchval("SELECT taskq.take_turn('test_locked_turn', 0.001)")
        await asyncio.sleep(0.01)  # the period passed: free again
        assert await other.fetchval("SELECT taskq.take_turn('test_locked_turn', 0.001)")
    finally:
        await winner.execute("DELETE FROM taskq.duties WHERE name = 'test_locked_turn'")
        await winner.close()
        await other.close()


async def test_the_rescue_skips_a_silent_worker_that_is_beating(dsn: str) -> None:
    """A silent worker whose row a beat holds right now is alive: the rescue leaves its row
    rather than wait for that beat (which may be waiting for the rescue's turn: a deadlock)."""
    beating, rescuer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    late, gone = "test-late-beat", "test-gone"
    try:
        await rescuer.execute(
            "INSERT INTO taskq.workers (worker_id, dead_after_s, beat_at) VALUES"
            " ($1, 3, now() - interval '1 minute'), ($2, 3, now() - interval '1 minute')",
            late, gone)
        await rescuer.execute("SET lock_timeout = '200ms'")
        async with beating.transaction():
            await beating.execute(
                "UPDATE taskq.workers SET dead_after_s = 3 WHERE worker_id = $1", late)
            await rescuer.fetchval("SELECT taskq.rescue_dead_workers()")
        left = await rescuer.fetch(
            "SELECT worker_id FROM taskq.workers WHERE worker_id = ANY($1)", [late, gone])
    finally:
        await rescuer.execute("DELETE FROM taskq.workers WHERE worker_id = ANY($1)", [late, gone])
        await beating.close()
        await rescuer.close()
    assert [row["worker_id"] for row in left] == [late]


async def test_beats_learn_how_many_workers_poll_their_queues(
    dsn: str, make_queue: MakeQueue
) -> None:
    """The beat that takes the rescue turn counts the workers of each queue; every beat hears
    the count of its least served queue (their polls spread by it: claim_policy.poll_every)."""
    queue, other = await make_queue(), await make_queue()
    workers = [f"test-pollers-{n}" for n in range(3)]
    beat = "SELECT rescued, pollers FROM taskq.worker_beat($1, 3, $3, $2::integer[])"
    conn = await asyncpg.connect(dsn)

    async def pollers(worker: str, queues: list[int]) -> int | None:
        # a period of a millisecond: this beat takes the turn, and counts
        row = await conn.fetchrow(beat, worker, queues, 0.001)
        assert row is not None
        found: int | None = row["pollers"]
        return found

    try:
        for worker in workers:
            await conn.fetchrow(beat, worker, [queue.id], 3600.0)
        assert await wait_for(lambda: pollers(workers[0], [queue.id]), lambda n: n == 3,
                              what="three pollers") == 3
        # the least served of its queues: one worker serves the other one too
        assert await wait_for(lambda: pollers(workers[1], [queue.id, other.id]),
                              lambda n: n == 1, what="the other queue's one poller") == 1
        await conn.execute("DELETE FROM taskq.workers WHERE worker_id = ANY($1)", workers[1:])
        assert await wait_for(lambda: pollers(workers[0], [queue.id]), lambda n: n == 1,
                              what="one poller left") == 1
        # a queue no worker serves any more has no count
        assert await conn.fetchval(
            "SELECT count(*) FROM taskq.queue_pollers WHERE queue_id = $1", other.id) == 0
    finally:
        await conn.execute("DELETE FROM taskq.workers WHERE worker_id = ANY($1)", workers)
        await conn.close()


async def test_a_late_rescuer_grants_the_others_its_own_lateness(dsn: str) -> None:
    """When every beat comes late (the database or its pooler behind), the beat that takes the
    rescue turn was late too: a worker silent for less than dead_after plus that lateness is
    alive. A dead worker's silence keeps growing and it is found all the same."""
    conn = await asyncpg.connect(dsn)
    silent, late, timely = "test-silent-5s", "test-late-rescuer", "test-timely-rescuer"
    beat = "SELECT rescued FROM taskq.worker_beat($1, 3, 0.001)"
    try:
        await conn.execute(
            "INSERT INTO taskq.workers (worker_id, dead_after_s, beat_at) VALUES"
            " ($1, 3, now() - interval '5 s'), ($2, 3, now() - interval '10 s'),"
            " ($3, 3, now() - interval '1 s')", silent, late, timely)
        await conn.fetchval(beat, late)  # 10 s since its last: 9 s of grace, 5 s is not dead
        assert await conn.fetchval(
            "SELECT count(*) FROM taskq.workers WHERE worker_id = $1", silent) == 1
        await asyncio.sleep(0.01)  # the turn's period passed
        await conn.fetchval(beat, timely)  # on time: no grace
        assert await conn.fetchval(
            "SELECT count(*) FROM taskq.workers WHERE worker_id = $1", silent) == 0
    finally:
        await conn.execute(
            "DELETE FROM taskq.workers WHERE worker_id = ANY($1)", [silent, late, timely])
        await conn.close()
