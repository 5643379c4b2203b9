"""The correlation id of the work in progress: set by the worker while a handler runs, so
tasks a handler enqueues carry their parent's correlation id unless given their own."""

from __future__ import annotations

import contextvars

current_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskq_correlation_id", default=None
)
