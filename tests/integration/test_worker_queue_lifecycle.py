"""A worker follows its queues by name: a queue dropped and provisioned again while the
worker runs (it gets a new id and partition) is drained again without a restart. Its beat
says when one of its queues is gone; it does not look them up while they all exist."""

from __future__ import annotations

import asyncio

import asyncpg

from taskq.client import Client
from taskq.models import QueueInfo
from taskq.names import QueueName
from taskq.store.worker_store import WorkerStore
from taskq.worker.context import TaskContext
from taskq.worker.registry import Registry
from tests.integration.helpers import running_worker, wait_for_state


async def test_worker_follows_a_queue_provisioned_again(
    dsn: str, client: Client, pool: asyncpg.Pool
) -> None:
    registry = Registry()

    @registry.task("t")
    async def handler(_ctx: TaskContext) -> str:
        return "done"

    queue = "lifecycle/q"
    await client.ensure_queue(queue)
    first = await client.enqueue(queue, "t")
    async with running_worker(dsn, registry, [queue], maintenance_interval=0.2):
        await wait_for_state(pool, first.id, "succeeded")
        await client.drop_queue(queue)
        again = await client.ensure_queue(queue)
        second = await client.enqueue(queue, "t")
        row = await wait_for_state(pool, second.id, "succeeded")
    assert row["queue_id"] == again.id


async def test_the_beat_names_the_queues_that_are_gone(client: Client, pool: asyncpg.Pool) -> None:
    kept = await client.ensure_queue("lifecycle/kept")
    dropped = await client.ensure_queue("lifecycle/dropped")
    await client.drop_queue("lifecycle/dropped")
    try:
        gone = await pool.fetchval(
            "SELECT gone_queue_ids FROM taskq.worker_beat('lifecycle-beat', 3, 86400,"
            " $1::integer[])", [kept.id, dropped.id])
        assert gone == [dropped.id]
        assert await pool.fetchval(
            "SELECT gone_queue_ids FROM taskq.worker_beat('lifecycle-beat', 3, 86400,"
            " $1::integer[])", [kept.id]) == []
    finally:
        await pool.execute("SELECT taskq.worker_gone('lifecycle-beat')")


class CountingStore(WorkerStore):
    lookups = 0

    async def get_queue(self, name: QueueName) -> QueueInfo | None:
        CountingStore.lookups += 1
        return await super().get_queue(name)


async def test_an_idle_worker_does_not_look_its_queues_up_again(
    dsn: str, client: Client
) -> None:
    """Before, every worker looked each of its queues up every maintenance interval: at 1,000
    idle workers the largest kind of statement after the beat."""
    await client.ensure_queue("lifecycle/idle")
    CountingStore.lookups = 0
    async with running_worker(dsn, Registry(), ["lifecycle/idle"], store=CountingStore,
                              maintenance_interval=0.1) as worker:
        await asyncio.sleep(1.5)  # 15 maintenance intervals, a beat or two
        assert worker.is_ready()
    assert CountingStore.lookups == 1  # the one at start
