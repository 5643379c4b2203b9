"""The data taskq speaks in: queue settings and stats, task requests, task and attempt records.

Settings are pydantic models (validated once, with field names in errors); the per-task
request is a slotted dataclass because bulk enqueue builds hundreds of thousands of them.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic.fields import FieldInfo

from taskq.errors import InvalidArgumentError

TaskState = Literal["scheduled", "ready", "running", "succeeded", "retrying", "dead", "canceled"]
BackoffKind = Literal["exponential", "linear", "fixed"]

MAX_TASK_NAME = 200
MAX_IDEMPOTENCY_KEY = 255
# A task's callback URL (taskq.enqueue_many checks the same shape for SQL callers).
MAX_CALLBACK_URL = 2048
CALLBACK_URL = re.compile(r"https?://[^/?#]")
# Upper bounds of durations and rates, in every door (Python, CLI, CRD, SQL): past them the
# database's timestamps and integers overflow, or a typo (ms for s) goes unnoticed.
MAX_DELAY_SECONDS = 10 * 365 * 86_400  # a task's delay: ten years
MAX_TIMEOUT_SECONDS = 30 * 86_400  # one attempt's timeout: thirty days
MAX_RETENTION_SECONDS = 10 * 365 * 86_400  # how long finished tasks are kept: ten years
MAX_RATE = 1_000_000  # tasks a second, and a burst or a concurrency limit
# A worker's lease, how long a silent worker counts as alive, a maintenance period: one day.
# Past it a crashed worker's tasks would wait longer than anyone waits for them.
MAX_PERIOD_SECONDS = 86_400
# Most rows one call of a maintenance or claim function touches (its p_limit).
MAX_BATCH = 100_000


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


class Row(Protocol):
    def __getitem__(self, column: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a queue setting lives outside Python: its column of taskq.queues (and the key
    naming it in the settings JSON of taskq.ensure_queue), and its `taskq queue create` flag
    when that is not the field's name."""

    column: str
    flag: str | None = None


class BackoffPolicy(BaseModel):
    """Delay between attempts: base * 2^(n-1) (exponential), base * n (linear) or base (fixed),
    capped at max_seconds, with +/- jitter (a fraction of the delay)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    kind: Annotated[BackoffKind, Stored("backoff_kind", flag="backoff")] = "exponential"
    """exponential, linear or fixed."""
    base_seconds: Annotated[
        float, Stored("backoff_base_s", flag="backoff-base"), Field(ge=0, le=MAX_DELAY_SECONDS)
    ] = 1.0
    """Delay before the first retry."""
    max_seconds: Annotated[
        float, Stored("backoff_max_s", flag="backoff-max"), Field(ge=0, le=MAX_DELAY_SECONDS)
    ] = 3600.0
    """Longest delay between attempts."""
    jitter: Annotated[float, Stored("backoff_jitter"), Field(ge=0, le=1)] = 0.2
    """Random spread of each delay, as a fraction of it (0..1)."""

    @model_validator(mode="after")
    def _bounds(self) -> BackoffPolicy:
        if self.max_seconds < self.base_seconds:
            raise ValueError("max_seconds must be at least base_seconds")
        return self


class QueueSettings(BaseModel):
    """Per-queue behaviour; every field has a default, so QueueSettings() is a valid queue.

    The one definition of the queue settings: each field's type, default, bounds and
    description (its docstring) are read by the store (the `Stored` column), the CLI (a flag
    per field) and the operator's TaskQueue spec (defaults, bounds and descriptions of the CRD).
    A new setting is a field here, a column in a migration and a field of the TaskQueue spec;
    the tests iterate these fields, so they cover it without being edited.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    default_priority: Annotated[int, Stored("default_priority"), Field(ge=0, le=100)] = int(
        Priority.NORMAL
    )
    """Priority of tasks enqueued without one (0..100, higher runs first)."""
    max_attempts: Annotated[int, Stored("max_attempts"), Field(ge=1, le=1000)] = 3
    """Attempts before a task is dead (1 = never retried)."""
    backoff: BackoffPolicy = BackoffPolicy()
    """Delay between attempts."""
    timeout_seconds: Annotated[
        float, Stored("timeout_s", flag="timeout"), Field(gt=0, le=MAX_TIMEOUT_SECONDS)
    ] = 300.0
    """How long one attempt may run before it is timed out."""
    payload_limit_bytes: Annotated[
        int, Stored("payload_limit_bytes", flag="payload-limit"), Field(ge=1, le=64 * 1024 * 1024)
    ] = 256 * 1024
    """Largest accepted payload, in bytes of JSON."""
    retention_succeeded_seconds: Annotated[
        int,
        Stored("retention_succeeded_s", flag="retention-succeeded"),
        Field(ge=0, le=MAX_RETENTION_SECONDS),
    ] = 86_400
    """Seconds a succeeded task (and its result) is kept."""
    retention_dead_seconds: Annotated[
        int,
        Stored("retention_dead_s", flag="retention-dead"),
        Field(ge=0, le=MAX_RETENTION_SECONDS),
    ] = 7 * 86_400
    """Seconds a dead task is kept for inspection and replay."""
    rate_limit_per_second: Annotated[
        float | None, Stored("rate_limit_per_s", flag="rate-limit"), Field(gt=0, le=MAX_RATE)
    ] = None
    """Task starts per second across all workers, on average."""
    rate_burst: Annotated[float | None, Stored("rate_burst"), Field(ge=1, le=MAX_RATE)] = None
    """Most starts at once after an idle period; the rate limit when unset."""
    concurrency_limit: Annotated[
        int | None, Stored("concurrency_limit"), Field(ge=1, le=MAX_RATE)
    ] = None
    """Most tasks running at once across all workers; unlimited when unset."""
    paused: Annotated[bool, Stored("paused")] = False
    """A paused queue accepts tasks but no worker claims them."""

    def to_columns(self) -> dict[str, Any]:
        """Column of taskq.queues -> value: the settings JSON of taskq.ensure_queue."""
        return {field.column: field.value_in(self) for field in setting_fields()}

    @classmethod
    def from_columns(cls, row: Row) -> QueueSettings:
        """The settings stored in a row of taskq.queues (a mapping, or an asyncpg Record)."""
        return cls.from_paths({field.path: row[field.column] for field in setting_fields()})

    @classmethod
    def from_paths(cls, values: Mapping[str, Any]) -> QueueSettings:
        """Settings from dotted field paths ("backoff.kind"); a path left out keeps its
        default."""
        nested: dict[str, Any] = {}
        for path, value in values.items():
            *parents, leaf = path.split(".")
            node = nested
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
        return cls.model_validate(nested)


# Setting names end in their unit (timeout_seconds, payload_limit_bytes), longest match first.
_UNITS = ("per_second", "seconds", "bytes")


@dataclass(frozen=True, slots=True)
class SettingField:
    """One queue setting: a leaf field of QueueSettings, its path ("backoff.kind") and where it
    is stored."""

    path: str
    info: FieldInfo
    stored: Stored

    @property
    def column(self) -> str:
        return self.stored.column

    @property
    def bounds(self) -> dict[str, Any]:
        """The setting's bounds as Field() takes them: gt, ge, lt, le."""
        return {
            name: getattr(constraint, name)
            for constraint in self.info.metadata
            for name in ("gt", "ge", "lt", "le")
            if hasattr(constraint, name)
        }

    @property
    def unit(self) -> str | None:
        """The unit, as the field's name ends: seconds, bytes or per_second."""
        return next((u for u in _UNITS if self.path.endswith("_" + u)), None)

    @property
    def flag(self) -> str:
        """The `taskq queue create` option, without its dashes."""
        return self.stored.flag or self.path.replace(".", "-").replace("_", "-")

    def value_in(self, settings: QueueSettings) -> Any:
        value: Any = settings
        for name in self.path.split("."):
            value = getattr(value, name)
        return value


@functools.cache
def setting_fields() -> tuple[SettingField, ...]:
    """Every queue setting, in QueueSettings' order, nested models' fields in place."""

    def leaves(model: type[BaseModel], prefix: str) -> Iterator[SettingField]:
        for name, info in model.model_fields.items():
            stored = next((m for m in info.metadata if isinstance(m, Stored)), None)
            if stored is not None:
                yield SettingField(prefix + name, info, stored)
            elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from leaves(info.annotation, f"{prefix}{name}.")
            else:
                raise TypeError(f"queue setting {prefix}{name} has no Stored column")

    return tuple(leaves(QueueSettings, ""))


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


# The counts of QueueStats, each capped at its count_cap.
COUNTS: Final = (
    "ready", "scheduled", "running", "dead", "succeeded_last_minute", "dead_last_minute",
)  # fmt: skip


class QueueStats(BaseModel):
    """Depth of a queue as the database saw it at observed_at.

    ready includes delayed/retrying tasks whose time has come; scheduled are those still waiting.
    Each count stops at count_cap tasks, so a reading costs the same whatever the backlog: a
    count equal to count_cap means at least that many (`capped` names those counts).
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
    count_cap: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def capped(self) -> tuple[str, ...]:
        """The counts that reached count_cap: lower bounds, not exact numbers."""
        return tuple(name for name in COUNTS if getattr(self, name) >= self.count_cap)

    def shown(self, count: str) -> str:
        """A count as people read it: "≥ 10000" when it reached the cap."""
        value = getattr(self, count)
        return f"≥ {value}" if count in self.capped else str(value)

    @property
    def oldest_ready_age_seconds(self) -> float:
        if self.oldest_ready_at is None:
            return 0.0
        return max(0.0, (self.observed_at - self.oldest_ready_at).total_seconds())


class ThroughputMinute(BaseModel):
    """The tasks of a queue that finished in one minute (starting at `minute`), by outcome."""

    model_config = ConfigDict(frozen=True)

    minute: datetime
    succeeded: int
    dead: int


class WaitMinute(BaseModel):
    """How long succeeded tasks that finished in one minute waited from due (enqueued, or the
    end of their delay or backoff) to the start of the attempt that succeeded, from a sample of
    `sampled` of them; None in a minute without any."""

    model_config = ConfigDict(frozen=True)

    minute: datetime
    sampled: int
    p50_s: float | None
    p95_s: float | None


class ScalingDecision(BaseModel):
    """One change of a WorkerPool's replicas by the operator: when, from how many to how many,
    and why (the autoscaler's reason word and message)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    from_replicas: int
    to_replicas: int
    reason: str
    message: str


class PoolReport(BaseModel):
    """A WorkerPool as the operator sees it: the queues it serves (in its namespace), its
    autoscaling mode and bounds, the replicas it wants, has and has ready."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    queues: tuple[str, ...]
    autoscaling: str
    min_replicas: int
    max_replicas: int
    desired: int
    replicas: int
    ready: int


class WorkerPoolInfo(PoolReport):
    """A pool as the operator last recorded it in the queues' database (taskq.worker_pools),
    with its last scaling decisions, newest first."""

    decisions: tuple[ScalingDecision, ...]
    updated_at: datetime


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
    callback_url: str | None = None  # called when the task finishes (docs/webhooks.md)


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
    traceparent: str | None = None
    """The W3C trace context of the span that enqueued it (docs/tracing.md)."""
    callback_url: str | None = None
    """Where its outcome is announced, signed by the queue's callback signer (docs/webhooks.md)."""


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


@dataclass(frozen=True, slots=True)
class BulkCancelResult:
    """What a bulk cancel did to each task it named, counted."""

    canceled: int  # was waiting: canceled
    asked: int  # was running: asked to stop
    already: int  # was canceled, or asked to stop, before
    finished: int  # had succeeded or was dead: nothing to cancel
    missing: int  # no such task in the queue (purged, or never its own)

    def __add__(self, other: BulkCancelResult) -> BulkCancelResult:
        return BulkCancelResult(
            self.canceled + other.canceled, self.asked + other.asked,
            self.already + other.already, self.finished + other.finished,
            self.missing + other.missing,
        )


@dataclass(frozen=True, slots=True)
class BulkRetryResult:
    """What a bulk retry did to each task it named, counted."""

    retried: int  # was dead: ready again
    held: int  # dead, but a newer unfinished task holds its idempotency key
    not_dead: int  # not a dead task of the queue (retried already, never failed, or gone)

    def __add__(self, other: BulkRetryResult) -> BulkRetryResult:
        return BulkRetryResult(
            self.retried + other.retried, self.held + other.held,
            self.not_dead + other.not_dead,
        )


@dataclass(frozen=True, slots=True)
class ErrorSearch:
    """A page of tasks found by error text, and where its bounded walk ended when that ended
    the page: walked_to, the oldest task id read (the next page starts below it); None when
    the page is full or the walk reached the queue's oldest task."""

    tasks: list[TaskInfo]
    walked_to: int | None
