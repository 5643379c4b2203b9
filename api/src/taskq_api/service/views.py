"""What the service answers with, beyond taskq's own models (which it reuses)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from taskq.models import AttemptInfo, QueueSettings, QueueStats, TaskInfo


class TaskDetails(TaskInfo):
    """A task with its history. `payload` and `result` are null, and `payload_hidden` true,
    when the key may not read payloads (a viewer key without reads_payloads)."""

    attempt_history: list[AttemptInfo]
    payload_hidden: bool = False


class QueueDetails(BaseModel):
    """A queue: its settings and its depth as the database saw it at `stats.observed_at`."""

    model_config = ConfigDict(frozen=True)

    queue: str
    namespace: str
    name: str
    created_at: datetime
    settings: QueueSettings
    stats: QueueStats
