"""Dispatcher: tasks that finished since its last pass, in queues with webhooks or with a
callback URL, become deliveries: tasks of the system queue taskq-system/webhooks, which the
workers' built-in handler posts (docs/webhooks.md).

An outbox by scan rather than by trigger: completing a task does no more work than before,
and a slow or dead receiver only ever slows its own deliveries. The scan reads the finished
tasks of each such queue from its watermark less `overlap` (a task's finished_at is when its
finishing transaction started, not when it committed), and the database records each
notification dispatched in the transaction that enqueues its delivery, so a rescan or a
second dispatcher never sends one twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from taskq.maintenance.each_queue import each_queue
from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics
from taskq.store.maintenance import MaintainedQueue

log = logging.getLogger("taskq.maintenance")

# A notification leaves within about this many seconds of its task's finish, whatever the
# other services' period: a receiver waiting for a task's outcome should not wait long.
DISPATCHER_PERIOD = 1.0
# How far back each pass looks again: a finishing transaction that takes longer than this
# to commit after it started is not announced.
DISPATCH_OVERLAP = 60.0


@dataclass(frozen=True)
class Dispatcher:
    name: ClassVar[str] = "dispatch_webhooks"
    period: float = DISPATCHER_PERIOD
    overlap: float = DISPATCH_OVERLAP  # seconds
    batch: int = 1000  # most deliveries enqueued per queue and run; the rest on the next run

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        """Returns how many deliveries it enqueued."""

        async def dispatch(queue: MaintainedQueue) -> int:
            count = await db.dispatch_webhooks(queue.id, self.overlap, self.batch)
            if count:
                metrics.webhooks_dispatched(count)
            return count

        dispatched, error = await each_queue(db, dispatch, await db.webhook_queues())
        total = sum(dispatched.values())
        if total:
            log.info(
                "dispatched %d webhook deliveries: %s",
                total,
                ", ".join(f"{n} from {queue}" for queue, n in dispatched.items()),
            )
        if error is not None:
            raise error
        return total
