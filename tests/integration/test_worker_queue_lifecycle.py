"""A worker follows its queues by name: a queue dropped and provisioned again while the
worker runs (it gets a new id and partition) is drained again without a restart."""

from __future__ import annotations

import asyncpg

from taskq.client import Client
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
