"""Claims resume where the worker's last one left off (issue 18, item 3): under a held snapshot
a resumed claim reads in proportion to its batch while a claim from the front walks every task
claimed since; every path that makes tasks ready says, in its notification, where in claim
order they are, and a worker claims them even when they sit before its resume point."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from taskq import TaskRequest
from taskq.claim_order import ResumePoint
from taskq.client import Client
from taskq.models import QueueInfo
from taskq.store import execution as store
from taskq.store.notifications import READY_CHANNEL, parse_ready
from taskq.store.types import Connection
from taskq.worker.context import TaskContext
from taskq.worker.registry import Registry
from tests.conftest import MakeQueue
from tests.integration.helpers import WORKER, claim, running_worker, wait_for
from tests.integration.test_claim_plan import BATCH, claim_plans, nodes


def resume_after(tasks: list[store.ClaimedTask]) -> ResumePoint:
    return ResumePoint(tasks[-1].priority, tasks[-1].run_at, tasks[-1].id)


async def walked(conn: Connection, queue_id: int, resume: ResumePoint | None) -> int:
    """Buffers the claim's walk of the ready index read (index and heap pages), one claim of
    BATCH tasks."""
    plans = await claim_plans(conn, queue_id, resume)
    claim = next(p for p in plans if "state = 'running'" in p["Query Text"])
    (scan,) = [n for n in nodes(claim["Plan"]) if n.get("Index Name", "").endswith("run_at_id_idx")]
    return int(scan["Shared Hit Blocks"]) + int(scan["Shared Read Blocks"])


async def test_under_a_held_snapshot_a_resumed_claim_reads_in_proportion_to_its_batch(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {"n": n}) for n in range(20_000)]
    )
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT 1 FROM taskq.queues LIMIT 1")  # takes the snapshot
        resume = None
        async with pool.acquire() as conn:
            for _ in range(150):  # 15,000 tasks claimed while the snapshot keeps their versions
                resume = resume_after(await store.claim(conn, queue.id, queue.full_name, WORKER,
                                                        BATCH, 30, False, resume))
            resumed = await walked(conn, queue.id, resume)
            from_front = await walked(conn, queue.id, None)
    finally:
        await holder.close()
    # a batch's index entries and heap pages (about 40 rows a page), a few times over
    assert resumed < BATCH, (resumed, from_front)
    # the front walk visits the 15,000 claimed tasks' index entries and heap pages
    assert from_front > 10 * resumed, (from_front, resumed)


async def test_a_resumed_claim_takes_nothing_before_its_point_but_what_is_due_now(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await client.enqueue(queue.full_name, "t", {"n": 1})
    await client.enqueue(queue.full_name, "t", {"n": 2}, delay=0.05)  # due before the point
    await asyncio.sleep(0.1)
    later = await client.enqueue(queue.full_name, "t", {"n": 3})
    row = await pool.fetchrow("SELECT priority, run_at FROM taskq.tasks WHERE id = $1", later.id)
    assert row is not None
    point = ResumePoint(row["priority"], row["run_at"])
    async with pool.acquire() as conn:
        # the due task is made ready by this claim, which therefore starts no later than it
        got = await store.claim(conn, queue.id, queue.full_name, WORKER, 10, 30, True, point)
        assert [t.payload_json for t in got] == ['{"n": 2}', '{"n": 3}']
        # the first task lies before the point: only a claim from the front takes it
        assert await store.claim(conn, queue.id, queue.full_name, WORKER, 10, 30, True, point) == []
        (front,) = await store.claim(conn, queue.id, queue.full_name, WORKER, 10, 30, True, None)
    assert front.id == first.id


@pytest.fixture
async def notifications(dsn: str) -> AsyncIterator[list[tuple[int, ResumePoint | None]]]:
    received: list[tuple[int, ResumePoint | None]] = []

    def listener(_conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        parsed = parse_ready(str(payload))
        assert parsed is not None, payload
        received.append(parsed)

    conn = await asyncpg.connect(dsn)
    await conn.add_listener(READY_CHANNEL, listener)
    try:
        yield received
    finally:
        await conn.close()


async def first_ready(pool: asyncpg.Pool, queue: QueueInfo) -> ResumePoint:
    """The point just before the queue's first ready task in claim order."""
    row = await pool.fetchrow(
        "SELECT priority, run_at FROM taskq.tasks WHERE queue_id = $1 AND state = 'ready'"
        " ORDER BY priority DESC, run_at, id LIMIT 1",
        queue.id,
    )
    assert row is not None
    return ResumePoint(row["priority"], row["run_at"])


async def told(received: list[tuple[int, ResumePoint | None]], queue: QueueInfo) -> ResumePoint:
    """The one notification of the queue that said where tasks became ready."""

    async def points() -> int:
        return sum(q == queue.id and p is not None for q, p in received)

    await wait_for(points, lambda n: n > 0, limit=5, what="a notification")
    (point,) = [p for q, p in received if q == queue.id and p is not None]
    received.clear()
    return point


def not_after(point: ResumePoint, first: ResumePoint) -> bool:
    return not first.before(point)


@pytest.mark.parametrize("count", [3, 200])  # the SQL function, and COPY
async def test_an_enqueue_tells_a_point_no_later_than_its_first_task(
    client: Client,
    pool: asyncpg.Pool,
    make_queue: MakeQueue,
    notifications: list[tuple[int, ResumePoint | None]],
    count: int,
) -> None:
    queue = await make_queue()
    priorities = [n % 7 * 10 for n in range(count)]
    requests = [TaskRequest("t", {"n": n}, priority=p) for n, p in enumerate(priorities)]
    await client.enqueue_many(queue.full_name, requests)
    point = await told(notifications, queue)
    assert point.priority == max(priorities)
    assert not_after(point, await first_ready(pool, queue))


async def test_release_replay_and_rescue_tell_where_their_tasks_are(
    client: Client,
    pool: asyncpg.Pool,
    make_queue: MakeQueue,
    notifications: list[tuple[int, ResumePoint | None]],
) -> None:
    queue = await make_queue(max_attempts=3)
    await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {"n": n}, priority=70 - n) for n in range(3)]
    )
    await told(notifications, queue)
    held = await claim(pool, queue, limit=3)
    # release: the tasks keep their run_at, long before anything enqueued since
    await client.enqueue(queue.full_name, "t", {"n": "later"})
    await told(notifications, queue)
    released = await pool.fetchval(
        "SELECT taskq.release($1, $2, $3, $4)",
        queue.id,
        WORKER,
        [t.id for t in held],
        [t.attempt_id for t in held],
    )
    assert released == 3
    assert await told(notifications, queue) == await first_ready(pool, queue)
    # rescue of a dead worker's tasks
    dead = f"dead-{uuid.uuid4().hex[:8]}"
    held = await claim(pool, queue, limit=2, worker=dead)
    await pool.execute(
        "INSERT INTO taskq.workers (worker_id, beat_at, dead_after_s) VALUES ($1, now() - "
        "interval '1 hour', 1)",
        dead,
    )
    assert await pool.fetchval("SELECT taskq.rescue_dead_workers()") == 2
    assert await told(notifications, queue) == await first_ready(pool, queue)
    # replay of dead tasks
    await pool.execute("UPDATE taskq.tasks SET state = 'dead', finished_at = now(),"
                       " error = '{}' WHERE queue_id = $1 AND state = 'ready'", queue.id)
    await pool.fetch("SELECT * FROM taskq.replay_dead($1)", queue.id)
    point = await told(notifications, queue)
    assert not_after(point, await first_ready(pool, queue))
    assert point.priority == 70


async def test_a_worker_claims_tasks_released_before_its_resume_point(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Tasks another worker gives back keep their place near the front of the queue, behind
    where this worker's claims resume: the release's notification moves it back."""
    queue = await make_queue()
    registry = Registry()
    ran: list[Any] = []

    async def runs() -> int:
        return len(ran)

    @registry.task("t")
    async def handler(ctx: TaskContext) -> None:
        ran.append(ctx.payload["n"])

    await client.enqueue_many(queue.full_name, [TaskRequest("t", {"n": n}) for n in range(5)])
    held = await claim(pool, queue, limit=5)  # held by another, as if it were stopping
    async with running_worker(
        dsn, registry, [queue.full_name], poll_interval=30.0, lease_seconds=90.0
    ):
        await asyncio.sleep(0.3)  # listening
        more = [TaskRequest("t", {"n": n}) for n in range(5, 10)]
        await client.enqueue_many(queue.full_name, more)
        await wait_for(runs, lambda n: n == 5, limit=10)  # its claims now resume after those
        await pool.fetchval(
            "SELECT taskq.release($1, 'test-worker', $2, $3)",
            queue.id,
            [t.id for t in held],
            [t.attempt_id for t in held],
        )
        # well before the poll (30 s) or a claim from the front (RESUME_REFRESH, 10 s)
        await wait_for(runs, lambda n: n == 10, limit=5)
    assert sorted(ran) == list(range(10))


