"""What the service answers with, beyond taskq's own models (which it reuses)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from taskq.models import AttemptInfo, QueueSettings, QueueStats, TaskInfo


class TaskView(TaskInfo):
    """A task as a key may see it: `payload`, `result` and `callback_url` are null, and
    `payload_hidden` true, when the key may not read payloads (a viewer key without
    reads_payloads)."""

    payload_hidden: bool = False


class TaskDetails(TaskView):
    """A task with its history. `payload`, `result` and `callback_url` are null, and
    `payload_hidden` true, when the key may not read payloads (a viewer key without
    reads_payloads)."""

    attempt_history: list[AttemptInfo]


class TaskPage(BaseModel):
    """One page of a listing, newest task first."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    items: list[TaskView]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""
    partial: bool = False
    """True: an error_contains page read as many tasks as one page may before it was full;
    it may hold fewer tasks than asked (none, even), and next_cursor goes on from where the
    reading stopped."""


class QueueDetails(BaseModel):
    """A queue: its settings and its depth as the database saw it at `stats.observed_at`."""

    model_config = ConfigDict(frozen=True)

    queue: str
    namespace: str
    name: str
    created_at: datetime
    settings: QueueSettings
    stats: QueueStats


class Overview(BaseModel):
    """The queues a key reads, with their depth, and the namespaces they are in."""

    model_config = ConfigDict(frozen=True)

    namespaces: list[str]
    """Every namespace holding a queue the key reads, whatever the filter."""
    queues: list[QueueDetails]
    """A page of the queues of the namespace asked for (all of them without one), by
    namespace and name."""
    after: str | None = None
    """The queue this page starts after (None: the first page)."""
    next_after: str | None = None
    """The last queue of this page, where the next one starts; None on the last page."""
