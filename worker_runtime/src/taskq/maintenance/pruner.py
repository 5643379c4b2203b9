"""Pruner: finished tasks past their queue's retention (succeeded and canceled ones, dead
ones), in every queue of the database, are deleted with their history."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from taskq.maintenance.each_queue import each_queue
from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics
from taskq.store.maintenance import MaintainedQueue

log = logging.getLogger("taskq.maintenance")


@dataclass(frozen=True)
class Pruner:
    name: ClassVar[str] = "purge_finished_tasks"
    period: float  # seconds between runs, across the database
    batch: int = 10_000  # most tasks deleted per queue and run; the rest on the next run

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        """Returns how many tasks it deleted."""

        async def purge(queue: MaintainedQueue) -> int:
            count = await db.purge_finished(queue.id, self.batch)
            if count:
                metrics.purged(count)
            return count

        purged, error = await each_queue(db, purge)
        total = sum(purged.values())
        if total:
            log.info(
                "deleted %d finished tasks past retention: %s",
                total,
                ", ".join(f"{n} in {queue}" for queue, n in purged.items()),
            )
        if error is not None:
            raise error
        return total
