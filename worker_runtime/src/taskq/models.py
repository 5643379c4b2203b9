"""The data taskq speaks in: queue settings and stats, task requests, task and attempt records.

Settings are pydantic models (validated once, with field names in errors); the per-task
request is a slotted dataclass because bulk enqueue builds hundreds of thousands of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskq.errors import InvalidArgumentError

TaskState = Literal["scheduled", "ready", "running", "succeeded", "retrying", "dead", "canceled"]
BackoffKind = Literal["exponential", "linear", "fixed"]

MAX_TASK_NAME = 200
MAX_IDEMPOTENCY_KEY = 255


class Priority(enum.IntEnum):
    """Named priority levels; any integer 0..100 is valid too (higher runs first)."""

    LOW = 25
    NORMAL = 50
    HIGH = 75
    URGENT = 100


def resolve_priority(value: int | str | None, field: str = "priority") -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return int(Priority[value.upper()])
        except KeyError:
            raise InvalidArgumentError(
                field, f"{value!r} is not one of urgent, high, normal, low (or an integer 0..100)"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidArgumentError(field, f"{value!r} must be an integer 0..100 or a level name")
    return int(value)


class BackoffPolicy(BaseModel):
    """Delay between attempts: base * 2^(n-1) (exponential), base * n (linear) or base (fixed),
    capped at max_seconds, with +/- jitter (a fraction of the delay)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: BackoffKind = "exponential"
    base_seconds: float = Field(default=1.0, ge=0)
    max_seconds: float = Field(default=3600.0, ge=0)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _bounds(self) -> BackoffPolicy:
        if self.max_seconds < self.base_seconds:
            raise ValueError("max_seconds must be at least base_seconds")
        return self


class QueueSettings(BaseModel):
    """Per-queue behaviour; every field has a default, so QueueSettings() is a valid queue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_priority: int = Field(default=int(Priority.NORMAL), ge=0, le=100)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    backoff: BackoffPolicy = BackoffPolicy()
    timeout_seconds: float = Field(default=300.0, gt=0)
    payload_limit_bytes: int = Field(default=256 * 1024, ge=1, le=64 * 1024 * 1024)
    retention_succeeded_seconds: int = Field(default=86_400, ge=0)
    retention_dead_seconds: int = Field(default=7 * 86_400, ge=0)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    rate_burst: float | None = Field(default=None, ge=1)
    concurrency_limit: int | None = Field(default=None, ge=1)
    paused: bool = False


class QueueInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    namespace: str
    name: str
    settings: QueueSettings
    created_at: datetime

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class QueueStats(BaseModel):
    """Depth of a queue as the database saw it at observed_at.

    ready includes delayed/retrying tasks whose time has come; scheduled are those still waiting.
    """

    model_config = ConfigDict(frozen=True)

    ready: int
    scheduled: int
    running: int
    dead: int
    oldest_ready_at: datetime | None
    succeeded_last_minute: int
    dead_last_minute: int
    observed_at: datetime

    @property
    def oldest_ready_age_seconds(self) -> float:
        if self.oldest_ready_at is None:
            return 0.0
        return max(0.0, (self.observed_at - self.oldest_ready_at).total_seconds())


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task to enqueue. None means the queue's default."""

    task_name: str
    payload: Any = None
    priority: int | str | None = None
    delay: float | timedelta | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    correlation_id: str | None = None


class EnqueueResult(NamedTuple):
    """A named tuple, not a dataclass: a bulk enqueue makes one per task, and a frozen
    dataclass costs several times more to make."""

    id: int
    created: bool  # False: an unfinished task held the idempotency key; id is that task's


class TaskInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    queue: str
    task_name: str
    state: TaskState
    priority: int
    payload: Any
    run_at: datetime
    idempotency_key: str | None
    correlation_id: str | None
    attempts: int
    total_attempts: int
    max_attempts: int
    worker_id: str | None
    attempt_id: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    result: Any
    error: Any
    progress: Any
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class AttemptInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempt: int
    attempt_id: str
    worker_id: str
    started_at: datetime
    finished_at: datetime
    outcome: Literal["succeeded", "failed", "timed_out", "lost", "canceled", "released"]
    error: Any


@dataclass(frozen=True, slots=True)
class CancelResult:
    state: TaskState
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: int
    skipped: int  # dead tasks whose idempotency key a newer unfinished task holds
