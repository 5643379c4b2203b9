"""What a handler sees of the task it runs."""

from __future__ import annotations

import contextvars
import threading
import uuid
from datetime import datetime
from typing import Any

from taskq import jsonutil
from taskq.store.execution import ClaimedTask

# Set while a handler runs: logs carry these ids, and tasks enqueued from inside a handler
# inherit its correlation id.
current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current_task", default=None
)


_event_lock = threading.Lock()
_UNDECODED = object()


class TaskCanceledError(Exception):
    """Raise from a handler to end the attempt as canceled (after seeing ctx.cancel_requested)."""


class FatalTaskError(Exception):
    """Raise from a handler when trying again cannot help (a refused target, bad input): the
    task goes to the dead letters at once, from where it can be replayed once fixed."""


class TaskContext:
    """The running attempt: payload, ids, progress reporting and cooperative cancellation.

    Delivery is at-least-once: a task may run again after a crash, so side effects should be
    idempotent (use `task_id` or `idempotency_key` as the key of your own writes).
    """

    __slots__ = (
        "_cancel_event",
        "_canceled",
        "_claimed",
        "_payload",
        "_progress",
        "_progress_dirty",
        "worker_id",
    )

    def __init__(self, claimed: ClaimedTask, worker_id: str) -> None:
        # The claimed row is kept as is (a context is made per task: copying its fields into
        # this object was measurable); the properties below read it.
        self._claimed = claimed
        self._payload: Any = _UNDECODED
        self.worker_id = worker_id
        # Most attempts are never canceled: the threading.Event is made only when waited on.
        self._canceled = False
        self._cancel_event: threading.Event | None = None
        self._progress: str | None = None
        self._progress_dirty = False

    @property
    def queue(self) -> str:
        """The queue, as NAMESPACE/NAME."""
        return self._claimed.queue

    @property
    def task_id(self) -> int:
        return self._claimed.id

    @property
    def task_name(self) -> str:
        return self._claimed.task_name

    @property
    def attempt(self) -> int:
        """1 for the first try; counts every try, also those before a replay."""
        return self._claimed.attempt

    @property
    def attempt_id(self) -> uuid.UUID:
        return self._claimed.attempt_id

    @property
    def max_attempts(self) -> int:
        return self._claimed.max_attempts

    @property
    def correlation_id(self) -> str | None:
        return self._claimed.correlation_id

    @property
    def idempotency_key(self) -> str | None:
        return self._claimed.idempotency_key

    @property
    def created_at(self) -> datetime:
        return self._claimed.created_at

    @property
    def payload(self) -> Any:
        """The task's JSON payload, decoded on first use."""
        if self._payload is _UNDECODED:
            self._payload = jsonutil.loads(self._claimed.payload_json)
        return self._payload

    @property
    def cancel_requested(self) -> bool:
        """True once the task was canceled, timed out, or the worker is shutting down past its
        grace period. Long-running sync handlers should check it and stop."""
        return self._canceled

    def wait_canceled(self, timeout: float | None = None) -> bool:
        """For sync handlers: sleep up to `timeout`, waking early on cancellation."""
        with _event_lock:
            if self._cancel_event is None:
                self._cancel_event = threading.Event()
                if self._canceled:
                    self._cancel_event.set()
        return self._cancel_event.wait(timeout)

    def report_progress(self, progress: Any) -> None:
        """Record progress (any JSON value); stored with the next lease renewal. Thread-safe."""
        self._progress = jsonutil.dumps(progress, "progress")
        self._progress_dirty = True

    def take_progress(self) -> str | None:
        if not self._progress_dirty:
            return None
        self._progress_dirty = False
        return self._progress

    def keep_progress(self) -> None:
        """The progress taken could not be stored: send the latest with the next renewal."""
        self._progress_dirty = True

    def request_cancel(self) -> None:
        with _event_lock:
            self._canceled = True
            if self._cancel_event is not None:
                self._cancel_event.set()
