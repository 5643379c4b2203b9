"""What the dashboard reads beside the queues (migration 0024), on the real PostgreSQL: the
worker pools the operator records (taskq.worker_pools), and a queue's throughput and wait per
minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from taskq.client import Client
from taskq.models import PoolReport, ScalingDecision
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
