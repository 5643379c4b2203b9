"""The worker's database calls, each under a deadline and on a connection that is thrown away
when the call leaves it in doubt.

Every call acquires a pooled connection and runs within `deadline` seconds, acquisition
included: a hung connection or an exhausted pool becomes a TimeoutError that the worker's
loops retry. A connection is kept only when the server answered (with rows or with an
ordinary SQL error); after anything else (a lost or killed backend, asyncpg's protocol left
in an odd state, a deadline, a cancellation) it is terminated, and the pool connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg

from taskq.models import QueueInfo
from taskq.names import QueueName
from taskq.store import execution
from taskq.store import queues as queue_store
from taskq.store.dberrors import is_server_answer
from taskq.store.execution import ClaimedTask, Completion
from taskq.store.types import Connection

P = ParamSpec("P")
T = TypeVar("T")


class WorkerStore:
    def __init__(self, pool: asyncpg.Pool, deadline: float) -> None:
        self.pool = pool
        self.deadline = deadline

    async def _run(
        self,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with asyncio.timeout(self.deadline), self.pool.acquire() as conn:
            try:
                return await self._execute(conn, call, *args, **kwargs)
            except BaseException as error:
                if not is_server_answer(error):
                    # a connection already closed has left the pool by itself
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                raise

    async def _execute(
        self,
        conn: Connection,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs one call on an acquired connection (tests inject faults here)."""
        return await call(conn, *args, **kwargs)

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
    ) -> list[ClaimedTask]:
        return await self._run(
            execution.claim, queue_id, queue, worker_id, limit, lease_s, promote
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

    async def rescue_expired(self, queue_id: int) -> int:
        return await self._run(execution.rescue_expired, queue_id)

    async def purge_finished(self, queue_id: int) -> int:
        return await self._run(execution.purge_finished, queue_id)
