"""Retention: finished tasks and their history are deleted once past the queue's retention."""

from __future__ import annotations

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.models import QueueInfo
from taskq.store import maintenance as store
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish


async def _one_of_each(client: Client, pool: asyncpg.Pool, queue: QueueInfo) -> dict[str, int]:
    """A task in each state that matters: succeeded, canceled, dead, running, ready, scheduled,
    retrying."""
    names = ["succeeded", "dead", "running", "retrying"]
    results = await client.enqueue_many(
        queue.full_name, [TaskRequest(n, max_attempts=1 if n == "dead" else 3) for n in names])
    ids = dict(zip(names, (r.id for r in results), strict=True))
    claimed = {t.task_name: t for t in await claim(pool, queue, limit=10)}
    assert await finish(pool, claimed["succeeded"], "succeeded") == "succeeded"
    assert await finish(pool, claimed["dead"], "failed") == "dead"
    assert await finish(pool, claimed["retrying"], "failed") == "retrying"
    ids["canceled"] = (await client.enqueue(queue.full_name, "canceled")).id
    await client.cancel(ids["canceled"])
    ids["ready"] = (await client.enqueue(queue.full_name, "ready")).id
    ids["scheduled"] = (await client.enqueue(queue.full_name, "scheduled", delay=600)).id
    return ids


async def _surviving(pool: asyncpg.Pool, queue: QueueInfo) -> set[str]:
    rows = await pool.fetch("SELECT task_name FROM taskq.tasks WHERE queue_id = $1", queue.id)
    return {row["task_name"] for row in rows}


async def _history_of(pool: asyncpg.Pool, queue: QueueInfo) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM taskq.attempt_history WHERE queue_id = $1", queue.id)
    return count


async def test_zero_retention_purges_every_finished_task_and_its_history(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=0, retention_dead_seconds=0)
    await _one_of_each(client, pool, queue)
    # the success went as it was recorded (migration 0025): the purge finds the other two
    assert await _history_of(pool, queue) == 2
    assert await store.purge_finished(pool, queue.id) == 2
    assert await _surviving(pool, queue) == {"running", "retrying", "ready", "scheduled"}
    assert await _history_of(pool, queue) == 1  # the retrying task's failed attempt stays
    assert await store.purge_finished(pool, queue.id) == 0


async def test_dead_tasks_are_kept_longer(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=0, retention_dead_seconds=86_400)
    await _one_of_each(client, pool, queue)
    assert await store.purge_finished(pool, queue.id) == 1  # the canceled one (the success went)
    assert await _surviving(pool, queue) == {"dead", "running", "retrying", "ready", "scheduled"}


async def test_succeeded_tasks_kept_while_dead_ones_go(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=86_400, retention_dead_seconds=0)
    ids = await _one_of_each(client, pool, queue)
    assert await store.purge_finished(pool, queue.id) == 1
    assert "dead" not in await _surviving(pool, queue)
    assert len(await client.task_attempts(ids["succeeded"])) == 1
    assert await client.task_attempts(ids["dead"]) == []


async def test_large_retention_keeps_everything(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()  # one day and a week
    await _one_of_each(client, pool, queue)
    assert await store.purge_finished(pool, queue.id) == 0
    assert len(await _surviving(pool, queue)) == 7


async def test_purge_respects_its_limit(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=0)
    results = await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 5)
    for r in results:
        await client.cancel(r.id)
    assert await store.purge_finished(pool, queue.id, limit=2) == 2
    assert await store.purge_finished(pool, queue.id) == 3


async def test_purge_of_an_unknown_queue_does_nothing(pool: asyncpg.Pool) -> None:
    assert await store.purge_finished(pool, 2_000_000_000) == 0
