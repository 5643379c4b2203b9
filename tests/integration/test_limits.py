"""Queue limits that hold across workers: concurrency limit and rate limit."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.store import execution as store
from taskq.store.execution import Completion
from tests.conftest import MakeQueue
from tests.integration.helpers import claim


async def test_concurrency_limit_holds_across_claimers(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    limit = 5
    queue = await make_queue(concurrency_limit=limit)
    total = 120
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * total)
    over_limit: list[int] = []
    done: list[int] = []

    async def claimer(number: int) -> None:
        conn = await asyncpg.connect(dsn)
        worker = f"w{number}"
        try:
            while len(done) < total:
                batch = await store.claim(conn, queue.id, queue.full_name, worker, 3, 60)
                running = await conn.fetchval(
                    "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND state = 'running'",
                    queue.id)
                if running > limit:
                    over_limit.append(running)
                await asyncio.sleep(0.002)
                if batch:
                    await store.complete(conn, worker, [
                        Completion(t.queue_id, t.id, t.attempt_id, "succeeded") for t in batch])
                    done.extend(t.id for t in batch)
                else:
                    await asyncio.sleep(0.005)
        finally:
            await conn.close()

    await asyncio.wait_for(asyncio.gather(*(claimer(n) for n in range(6))), 60)
    assert over_limit == []
    assert sorted(done) == sorted(set(done))
    assert len(done) == total


async def test_concurrency_limit_frees_slots_as_tasks_finish(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(concurrency_limit=2)
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 5)
    first = await claim(pool, queue, limit=10)
    assert len(first) == 2
    assert await claim(pool, queue, limit=10) == []
    await store.complete(pool, "test-worker", [
        Completion(first[0].queue_id, first[0].id, first[0].attempt_id, "succeeded")])
    assert len(await claim(pool, queue, limit=10)) == 1


async def test_rate_limit_bounds_claims_over_time(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    rate, burst = 20.0, 5.0
    queue = await make_queue(rate_limit_per_second=rate, rate_burst=burst)
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 200)
    started = time.monotonic()
    claimed = 0
    history: list[tuple[float, int]] = []
    while time.monotonic() - started < 1.0:
        claimed += len(await claim(pool, queue, limit=50))
        history.append((time.monotonic() - started, claimed))
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    assert claimed > burst  # the bucket refills
    # never more than the burst plus what the rate allowed so far (slack: one token)
    for at, count in history:
        assert count <= burst + rate * at + 1, history
    assert claimed <= burst + rate * elapsed + 1


async def test_rate_limit_first_claim_gets_the_burst(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(rate_limit_per_second=0.5, rate_burst=3)
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 10)
    assert len(await claim(pool, queue, limit=10)) == 3
    assert await claim(pool, queue, limit=10) == []


async def test_rate_limit_without_a_burst_starts_from_a_full_bucket(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Without rate_burst the bucket holds one second of the rate; a new (or changed) limit
    starts full, as taskq.ensure_queue promises."""
    queue = await make_queue(rate_limit_per_second=8)
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 30)
    assert len(await claim(pool, queue, limit=30)) == 8
    assert len(await claim(pool, queue, limit=30)) <= 1
