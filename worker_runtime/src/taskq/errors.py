"""Errors a taskq user can act on. Each message names what was wrong and how to fix it."""

from __future__ import annotations


class TaskqError(Exception):
    """Base of every error taskq raises on purpose."""


class InvalidArgumentError(TaskqError, ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}")
        self.field = field


class TaskStateError(InvalidArgumentError):
    """A task the caller named is not in the queue, or not in a state the operation needs
    (replaying a task that is not dead): the request was well formed, the tasks are not as it
    assumed. An InvalidArgumentError for the API (422); the CLI exits 1, not 2, for it."""


class UnknownQueueError(TaskqError, LookupError):
    def __init__(self, queue: str) -> None:
        super().__init__(
            f"unknown queue {queue!r}: create it first "
            "(taskq queue create NAMESPACE/NAME, or apply a TaskQueue resource)"
        )
        self.queue = queue


class PayloadTooLargeError(TaskqError, ValueError):
    pass


class UnknownTaskError(TaskqError, LookupError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


class UnknownApiKeyError(TaskqError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no API key named {name!r} (taskq keys list shows them)")
        self.name = name


class ApiKeyConflictError(TaskqError):
    """The key's state forbids the change: its name is taken, or it is already revoked."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"API key {name!r} {problem}")
        self.name = name


class UnknownScheduleError(TaskqError, LookupError):
    def __init__(self, schedule: str) -> None:
        super().__init__(f"no schedule {schedule!r} (taskq schedules list shows them)")
        self.schedule = schedule


class UnknownWebhookError(TaskqError, LookupError):
    def __init__(self, queue: str, name: str) -> None:
        super().__init__(
            f"queue {queue!r} has no webhook {name!r} (taskq webhooks list shows them)"
        )
        self.queue = queue
        self.name = name


class ScheduleExistsError(TaskqError):
    def __init__(self, schedule: str) -> None:
        super().__init__(
            f"schedule {schedule!r} already exists: delete it first, or choose another name"
        )
        self.schedule = schedule


class DatabaseUnavailableError(TaskqError, ConnectionError):
    """The database cannot be reached or refused us; the message names the cause."""


class SchemaMissingError(TaskqError):
    def __init__(self) -> None:
        super().__init__("the taskq schema is not installed in this database: run `taskq migrate`")
