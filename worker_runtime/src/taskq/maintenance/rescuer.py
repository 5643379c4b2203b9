"""Rescuer: running tasks whose lease expired, in every queue of the database, are retried
(or dead when out of attempts, or canceled if that was asked) with the attempt recorded
`lost`. The lease is the safety net behind the workers' beats (worker/beat.py): it catches a
live process whose event loop stalled, and workers that never beat."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from taskq.maintenance.each_queue import each_queue
from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics
from taskq.store.maintenance import MaintainedQueue

log = logging.getLogger("taskq.maintenance")


@dataclass(frozen=True)
class Rescuer:
    # taskq.rescue_expired reads this duty's row: its turns tell when the database restarted
    # (an outage does not count against leases, migration 0019)
    name: ClassVar[str] = "rescue_expired_leases"
    period: float  # seconds between runs, across the database
    batch: int = 1000  # most tasks rescued per queue and run; the rest on the next run

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        """Returns how many tasks it rescued."""

        async def rescue(queue: MaintainedQueue) -> int:
            count = await db.rescue_expired(queue.id, self.batch)
            if count:
                metrics.rescued("lease_expired", count)
                # the queue's workers may be idle: they claim the tasks once they are due
                await db.wake_queue(queue.id)
            return count

        rescued, error = await each_queue(db, rescue)
        total = sum(rescued.values())
        if total:
            log.info(
                "rescued %d tasks whose leases expired: %s",
                total,
                ", ".join(f"{n} in {queue}" for queue, n in rescued.items()),
            )
        if error is not None:
            raise error
        return total
