"""TaskQueue: a durable queue in Postgres, named after the resource (`<namespace>/<name>`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from taskq.models import BackoffKind, BackoffPolicy, QueueSettings, QueueStats
from taskq_operator.api.base import K8sModel, cel
from taskq_operator.api.common import Condition, SecretKeyRef

BACKOFF_BOUNDS_MESSAGE = "retry.backoff.baseSeconds must not exceed retry.backoff.maxSeconds"
DATABASE_IMMUTABLE_MESSAGE = (
    "spec.database is immutable: the queue's tasks live in that database. "
    "To move a queue, create a new TaskQueue that names the other database."
)

NonNegative = Annotated[int, Field(ge=0)]


class DatabaseRef(K8sModel):
    """Where the queue's tasks are stored."""

    secret_key_ref: SecretKeyRef
    """A Secret key in this namespace whose value is a PostgreSQL DSN."""


class BackoffSpec(K8sModel):
    """Delay before a retry: base * 2^(n-1) (exponential), base * n (linear) or base (fixed),
    capped at maxSeconds, with +/- jitter as a fraction of the delay."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.baseSeconds <= self.maxSeconds", BACKOFF_BOUNDS_MESSAGE)
            ]
        }
    )

    kind: BackoffKind = "exponential"
    """exponential, linear or fixed."""
    base_seconds: float = Field(default=1.0, ge=0)
    """Delay before the first retry."""
    max_seconds: float = Field(default=3600.0, ge=0)
    """Longest delay between attempts."""
    jitter: float = Field(default=0.2, ge=0, le=1)
    """Random spread of each delay, as a fraction of it (0..1)."""

    @model_validator(mode="after")
    def _bounds(self) -> BackoffSpec:
        if self.base_seconds > self.max_seconds:
            raise ValueError(BACKOFF_BOUNDS_MESSAGE)
        return self


class RetrySpec(K8sModel):
    """How often and how soon a failed task runs again."""

    max_attempts: int = Field(default=3, ge=1, le=1000)
    """Attempts before a task is dead (1 = never retried)."""
    backoff: BackoffSpec = BackoffSpec()
    """Delay between attempts."""


class RetentionSpec(K8sModel):
    """How long finished tasks are kept before they are deleted."""

    succeeded_seconds: NonNegative = 86_400
    """Seconds a succeeded task (and its result) is kept."""
    dead_seconds: NonNegative = 7 * 86_400
    """Seconds a dead task is kept for inspection and replay."""


class RateLimitSpec(K8sModel):
    """A token bucket over task starts, shared by all workers of the queue."""

    per_second: float = Field(gt=0)
    """Task starts per second, on average."""
    burst: float | None = Field(default=None, ge=1)
    """Most starts at once after an idle period; defaults to perSecond."""


class TaskQueueSpec(K8sModel):
    """A queue's settings. Every field has a default, so an empty spec is a valid queue."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.database) == has(oldSelf.database)"
                    " && (!has(self.database) || self.database == oldSelf.database)",
                    DATABASE_IMMUTABLE_MESSAGE,
                    field_path=".database",
                )
            ]
        }
    )

    database: DatabaseRef | None = None
    """The database holding this queue; the operator's default database when omitted.
    Immutable."""
    default_priority: int = Field(default=50, ge=0, le=100)
    """Priority of tasks enqueued without one (0..100, higher runs first)."""
    retry: RetrySpec = RetrySpec()
    """Attempts and backoff."""
    timeout_seconds: int = Field(default=300, ge=1)
    """How long one attempt may run before it is timed out."""
    payload_limit_bytes: int = Field(default=256 * 1024, ge=1, le=64 * 1024 * 1024)
    """Largest accepted payload, in bytes of JSON."""
    retention: RetentionSpec = RetentionSpec()
    """How long finished tasks are kept."""
    rate_limit: RateLimitSpec | None = None
    """Limit on task starts per second; unlimited when omitted."""
    concurrency_limit: int | None = Field(default=None, ge=1)
    """Most tasks running at once across all workers; unlimited when omitted."""
    paused: bool = False
    """A paused queue accepts tasks but no worker claims them."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What deleting the TaskQueue does to its tasks: Retain keeps them in the database
    (re-creating the TaskQueue serves them again); Delete drops the queue and its tasks."""

    def queue_settings(self) -> QueueSettings:
        """The settings the queue store applies to this queue."""
        backoff = self.retry.backoff
        return QueueSettings(
            default_priority=self.default_priority,
            max_attempts=self.retry.max_attempts,
            backoff=BackoffPolicy(
                kind=backoff.kind,
                base_seconds=backoff.base_seconds,
                max_seconds=backoff.max_seconds,
                jitter=backoff.jitter,
            ),
            timeout_seconds=float(self.timeout_seconds),
            payload_limit_bytes=self.payload_limit_bytes,
            retention_succeeded_seconds=self.retention.succeeded_seconds,
            retention_dead_seconds=self.retention.dead_seconds,
            rate_limit_per_second=self.rate_limit.per_second if self.rate_limit else None,
            rate_burst=self.rate_limit.burst if self.rate_limit else None,
            concurrency_limit=self.concurrency_limit,
            paused=self.paused,
        )


class TaskCounts(K8sModel):
    """Tasks by state when the queue was last observed."""

    ready: NonNegative
    """Tasks that may run now and wait for a worker."""
    scheduled: NonNegative
    """Tasks waiting for their run time (delayed, or retrying after a backoff)."""
    running: NonNegative
    """Tasks a worker holds."""
    dead: NonNegative
    """Tasks out of attempts, kept for replay until their retention ends."""


class Throughput(K8sModel):
    """Tasks finished in the minute before the observation."""

    succeeded_last_minute: NonNegative
    """Tasks that succeeded."""
    dead_last_minute: NonNegative
    """Tasks that became dead."""


class TaskQueueStatus(K8sModel):
    """The queue as the operator last saw it."""

    observed_generation: NonNegative | None = None
    """The .metadata.generation the queue's settings were last applied from."""
    conditions: list[Condition] = Field(
        default=[],
        max_length=8,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Ready: the queue exists in its database with the spec's settings."""
    tasks: TaskCounts | None = None
    """Tasks by state."""
    oldest_ready_time: datetime | None = None
    """Since when the oldest ready task has waited; absent when none waits."""
    throughput: Throughput | None = None
    """Recently finished tasks."""
    observed_at: datetime | None = None
    """When tasks, oldestReadyTime and throughput were read from the database."""

    def with_stats(self, stats: QueueStats) -> TaskQueueStatus:
        """This status with the observation `stats` in place of the previous one."""
        return self.model_copy(
            update={
                "tasks": TaskCounts(
                    ready=stats.ready,
                    scheduled=stats.scheduled,
                    running=stats.running,
                    dead=stats.dead,
                ),
                "oldest_ready_time": stats.oldest_ready_at,
                "throughput": Throughput(
                    succeeded_last_minute=stats.succeeded_last_minute,
                    dead_last_minute=stats.dead_last_minute,
                ),
                "observed_at": stats.observed_at,
            }
        )
