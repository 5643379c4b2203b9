"""Claiming: exclusive under concurrency, in priority order, honouring delays and pauses."""

from __future__ import annotations

import asyncio
import collections

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.models import QueueSettings
from taskq.store import execution as store
from tests.conftest import MakeQueue
from tests.integration.helpers import WORKER, claim, finish, make_due, wait_for


async def test_concurrent_claimers_never_share_a_task(
    dsn: str, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    total = 3_000
    await client.enqueue_many(queue.full_name, [TaskRequest("t", {"n": n}) for n in range(total)])

    async def claimer(number: int) -> list[int]:
        conn = await asyncpg.connect(dsn)
        got: list[int] = []
        try:
            while True:
                batch = await store.claim(conn, queue.id, queue.full_name, f"w{number}", 20, 60)
                if not batch:
                    return got
                assert len(batch) <= 20
                got.extend(t.id for t in batch)
        finally:
            await conn.close()

    per_claimer = await asyncio.gather(*(claimer(n) for n in range(8)))
    everything = [task_id for ids in per_claimer for task_id in ids]
    doubles = [i for i, count in collections.Counter(everything).items() if count > 1]
    assert doubles == []
    assert len(everything) == total
    stats = await client.queue_stats(queue.full_name)
    assert (stats.ready, stats.running) == (0, total)


async def test_claim_marks_the_task_running_under_a_lease(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(timeout_seconds=42)
    enqueued = await client.enqueue(queue.full_name, "t", {"a": 1}, correlation_id="c-1",
                                    idempotency_key="k-1")
    (claimed,) = await claim(pool, queue, lease=10)
    assert (claimed.id, claimed.task_name, claimed.attempt) == (enqueued.id, "t", 1)
    assert (claimed.timeout_s, claimed.correlation_id) == (42, "c-1")
    assert claimed.idempotency_key == "k-1"
    task = await client.get_task(enqueued.id)
    assert (task.state, task.attempts, task.worker_id) == ("running", 1, "test-worker")
    assert task.attempt_id == str(claimed.attempt_id)
    assert task.lease_expires_at is not None
    assert task.started_at is not None
    lease = (task.lease_expires_at - task.started_at).total_seconds()
    assert 9 <= lease <= 11
    assert await claim(pool, queue) == []


async def test_higher_priority_first_then_fifo(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    priorities = [10, 50, 90, 50, 10, 90, 50]
    results = await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {"n": n}, priority=p) for n, p in enumerate(priorities)]
    )
    order = [t.id for t in await claim(pool, queue, limit=3)]
    order += [t.id for t in await claim(pool, queue, limit=100)]
    ids = [r.id for r in results]
    assert order == [ids[2], ids[5], ids[1], ids[3], ids[6], ids[0], ids[4]]


async def test_fifo_within_a_priority_across_producer_connections(
    client: Client, dsn: str, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Producers on different connections: claim order is the order tasks were enqueued."""
    queue = await make_queue()
    producers = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        enqueued = []
        for n in range(12):
            conn = producers[n % 3]
            enqueued.append((await client.enqueue(queue.full_name, "t", {"n": n},
                                                  connection=conn)).id)
    finally:
        for conn in producers:
            await conn.close()
    claimed = [t.id for t in await claim(pool, queue, limit=100)]
    assert claimed == enqueued


async def test_delayed_tasks_wait_for_their_time(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    later = await client.enqueue(queue.full_name, "t", delay=0.3)
    now = await client.enqueue(queue.full_name, "t")
    assert [t.id for t in await claim(pool, queue)] == [now.id]
    assert await claim(pool, queue) == []
    stats = await client.queue_stats(queue.full_name)
    assert (stats.scheduled, stats.ready) == (1, 0)
    claimed = await wait_for(lambda: claim(pool, queue), bool, limit=10,
                             what="the delayed task to become claimable")
    assert [t.id for t in claimed] == [later.id]
    task = await client.get_task(later.id)
    assert task.started_at is not None
    assert task.started_at >= task.run_at


async def test_a_claim_told_not_to_promote_leaves_due_tasks_waiting(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    delayed = await client.enqueue(queue.full_name, "t", delay=3600)
    await make_due(pool, delayed.id)
    assert await store.claim(pool, queue.id, queue.full_name, WORKER, 10, 30, False) == []
    assert (await client.get_task(delayed.id)).state == "scheduled"
    (task,) = await store.claim(pool, queue.id, queue.full_name, WORKER, 10, 30, True)
    assert task.id == delayed.id


async def test_due_tasks_count_as_ready_in_stats(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t", delay=0.2)
    await wait_for(lambda: client.queue_stats(queue.full_name), lambda s: s.ready == 1,
                   what="the delayed task to count as ready")
    stats = await client.queue_stats(queue.full_name)
    assert stats.scheduled == 0
    assert stats.oldest_ready_at is not None


async def test_paused_queue_yields_nothing_until_resumed(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(paused=True)
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 5)
    assert await claim(pool, queue) == []
    await client.ensure_queue(queue.full_name, QueueSettings(paused=False))
    assert len(await claim(pool, queue)) == 5


async def test_claim_of_a_dropped_queue_or_zero_limit_is_empty(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t")
    assert await claim(pool, queue, limit=0) == []
    assert await client.drop_queue(queue.full_name)
    assert await claim(pool, queue) == []
    assert not await client.drop_queue(queue.full_name)


async def test_reclaim_after_success_is_impossible(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    assert await finish(pool, task, "succeeded", result={"ok": True}) == "succeeded"
    assert await claim(pool, queue) == []
    info = await client.get_task(task.id)
    assert (info.state, info.result, info.error) == ("succeeded", {"ok": True}, None)
    assert info.finished_at is not None
    assert info.lease_expires_at is None
