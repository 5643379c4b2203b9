"""taskq: a Postgres-backed task queue.

Producers:  `client = await taskq.connect(dsn)`, then `await client.enqueue(...)`.
Workers:    register handlers with `@taskq.task("name")` and run `taskq worker`.
Delivery is at-least-once: see TaskContext.
"""

from taskq.client import Client, connect
from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    TaskqError,
    UnknownQueueError,
    UnknownTaskError,
)
from taskq.models import (
    BackoffPolicy,
    EnqueueResult,
    Priority,
    QueueInfo,
    QueueSettings,
    QueueStats,
    TaskInfo,
    TaskRequest,
)
from taskq.worker.context import FatalTaskError, TaskCanceledError, TaskContext
from taskq.worker.registry import (
    Registry,
    after_task,
    before_task,
    default_registry,
    on_task_error,
    task,
)

__all__ = [
    "BackoffPolicy",
    "Client",
    "DatabaseUnavailableError",
    "EnqueueResult",
    "FatalTaskError",
    "InvalidArgumentError",
    "PayloadTooLargeError",
    "Priority",
    "QueueInfo",
    "QueueSettings",
    "QueueStats",
    "Registry",
    "SchemaMissingError",
    "TaskCanceledError",
    "TaskContext",
    "TaskInfo",
    "TaskRequest",
    "TaskqError",
    "UnknownQueueError",
    "UnknownTaskError",
    "after_task",
    "before_task",
    "connect",
    "default_registry",
    "on_task_error",
    "task",
]
