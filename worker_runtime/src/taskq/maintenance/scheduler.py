"""Scheduler: the due ticks of every schedule of the database become tasks (docs/schedules.md).

Exactly one task per tick comes from the store, which fires each schedule under its row lock
in the transaction that moves it past the tick; the turn only keeps processes from asking the
database every second all at once. The clock is the database's, unless a test gives one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics

log = logging.getLogger("taskq.maintenance")

# Ticks fire within this many seconds (plus a little spread) of their time, whatever the other
# services' period: cron's resolution is a minute, and a late tick is the first thing a user
# of a schedule notices.
SCHEDULER_PERIOD = 1.0


@dataclass(frozen=True)
class Scheduler:
    name: ClassVar[str] = "fire_schedules"
    period: float = SCHEDULER_PERIOD
    batch: int = 100  # most schedules fired per run; the rest on the next run
    clock: Callable[[MaintenanceDatabase], Awaitable[datetime]] | None = None
    """Tests drive ticks by giving `now`; by default the database's clock."""

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        """Returns how many tasks it enqueued."""
        now = await (self.clock(db) if self.clock else db.database_now())
        enqueued = 0
        for fired in await db.fire_schedules(now, self.batch):
            if fired.error is not None:
                metrics.schedule_ticks("failed", 1)
                log.warning("schedule %s could not enqueue: %s", fired.schedule, fired.error)
                continue
            enqueued += len(fired.enqueued)
            metrics.schedule_ticks("enqueued", len(fired.enqueued))
            for _, reason in fired.skipped:
                metrics.schedule_ticks(reason, 1)
            if fired.skipped:
                log.info(
                    "schedule %s skipped %d ticks: %s",
                    fired.schedule,
                    len(fired.skipped),
                    ", ".join(f"{tick.isoformat()} ({why})" for tick, why in fired.skipped[-5:]),
                )
        return enqueued
