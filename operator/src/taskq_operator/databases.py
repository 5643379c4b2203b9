"""The operator's side of the queue and key stores: one client per database, the schema migrated
once per database, wake-ups when tasks become ready in a queue a pool serves, and a maintenance
runner per database (taskq.maintenance: it runs a service when the database gives the
operator its turn). A database no resource has used for a while is let go (its pool closed,
its LISTEN connection and maintenance stopped), so a decommissioned database is not retried
forever."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from taskq.auth import ApiKey, Grants
from taskq.client import Client, create_pool
from taskq.maintenance.ports import MaintenanceMetrics
from taskq.maintenance.runner import MaintenanceRunner, default_services
from taskq.models import PoolReport, QueueInfo, QueueSettings, QueueStats, ScalingDecision
from taskq.names import QueueName
from taskq.schedules import ScheduleSpec
from taskq.store import keys as key_store
from taskq.store import pools as pool_store
from taskq.store import queues as queue_store
from taskq.store import schedules as schedule_store
from taskq.store import webhooks as webhook_store
from taskq.store.dberrors import translated
from taskq.store.maintenance import MaintenanceStore
from taskq.store.notifications import Listener
from taskq.supervision import supervised
from taskq.webhooks import WebhookSpec
from taskq_operator.status_pace import ReadingPace

log = logging.getLogger("taskq_operator.databases")

Wake = Callable[[], None]

# Every TaskQueue's daemon asks for its database's client at each status interval (seconds),
# so a database unused this long serves no resource any more.
IDLE_CLOSE_SECONDS = 600.0
# Deadline of each maintenance call (the operator has no setting for it): a call that hangs is
# abandoned, its connection closed, and tried again, instead of stopping maintenance.
MAINTENANCE_DEADLINE = 30.0  # seconds
MAINTENANCE_TASK = "taskq-operator-maintenance"  # the asyncio task's name
POOL_SIZE = 4  # connections of the operator's pool per database


@dataclass(frozen=True)
class Maintenance:
    """The operator's share of every database's maintenance: it asks each service's turn
    every `period` seconds, like every worker of the database does."""

    period: float
    metrics: MaintenanceMetrics

    async def run(self, pool: asyncpg.Pool) -> None:
        runner = MaintenanceRunner(
            MaintenanceStore(pool, MAINTENANCE_DEADLINE),
            default_services(self.period),
            self.metrics,
        )
        await supervised("maintenance", runner.run, self.metrics.maintenance_failed)


class QueueDatabase:
    """The queues of one database, as the reconcilers use them (reconcile.ports)."""

    def __init__(self, client: Client, pace: ReadingPace, label: str) -> None:
        self._client = client
        self._pace = pace
        self._label = label

    async def ensure_queue(self, queue: str, settings: QueueSettings) -> QueueInfo:
        return await self._client.ensure_queue(queue, settings)

    async def get_queue(self, queue: str) -> QueueInfo:
        return await self._client.get_queue(queue)

    async def queue_stats(self, queue: QueueInfo, cap: int) -> QueueStats:
        # by id: Client.queue_stats would look the queue up again
        with translated(queue.full_name):
            async with self._client.pool.acquire() as conn:
                began = time.monotonic()
                stats = await queue_store.queue_stats(conn, queue.id, cap)
                now = time.monotonic()
        self._pace.observe(queue.id, now - began, now)
        return stats

    def status_interval(self, configured: float) -> float:
        was_paced = self._pace.paced
        interval = self._pace.interval(configured, time.monotonic())
        if self._pace.paced != was_paced:
            reading = self._pace.reading_s or 0.0
            log.info(
                "statuses of the %d queues of %s are read every %.1fs (a reading takes "
                "%.1f ms on one of %d connections; TASKQ_OPERATOR_STATUS_INTERVAL is %gs)",
                self._pace.queues, self._label, interval, 1000 * reading, POOL_SIZE, configured,
            )
        return interval

    async def drop_queue(self, queue: str) -> bool:
        return await self._client.drop_queue(queue)

    async def declare_webhooks(
        self, queue: str, declared_by: str, webhooks: dict[str, WebhookSpec]
    ) -> None:
        name = QueueName.parse(queue)
        with translated(queue):
            async with self._client.pool.acquire() as conn, conn.transaction():
                for webhook, spec in webhooks.items():
                    await webhook_store.put_webhook(conn, name, webhook, spec, declared_by)
                await webhook_store.delete_declared_webhooks(
                    conn, declared_by, name, list(webhooks)
                )

    async def record_pool(self, pool: PoolReport, decisions: Sequence[ScalingDecision]) -> None:
        with translated():
            await pool_store.record_worker_pool(self._client.pool, pool, decisions)

    async def forget_pool(self, namespace: str, name: str) -> None:
        with translated():
            await pool_store.forget_worker_pool(self._client.pool, namespace, name)


class KeyDatabase:
    """The API keys of one database, as the TaskqApiKey reconciler uses them
    (reconcile.ports)."""

    def __init__(self, client: Client) -> None:
        self._pool = client.pool

    async def declared_key(self, declared_by: str) -> key_store.DeclaredKey | None:
        return await key_store.declared_key(self._pool, declared_by)

    async def declare_key(self, declared_by: str, grants: Grants) -> tuple[ApiKey, str]:
        return await key_store.declare_key(self._pool, declared_by, grants)

    async def set_grants(self, key: ApiKey, grants: Grants) -> ApiKey:
        return await key_store.set_grants(self._pool, key, grants)

    async def revoke_declared(self, declared_by: str) -> ApiKey | None:
        return await key_store.revoke_declared(self._pool, declared_by)


class ScheduleDatabase:
    """The schedules of one database, as the TaskSchedule reconciler uses them
    (reconcile.ports)."""

    def __init__(self, client: Client) -> None:
        self._pool = client.pool

    async def put_schedule(
        self, namespace: str, name: str, spec: ScheduleSpec
    ) -> schedule_store.ScheduleInfo:
        return await schedule_store.put_schedule(self._pool, namespace, name, spec)

    async def get_schedule(self, namespace: str, name: str) -> schedule_store.ScheduleInfo | None:
        return await schedule_store.get_schedule(self._pool, namespace, name)

    async def delete_schedule(self, namespace: str, name: str) -> bool:
        return await schedule_store.delete_schedule(self._pool, namespace, name)

    async def task_state(self, namespace: str, queue: str, task_id: int) -> str | None:
        return await schedule_store.task_state(self._pool, namespace, queue, task_id)


def database_label(dsn: str) -> str:
    """A DSN as a metric may show it: host, port and database, never the user or password."""
    parts = urlsplit(dsn)
    if parts.scheme in ("postgres", "postgresql") and parts.hostname:
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.hostname}{port}{parts.path or '/'}"
    # a key=value DSN: not parsed, only told apart
    return "dsn-" + hashlib.sha256(dsn.encode()).hexdigest()[:8]


class Databases:
    def __init__(
        self, idle_close_s: float = IDLE_CLOSE_SECONDS, maintenance: Maintenance | None = None
    ) -> None:
        self._idle_close_s = idle_close_s
        self._maintenance = maintenance
        self._clients: dict[str, Client] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._maintainers: dict[str, asyncio.Task[None]] = {}
        self._subscribers: dict[tuple[str, int], dict[object, Wake]] = {}
        self._paces: dict[str, ReadingPace] = {}
        self._last_used: dict[str, float] = {}
        self._pruner: asyncio.Task[None] | None = None

    @property
    def dsns(self) -> list[str]:
        """The databases the operator holds connections to."""
        return list(self._clients)

    def connections(self) -> list[tuple[str, int, int]]:
        """Per database (named without credentials): its pool's connections busy and idle;
        each database also has one LISTEN connection."""
        counts = []
        for dsn, client in self._clients.items():
            idle = client.pool.get_idle_size()
            counts.append((database_label(dsn), client.pool.get_size() - idle, idle))
        return counts

    async def client(self, dsn: str) -> Client:
        """A client of the database (schema migrated); DatabaseUnavailableError if it cannot
        be reached."""
        self._last_used[dsn] = time.monotonic()
        existing = self._clients.get(dsn)
        if existing is not None:
            return existing
        async with self._locks.setdefault(dsn, asyncio.Lock()):
            if dsn not in self._clients:
                pool = await create_pool(dsn, min_size=1, max_size=POOL_SIZE)
                client = Client(pool, owns_pool=True)
                try:
                    applied = await client.migrate()
                except BaseException:
                    await client.close()
                    raise
                if applied:
                    log.info("migrated a database: %s", ", ".join(applied))
                self._clients[dsn] = client
                self._listeners[dsn] = asyncio.create_task(
                    Listener(
                        dsn,
                        lambda queue_id, d=dsn: self._notify(d, queue_id),  # type: ignore[misc]
                        lambda _task_id: None,
                    ).run(),
                    name="taskq-operator-listen",
                )
                if self._maintenance is not None:
                    self._maintainers[dsn] = asyncio.create_task(
                        self._maintenance.run(client.pool), name=MAINTENANCE_TASK
                    )
                if self._pruner is None:
                    self._pruner = asyncio.create_task(self._prune_forever(), name="taskq-prune")
            return self._clients[dsn]

    async def database(self, dsn: str) -> QueueDatabase:
        """client(dsn), as the reconcilers use it."""
        pace = self._paces.setdefault(dsn, ReadingPace(POOL_SIZE))
        return QueueDatabase(await self.client(dsn), pace, database_label(dsn))

    async def keys(self, dsn: str) -> KeyDatabase:
        """client(dsn)'s API keys, as the TaskqApiKey reconciler uses them."""
        return KeyDatabase(await self.client(dsn))

    async def schedules(self, dsn: str) -> ScheduleDatabase:
        """client(dsn)'s schedules, as the TaskSchedule reconciler uses them."""
        return ScheduleDatabase(await self.client(dsn))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._idle_close_s / 4))
            await self.prune()

    async def prune(self) -> list[str]:
        """Let go of the databases unused for idle_close_s and without wake-up subscribers;
        returns their DSNs."""
        cutoff = time.monotonic() - self._idle_close_s
        subscribed = {dsn for (dsn, _), subs in self._subscribers.items() if subs}
        idle = [
            dsn
            for dsn in list(self._clients)
            if self._last_used.get(dsn, 0.0) < cutoff and dsn not in subscribed
        ]
        closed = []
        for dsn in idle:
            async with self._locks[dsn]:
                if self._last_used.get(dsn, 0.0) >= cutoff or dsn not in self._clients:
                    continue  # asked for again meanwhile
                client = self._clients.pop(dsn)
                stopping = [self._listeners.pop(dsn)]
                if dsn in self._maintainers:
                    stopping.append(self._maintainers.pop(dsn))
            for task in stopping:
                task.cancel()
            await asyncio.gather(*stopping, return_exceptions=True)
            await client.close()
            closed.append(dsn)
        if closed:
            log.info(
                "closed the connections to %d database(s) no resource used for %.0fs",
                len(closed),
                self._idle_close_s,
            )
        return closed

    def subscribe(self, dsn: str, queue_id: int, key: object, wake: Wake) -> None:
        """Call `wake` when tasks become ready in the queue (a hint: also poll)."""
        self._subscribers.setdefault((dsn, queue_id), {})[key] = wake

    def unsubscribe(self, key: object) -> None:
        for subscribers in self._subscribers.values():
            subscribers.pop(key, None)

    def _notify(self, dsn: str, queue_id: int) -> None:
        targets = (
            [w for (d, _), subs in self._subscribers.items() if d == dsn for w in subs.values()]
            if queue_id < 0  # the listener (re)connected: anything may have changed
            else list(self._subscribers.get((dsn, queue_id), {}).values())
        )
        for wake in targets:
            wake()

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        stopping = [*self._listeners.values(), *self._maintainers.values()]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        for client in self._clients.values():
            await client.close()
