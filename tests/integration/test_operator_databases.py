"""The operator's database connections: one client, one LISTEN connection and one maintenance
runner per database, let go once no resource has used the database for a while."""

from __future__ import annotations

import asyncio

import asyncpg
from devenv.postgres import LocalPostgres

from taskq import BackoffPolicy
from taskq.client import Client
from taskq.maintenance.rescuer import Rescuer
from taskq.webhooks import WebhookSpec, new_secret
from taskq_operator.databases import MAINTENANCE_TASK, Databases, Maintenance, database_label
from taskq_operator.metrics import ConnectionsCollector, OperatorMetrics
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, expire_lease, wait_for_state

IDLE = 0.3  # seconds


async def test_an_unused_database_is_let_go_and_reopened_on_demand(dsn: str) -> None:
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(dsn)
        assert await databases.prune() == []  # just used
        await asyncio.sleep(IDLE + 0.1)
        assert await databases.prune() == [dsn]
        assert databases.dsns == []
        again = await databases.client(dsn)
        assert await again.pool.fetchval("SELECT 1") == 1
    finally:
        await databases.close()


async def test_the_operators_connections_are_a_metric_without_credentials(dsn: str) -> None:
    databases = Databases()
    metrics = OperatorMetrics()
    metrics.registry.register(ConnectionsCollector(databases.connections))
    try:
        client = await databases.client(dsn)
        async with client.pool.acquire():
            [(label, busy, idle)] = databases.connections()
            assert (busy, idle) == (1, client.pool.get_size() - 1)
            assert metrics.registry.get_sample_value(
                "taskq_operator_db_connections", {"database": label, "use": "busy"}) == 1
        assert "@" not in label
        assert label == database_label(dsn)
    finally:
        await databases.close()


async def test_a_database_with_wake_up_subscribers_is_kept(dsn: str) -> None:
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(dsn)
        databases.subscribe(dsn, 1, "pool-uid", lambda: None)
        await asyncio.sleep(IDLE + 0.1)
        assert await databases.prune() == []
        databases.unsubscribe("pool-uid")
        assert await databases.prune() == [dsn]
    finally:
        await databases.close()


async def test_a_decommissioned_database_is_not_retried_forever() -> None:
    server = LocalPostgres.temporary()
    server.start()
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(server.dsn)
        server.stop()  # gone: its LISTEN connection now retries in the background
        deadline = asyncio.get_running_loop().time() + 10
        while databases.dsns and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(IDLE)  # the background pruner runs every IDLE / 4, at least 1 s
        assert databases.dsns == []
    finally:
        await databases.close()
        server.destroy()


async def test_the_operator_maintains_every_database_it_holds(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Its runner asks for the turns like a worker's: an expired lease is rescued, counted in
    the operator's metrics, and maintenance stops with the database's connections."""
    queue = await make_queue(backoff=BackoffPolicy(base_seconds=0, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue, worker="crashed")
    await expire_lease(pool, task.id)
    metrics = OperatorMetrics()
    databases = Databases(idle_close_s=IDLE, maintenance=Maintenance(0.2, metrics))
    try:
        await databases.client(dsn)
        # held while we wait: on a loaded machine the first maintenance pass can come after
        # the pruner would have let an unused database go (and its maintenance with it)
        databases.subscribe(dsn, queue.id, "pool-uid", lambda: None)
        await wait_for_state(pool, enqueued.id, "retrying", "ready")
        rescued = metrics.registry.get_sample_value(
            "taskq_tasks_rescued_total", {"cause": "lease_expired"})
        assert rescued is not None and rescued >= 1
        turns = metrics.registry.get_sample_value(
            "taskq_maintenance_turns_total", {"service": Rescuer.name})
        assert turns is not None and turns >= 1
        databases.unsubscribe("pool-uid")
        await asyncio.sleep(IDLE + 0.1)
        await databases.prune()  # the background pruner may have let it go first
        assert dsn not in databases.dsns
        assert [t for t in asyncio.all_tasks() if t.get_name() == MAINTENANCE_TASK] == []
    finally:
        await databases.close()


async def test_declared_webhooks_become_exactly_the_declaration(dsn: str, client: Client) -> None:
    """The TaskQueue reconciler's port: its webhooks are put, those it no longer declares go,
    and webhooks made by hand (or by another object) stay."""
    queue = "declared-hooks/orders"
    secret = new_secret()
    await client.put_webhook(queue, "by-hand", WebhookSpec("https://example.com/x", secret))
    databases = Databases(idle_close_s=60)
    try:
        db = await databases.database(dsn)
        by = "TaskQueue declared-hooks/orders"
        a = WebhookSpec("https://example.com/a", secret)
        await db.declare_webhooks(queue, by, {"a": a, "b": WebhookSpec(None, secret)})
        await db.declare_webhooks(queue, by, {"a": a})
        found = {w.name: w.declared_by for w in await client.list_webhooks(queue)}
        assert found == {"a": by, "by-hand": None}
        await db.declare_webhooks(queue, by, {})
        assert [w.name for w in await client.list_webhooks(queue)] == ["by-hand"]
    finally:
        await databases.close()
