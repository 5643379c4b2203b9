"""The store's side of maintenance: turns at the database's periodic duties, the queues to
maintain, and the per-queue work (expired leases, retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from taskq.store import schedules, webhooks
from taskq.store.deadlines import DeadlineStore
from taskq.store.sqlfiles import query
from taskq.store.types import Executor


@dataclass(frozen=True, slots=True)
class MaintainedQueue:
    id: int
    name: str  # namespace/name, for log lines


@dataclass(frozen=True, slots=True)
class Turn:
    taken: bool  # for exactly one caller per period across the database
    free_in: float | None  # seconds until the next turn is free; None: a duty not known yet
    askers: int | None  # the processes that ask, as the last winner counted them; None: never


async def ask_turn(db: Executor, duty: str, every_s: float) -> Turn:
    """The duty's turn if free (one statement either way: issue 16's idle cost)."""
    row = await db.fetchrow(query("ask_turn"), duty, every_s)
    assert row is not None
    return Turn(row["taken"], row["free_in"], row["askers"])


async def add_duty(db: Executor, duty: str) -> None:
    await db.execute(query("add_duty"), duty)


async def maintained_queues(db: Executor) -> list[MaintainedQueue]:
    rows = await db.fetch(query("maintained_queues"))
    return [MaintainedQueue(row["id"], row["name"]) for row in rows]


async def rescue_expired(db: Executor, queue_id: int, limit: int = 1000) -> int:
    """Running tasks of the queue whose lease expired are retried (or dead, or canceled),
    the attempt recorded `lost`; returns how many."""
    rescued: int = await db.fetchval(query("rescue_expired"), queue_id, limit)
    return rescued


async def purge_finished(db: Executor, queue_id: int, limit: int = 10_000) -> int:
    """Finished tasks of the queue past its retention are deleted with their history;
    returns how many."""
    purged: int = await db.fetchval(query("purge_finished"), queue_id, limit)
    return purged


async def wake_queue(db: Executor, queue_id: int) -> None:
    await db.execute(query("wake_queue"), str(queue_id))


class MaintenanceStore(DeadlineStore):
    """The maintenance port (taskq.maintenance.ports.MaintenanceDatabase) on a pool, each call
    under the deadline."""

    async def ask_turn(self, duty: str, every_s: float) -> Turn:
        return await self._run(ask_turn, duty, every_s)

    async def add_duty(self, duty: str) -> None:
        await self._run(add_duty, duty)

    async def maintained_queues(self) -> list[MaintainedQueue]:
        return await self._run(maintained_queues)

    async def rescue_expired(self, queue_id: int, limit: int) -> int:
        return await self._run(rescue_expired, queue_id, limit)

    async def purge_finished(self, queue_id: int, limit: int) -> int:
        return await self._run(purge_finished, queue_id, limit)

    async def wake_queue(self, queue_id: int) -> None:
        await self._run(wake_queue, queue_id)

    async def database_now(self) -> datetime:
        return await self._run(schedules.database_now)

    async def fire_schedules(self, now: datetime, limit: int) -> list[schedules.Fired]:
        return await self._run(schedules.fire_due, now, limit)

    async def webhook_queues(self) -> list[MaintainedQueue]:
        return await self._run(webhooks.webhook_queues)

    async def dispatch_webhooks(self, queue_id: int, overlap_s: float, limit: int) -> int:
        return await self._run(webhooks.dispatch_webhooks, queue_id, overlap_s, limit)
