"""Running a service's work on every queue of the database, one queue at a time."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from taskq.maintenance.ports import MaintenanceDatabase
from taskq.store.maintenance import MaintainedQueue

log = logging.getLogger("taskq.maintenance")


async def each_queue(
    db: MaintenanceDatabase,
    work: Callable[[MaintainedQueue], Awaitable[int]],
    queues: list[MaintainedQueue] | None = None,
) -> tuple[dict[str, int], Exception | None]:
    """`work` on every queue (or on `queues`): the queues where it did something, with how
    much, and the first error, which the service raises once it has reported the rest.

    A queue whose call fails (past the deadline on a large backlog, a deadlock) does not keep
    the queues after it from their turn: every queue is tried, and raising the error then
    counts the run as failed, retried with backoff. Before, one such queue ended every run
    before the others were reached."""
    done: dict[str, int] = {}
    failed: list[tuple[str, Exception]] = []
    for queue in await db.maintained_queues() if queues is None else queues:
        try:
            count = await work(queue)
        except Exception as error:
            failed.append((queue.name, error))
            continue
        if count:
            done[queue.name] = count
    if len(failed) > 1:
        log.warning(
            "maintenance failed in %d queues: %s", len(failed), ", ".join(n for n, _ in failed)
        )
    return done, failed[0][1] if failed else None
