"""The worker's database calls, each under a deadline and on a connection that is thrown away
when the call leaves it in doubt (store/deadlines.py). The worker runs maintenance too, so its
store is also the maintenance port."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from taskq.claim_order import ResumePoint
from taskq.models import QueueInfo
from taskq.names import QueueName
from taskq.store import execution
from taskq.store import queues as queue_store
from taskq.store.execution import ClaimedTask, Completion
from taskq.store.maintenance import MaintenanceStore


class WorkerStore(MaintenanceStore):
    async def get_queue(self, name: QueueName) -> QueueInfo | None:
        return await self._run(queue_store.get_queue, name)

    async def claim(
        self,
        queue_id: int,
        queue: str,
        worker_id: str,
        limit: int,
        lease_s: float,
        promote: bool,
        resume: ResumePoint | None = None,
    ) -> list[ClaimedTask]:
        return await self._run(
            execution.claim, queue_id, queue, worker_id, limit, lease_s, promote, resume
        )

    async def complete(self, worker_id: str, done: Sequence[Completion]) -> dict[int, str]:
        return await self._run(execution.complete, worker_id, done)

    async def heartbeat(
        self, queue_id: int, held: Sequence[tuple[int, uuid.UUID, str | None]], lease_s: float
    ) -> dict[int, bool]:
        return await self._run(execution.heartbeat, queue_id, held, lease_s)

    async def release(
        self, queue_id: int, worker_id: str, held: Sequence[tuple[int, uuid.UUID]]
    ) -> int:
        return await self._run(execution.release, queue_id, worker_id, held)

    async def release_orphans(self, queue_id: int, worker_id: str, known: Sequence[int]) -> int:
        return await self._run(execution.release_orphans, queue_id, worker_id, known)

    async def next_run_in(self, queue_id: int) -> float | None:
        return await self._run(execution.next_run_in, queue_id)
