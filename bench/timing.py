"""Timing the claims of an in-process Worker, as its own store makes them: shared by the
benchmarks that run one (footprint_bench.py, kills_bench.py).

Give the Worker a TimedStore (`Worker(pool, registry, settings, worker_id, db=store)`): each
claim call is recorded as a ClaimTiming, from the moment the worker calls the store to the
moment the call returns or raises, so it includes everything the worker waits for: the pooled
connection's acquisition (a fresh connection when the pool's last one was thrown away), the
deadline, and the query. The calls that give back what a failed claim may have taken
(release_orphans, made before the next claim) are recorded too, as kind "release_orphans".
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from taskq.store.execution import ClaimedTask
from taskq.store.types import Connection
from taskq.store.worker_store import WorkerStore

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class ClaimTiming:
    """One call of the worker's claim path."""

    kind: str  # "claim" or "release_orphans"
    started: float  # time.perf_counter() when the worker made the call
    ms: float = 0.0  # the whole call: acquisition, deadline and query
    acquire_ms: float | None = None  # until a connection was acquired; None: none was
    fresh: bool = False  # the connection's first call: its backend served this store nothing
    tasks: int = 0  # tasks claimed (claim) or given back (release_orphans)
    error: str | None = None  # the exception's class, None when the call succeeded

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ended(self) -> float:
        return self.started + self.ms / 1000


# The timing of the claim path call in progress in this asyncio task, if any: _execute runs in
# the task that made the call, and notes when it got its connection.
_current: contextvars.ContextVar[ClaimTiming | None] = contextvars.ContextVar(
    "taskq_bench_claim", default=None
)


class TimedStore(WorkerStore):
    """The worker's own store, recording each call of its claim path into `timings`."""

    def __init__(self, pool: asyncpg.Pool, deadline: float, timings: list[ClaimTiming]) -> None:
        super().__init__(pool, deadline)
        self._timings = timings
        self._backends: set[int] = set()

    async def claim(self, *args: Any, **kwargs: Any) -> list[ClaimedTask]:
        claimed: list[ClaimedTask] = await self._timed("claim", super().claim, *args, **kwargs)
        return claimed

    async def release_orphans(self, queue_id: int, worker_id: str, known: Sequence[int]) -> int:
        released: int = await self._timed(
            "release_orphans", super().release_orphans, queue_id, worker_id, known
        )
        return released

    async def _timed(self, kind: str, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        timing = ClaimTiming(kind, time.perf_counter())
        token = _current.set(timing)
        try:
            result = await call(*args)
        except BaseException as error:
            timing.error = type(error).__name__
            raise
        else:
            timing.tasks = result if isinstance(result, int) else len(result)
            return result
        finally:
            _current.reset(token)
            timing.ms = (time.perf_counter() - timing.started) * 1000
            self._timings.append(timing)

    async def _execute(
        self,
        conn: Connection,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        pid = conn.get_server_pid()
        timing = _current.get()
        if timing is not None:
            timing.acquire_ms = (time.perf_counter() - timing.started) * 1000
            timing.fresh = pid not in self._backends
        self._backends.add(pid)
        return await super()._execute(conn, call, *args, **kwargs)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of the (sorted, non-empty) values lie."""
    return sorted_values[max(0, int(len(sorted_values) * fraction) - 1)]
