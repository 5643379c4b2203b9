"""What maintenance reaches the world through: the database (store.maintenance.MaintenanceStore,
or tests' in-memory fakes) and the metrics of the process it runs in (the worker's or the
operator's registry)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from taskq.store.maintenance import MaintainedQueue, Turn
from taskq.store.schedules import Fired


class MaintenanceDatabase(Protocol):
    async def ask_turn(self, duty: str, every_s: float) -> Turn:
        """The duty's turn for exactly one caller per `every_s` seconds across the database;
        a loser learns when it frees and how many ask."""
        ...

    async def add_duty(self, duty: str) -> None: ...

    async def maintained_queues(self) -> list[MaintainedQueue]:
        """Every queue of the database."""
        ...

    async def rescue_expired(self, queue_id: int, limit: int) -> int: ...

    async def purge_finished(self, queue_id: int, limit: int) -> int: ...

    async def wake_queue(self, queue_id: int) -> None: ...

    async def database_now(self) -> datetime: ...

    async def fire_schedules(self, now: datetime, limit: int) -> list[Fired]:
        """Run the ticks due at `now` of up to `limit` schedules."""
        ...

    async def webhook_queues(self) -> list[MaintainedQueue]:
        """The queues with webhooks, or ever given a task with a callback URL."""
        ...

    async def dispatch_webhooks(self, queue_id: int, overlap_s: float, limit: int) -> int:
        """Enqueue the deliveries of up to `limit` new notifications of the queue."""
        ...


class MaintenanceMetrics(Protocol):
    def turn_taken(self, service: str) -> None:
        """This process won the service's turn and runs it."""
        ...

    def maintenance_failed(self, service: str) -> None: ...

    def rescued(self, cause: str, count: int) -> None:
        """Tasks given back to their queue; the Rescuer's cause is `lease_expired`."""
        ...

    def purged(self, count: int) -> None:
        """Finished tasks deleted past their queue's retention."""
        ...

    def schedule_ticks(self, outcome: str, count: int) -> None:
        """Schedule ticks handled: `enqueued`, or why skipped (Missed, PastStartingDeadline,
        PreviousUnfinished), or `failed` (retried on the next pass)."""
        ...

    def webhooks_dispatched(self, count: int) -> None:
        """Webhook deliveries enqueued into taskq-system/webhooks."""
        ...
