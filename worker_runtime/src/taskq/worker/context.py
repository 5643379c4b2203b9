"""What a handler sees of the task it runs."""

from __future__ import annotations

import contextvars
import threading
import uuid
from datetime import datetime
from typing import Any

from taskq import jsonutil

# Set while a handler runs: logs carry these ids, and tasks enqueued from inside a handler
# inherit its correlation id.
current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current_task", default=None
)


_event_lock = threading.Lock()


class TaskCanceledError(Exception):
    """Raise from a handler to end the attempt as canceled (after seeing ctx.cancel_requested)."""


class TaskContext:
    """The running attempt: payload, ids, progress reporting and cooperative cancellation.

    Delivery is at-least-once: a task may run again after a crash, so side effects should be
    idempotent (use `task_id` or `idempotency_key` as the key of your own writes).
    """

    __slots__ = (
        "_cancel_event",
        "_canceled",
        "_payload",
        "_payload_json",
        "_progress",
        "_progress_dirty",
        "attempt",
        "attempt_id",
        "correlation_id",
        "created_at",
        "idempotency_key",
        "max_attempts",
        "queue",
        "task_id",
        "task_name",
        "worker_id",
    )

    def __init__(
        self,
        *,
        queue: str,
        task_id: int,
        task_name: str,
        payload_json: str,
        attempt: int,
        attempt_id: uuid.UUID,
        max_attempts: int,
        correlation_id: str | None,
        idempotency_key: str | None,
        created_at: datetime,
        worker_id: str,
    ) -> None:
        self.queue = queue
        self.task_id = task_id
        self.task_name = task_name
        self._payload_json: str | None = payload_json
        self._payload: Any = None
        self.attempt = attempt
        self.attempt_id = attempt_id
        self.max_attempts = max_attempts
        self.correlation_id = correlation_id
        self.idempotency_key = idempotency_key
        self.created_at = created_at
        self.worker_id = worker_id
        # Most attempts are never canceled: the threading.Event is made only when waited on.
        self._canceled = False
        self._cancel_event: threading.Event | None = None
        self._progress: str | None = None
        self._progress_dirty = False

    @property
    def payload(self) -> Any:
        """The task's JSON payload, decoded on first use."""
        if self._payload_json is not None:
            self._payload = jsonutil.loads(self._payload_json)
            self._payload_json = None
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

    def request_cancel(self) -> None:
        with _event_lock:
            self._canceled = True
            if self._cancel_event is not None:
                self._cancel_event.set()
