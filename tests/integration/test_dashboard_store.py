"""What the dashboard reads beside the queues (migration 0024), on the real PostgreSQL: the
worker pools the operator records (taskq.worker_pools), and a queue's throughput and wait per
minute."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from taskq.client import BULK_BATCH, Client
from taskq.errors import InvalidArgumentError
from taskq.models import (
    BulkCancelResult,
    BulkRetryResult,
    ErrorSearch,
    PoolReport,
    QueueInfo,
    ScalingDecision,
    TaskRequest,
)
from taskq.store.pools import KEPT_DECISIONS
from taskq_operator.databases import POOL_SIZE, QueueDatabase
from taskq_operator.status_pace import ReadingPace
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def report(
    name: str, queues: tuple[str, ...], desired: int = 2, namespace: str = "shop"
) -> PoolReport:
    return PoolReport(
        namespace=namespace, name=name, queues=queues, autoscaling="Builtin",
        min_replicas=0, max_replicas=10, desired=desired, replicas=1, ready=1,
    )


def decision(n: int) -> ScalingDecision:
    return ScalingDecision(
        at=NOW + timedelta(seconds=n), from_replicas=n, to_replicas=n + 1,
        reason="ScaleUp", message=f"scaling {n} -> {n + 1}",
    )


async def test_pools_are_recorded_by_the_operator_and_read_by_queue(client: Client) -> None:
    db = QueueDatabase(client, ReadingPace(POOL_SIZE), "test")
    await db.record_pool(report("mailers", ("emails", "receipts")), [decision(0)])
    await db.record_pool(report("bulk", ("emails",)), [])
    await db.record_pool(report("other", ("emails",), namespace="elsewhere"), [])

    pools = await client.worker_pools("shop/emails")
    assert [p.name for p in pools] == ["bulk", "mailers"]
    mailers = pools[1]
    assert mailers.queues == ("emails", "receipts")
    assert (mailers.desired, mailers.replicas, mailers.ready) == (2, 1, 1)
    assert mailers.decisions == (decision(0),)
    assert pools[0].decisions == ()
    assert [p.name for p in await client.worker_pools("shop/receipts")] == ["mailers"]
    assert await client.worker_pools("shop/nothing") == []

    # a change: newer decisions first, at most KEPT_DECISIONS of them
    await db.record_pool(
        report("mailers", ("receipts",), desired=5),
        [decision(n) for n in range(KEPT_DECISIONS + 3, 0, -1)],
    )
    (mailers,) = await client.worker_pools("shop/receipts")
    assert mailers.desired == 5
    assert len(mailers.decisions) == KEPT_DECISIONS
    assert mailers.decisions[0] == decision(KEPT_DECISIONS + 3)
    assert [p.name for p in await client.worker_pools("shop/emails")] == ["bulk"]

    await db.forget_pool("shop", "mailers")
    await db.forget_pool("shop", "bulk")
    await db.forget_pool("elsewhere", "other")
    assert await client.worker_pools("shop/emails") == []


async def test_throughput_and_wait_per_minute(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    for n in range(5):
        await client.enqueue(queue.full_name, "t", {"n": n})
    claimed = await claim(pool, queue, limit=5)
    for task in claimed[:3]:
        assert await finish(pool, task, "succeeded") == "succeeded"
    for task in claimed[3:]:
        await finish(pool, task, "failed")  # retried later: neither succeeded nor dead

    minutes = await client.queue_throughput(queue, 60)
    assert len(minutes) in (61, 62)  # the minute may turn between the two clocks
    assert sum(m.succeeded for m in minutes) == 3
    assert sum(m.dead for m in minutes) == 0
    assert minutes == sorted(minutes, key=lambda m: m.minute)

    recent = await client.queue_throughput(
        queue, since=datetime.now(UTC) - timedelta(minutes=1)
    )
    assert 2 <= len(recent) <= 3
    assert sum(m.succeeded for m in recent) == 3

    waits = await client.queue_wait(queue, 60, sample=2)
    assert len(waits) in (61, 62)
    sampled = [w for w in waits if w.sampled]
    assert sum(w.sampled for w in sampled) in (2, 3)  # at most 2 in a minute
    for wait in sampled:
        assert wait.p50_s is not None and wait.p95_s is not None
        assert 0 <= wait.p50_s <= wait.p95_s < 60
    assert all(w.p50_s is None for w in waits if not w.sampled)


async def _dead(client: Client, pool: asyncpg.Pool, queue: QueueInfo, error: object) -> int:
    """A task that failed its only attempt with this error (any JSON, as a worker may write)."""
    task = await client.enqueue(queue.full_name, "t", None)
    (claimed,) = await claim(pool, queue, limit=1)
    assert claimed.id == task.id
    assert await finish(pool, claimed, "failed") == "dead"
    await pool.execute("UPDATE taskq.tasks SET error = $2::jsonb WHERE id = $1",
                       task.id, json.dumps(error))
    return task.id


async def test_the_error_search_matches_text_literally_and_walks_a_bounded_number_of_tasks(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue,
) -> None:
    queue = await make_queue(max_attempts=1)
    card = await _dead(client, pool, queue, {"type": "CardDeclined", "message": "50% off_code"})
    other = await _dead(client, pool, queue, {"type": "Timeout", "message": "bank slow"})
    odd = await _dead(client, pool, queue, ["a list", "of CARDDECLINED words"])
    fine = [(await client.enqueue(queue.full_name, "t", None)).id for _ in range(4)]

    async def search(text: str, walk: int = 100, **filters: object) -> ErrorSearch:
        return await client.list_tasks_by_error(
            queue.full_name, text, walk=walk, **filters)  # type: ignore[arg-type]

    assert [t.id for t in (await search("carddeclined")).tasks] == [odd, card]
    assert [t.id for t in (await search("CardDeclined: 50")).tasks] == [card]
    assert [t.id for t in (await search("50% off_")).tasks] == [card]
    # LIKE's wildcards are plain characters: no error holds "5%f" or "ban_ slow"
    assert (await search("5%f")).tasks == []
    assert (await search("ban_")).tasks == []
    assert [t.id for t in (await search("slow", state="dead")).tasks] == [other]
    assert (await search("slow", state="ready")).tasks == []
    full = await search("e", walk=100, limit=2)
    assert [t.id for t in full.tasks] == [odd, other]
    assert full.walked_to is None  # a full page: its cursor is its last task

    # the walk reads the 4 newest (no error) and stops: where to go on from, and no match yet
    first = await search("card", walk=4)
    assert (first.tasks, first.walked_to) == ([], fine[0])
    rest = await search("card", walk=4, before_id=first.walked_to)
    assert ([t.id for t in rest.tasks], rest.walked_to) == ([odd, card], None)
    # a walk that runs out of tasks before its bound says nothing more is left (one that ends
    # exactly at the queue's first task cannot tell, and offers a next page, which is empty)
    assert (await search("card", walk=8)).walked_to is None
    assert (await search("card", walk=7)).walked_to == card
    # bad input is refused by name, as list_tasks refuses it
    with pytest.raises(InvalidArgumentError, match="'sleeping' must be one of") as refused:
        await search("card", state="sleeping")
    assert refused.value.field == "state"
    with pytest.raises(InvalidArgumentError, match=r"0 must be 1\.\.") as refused:
        await search("card", limit=0)
    assert refused.value.field == "limit"


async def test_bulk_cancel_and_retry_count_what_became_of_each_task(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue,
) -> None:
    queue = await make_queue(max_attempts=1)
    dead = await _dead(client, pool, queue, {"type": "Boom", "message": "x"})
    running = await client.enqueue(queue.full_name, "t", None)
    (claimed,) = await claim(pool, queue, limit=1)
    assert claimed.id == running.id
    await client.enqueue(queue.full_name, "t", None)
    (done,) = await claim(pool, queue, limit=1)
    await finish(pool, done, "succeeded")
    waiting = [(await client.enqueue(queue.full_name, "t", None)).id for _ in range(3)]
    absent = 2**62

    ids = [*waiting, running.id, dead, done.id, absent, waiting[0]]
    first = await client.cancel_many(queue.full_name, ids)
    assert first == BulkCancelResult(canceled=3, asked=1, already=0, finished=2, missing=1)
    again = await client.cancel_many(queue.full_name, ids)
    assert again == BulkCancelResult(canceled=0, asked=0, already=4, finished=2, missing=1)
    assert (await client.get_task(running.id)).cancel_requested

    retried = await client.retry_many(queue.full_name, [dead, *waiting, absent])
    assert retried == BulkRetryResult(retried=1, held=0, not_dead=4)
    assert (await client.get_task(dead)).state == "ready"
    assert await client.retry_many(queue.full_name, [dead]) == BulkRetryResult(0, 0, 1)


async def test_a_bulk_cancel_goes_in_batches(
    client: Client, make_queue: MakeQueue,
) -> None:
    queue = await make_queue()
    ids = [t.id for t in await client.enqueue_many(
        queue.full_name, [TaskRequest("t", None) for _ in range(BULK_BATCH * 2 + 1)])]
    result = await client.cancel_many(queue.full_name, ids)
    assert result == BulkCancelResult(canceled=len(ids), asked=0, already=0, finished=0,
                                      missing=0)
