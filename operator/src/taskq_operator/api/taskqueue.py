"""TaskQueue: a durable queue in Postgres, named after the resource (`<namespace>/<name>`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from taskq.models import BackoffKind, QueueSettings, QueueStats, setting_fields
from taskq_operator.api.base import K8sModel, cel
from taskq_operator.api.common import Condition, SecretKeyRef, SecretKeySelector

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


@dataclass(frozen=True, slots=True)
class HoldsSetting:
    """Metadata of a spec field holding the queue setting at `path` of QueueSettings."""

    path: str
    whole: bool = False  # the spec takes whole numbers of a setting that may be fractional


def queue_setting(path: str, *, required: bool = False, whole: bool = False) -> Any:
    """A spec field for the queue setting at `path` ("backoff.kind"), with the setting's
    default, bounds and description: QueueSettings states them once, for the CRD too.
    `required`: no default (the object around it is what is optional). `whole`: whole numbers
    only, so the default is rounded and a bound `> x` becomes `>= the next integer`."""
    [setting] = [f for f in setting_fields() if f.path == path]
    bounds = setting.bounds
    if whole and "gt" in bounds:
        bounds["ge"] = math.floor(bounds.pop("gt")) + 1
    default = setting.info.default
    if whole and isinstance(default, float):
        default = round(default)
    field: FieldInfo = Field(
        default=PydanticUndefined if required else default,
        description=setting.info.description,
        **bounds,
    )
    field.metadata.append(HoldsSetting(path, whole))
    return field


def _held_settings(model: K8sModel) -> Iterator[tuple[str, Any]]:
    """(QueueSettings path, value) of every setting a spec sets, its nested objects included;
    an omitted object (rateLimit) sets none, so those settings keep their defaults."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        held = next((m for m in info.metadata if isinstance(m, HoldsSetting)), None)
        if held is not None:
            yield held.path, value
        elif isinstance(value, K8sModel):
            yield from _held_settings(value)


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

    kind: BackoffKind = queue_setting("backoff.kind")
    base_seconds: float = queue_setting("backoff.base_seconds")
    max_seconds: float = queue_setting("backoff.max_seconds")
    jitter: float = queue_setting("backoff.jitter")

    @model_validator(mode="after")
    def _bounds(self) -> BackoffSpec:
        # BackoffPolicy's rule, in the words of the CEL rule above
        if self.base_seconds > self.max_seconds:
            raise ValueError(BACKOFF_BOUNDS_MESSAGE)
        return self


class RetrySpec(K8sModel):
    """How often and how soon a failed task runs again."""

    max_attempts: int = queue_setting("max_attempts")
    backoff: BackoffSpec = BackoffSpec()
    """Delay between attempts."""


class RetentionSpec(K8sModel):
    """How long finished tasks are kept before they are deleted."""

    succeeded_seconds: int = queue_setting("retention_succeeded_seconds")
    dead_seconds: int = queue_setting("retention_dead_seconds")


class RateLimitSpec(K8sModel):
    """A token bucket over task starts, shared by all workers of the queue."""

    per_second: float = queue_setting("rate_limit_per_second", required=True)
    burst: float | None = queue_setting("rate_burst")


# The settings' defaults, bounds and descriptions come from taskq's QueueSettings (queue_setting).
WebhookEvent = Literal["Succeeded", "Dead", "Canceled"]
_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
WEBHOOK_NAMES_MESSAGE = "spec.webhooks: each webhook needs a name of its own"


class QueueWebhook(K8sModel):
    """An endpoint called when the queue's tasks finish, signed as Standard Webhooks
    (docs/webhooks.md). Without url it signs the calls to the callback URLs the queue's tasks
    were given at enqueue (at most one such entry)."""

    name: Annotated[str, Field(pattern=_LABEL, max_length=63)]
    """The endpoint's name in the queue."""
    url: Annotated[str, Field(pattern=r"^https?://[^/?#]", max_length=2048)] | None = None
    """The receiver; https:// unless allowHosts names its host."""
    events: list[WebhookEvent] = Field(
        default=["Succeeded", "Dead", "Canceled"], min_length=1, max_length=3
    )
    """The finished states to announce."""
    secret_ref: SecretKeySelector
    """A Secret key in this namespace holding the signing secret, whsec_<base64>."""
    allow_hosts: list[Annotated[str, Field(max_length=253)]] = Field(default=[], max_length=32)
    """Hosts that may be called over plain HTTP and at private, loopback or link-local
    addresses."""


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
    default_priority: int = queue_setting("default_priority")
    retry: RetrySpec = RetrySpec()
    """Attempts and backoff."""
    timeout_seconds: int = queue_setting("timeout_seconds", whole=True)
    payload_limit_bytes: int = queue_setting("payload_limit_bytes")
    retention: RetentionSpec = RetentionSpec()
    """How long finished tasks are kept."""
    rate_limit: RateLimitSpec | None = None
    """Limit on task starts per second; unlimited when omitted."""
    concurrency_limit: int | None = queue_setting("concurrency_limit")
    paused: bool = queue_setting("paused")
    # a list map keyed by name: the API server refuses two entries of one name
    webhooks: list[QueueWebhook] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    """Endpoints called when the queue's tasks succeed, die or are canceled."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What deleting the TaskQueue does to its tasks: Retain keeps them in the database
    (re-creating the TaskQueue serves them again); Delete drops the queue and its tasks."""

    def queue_settings(self) -> QueueSettings:
        """The settings the queue store applies to this queue."""
        return QueueSettings.from_paths(dict(_held_settings(self)))

    @model_validator(mode="after")
    def _webhook_names(self) -> TaskQueueSpec:
        names = [w.name for w in self.webhooks or []]
        if len(set(names)) != len(names):
            raise ValueError(WEBHOOK_NAMES_MESSAGE)
        return self


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


# QueueStats's counts by where the status shows them
_CAPPED: Final = {
    "ready": "tasks.ready",
    "scheduled": "tasks.scheduled",
    "running": "tasks.running",
    "dead": "tasks.dead",
    "succeeded_last_minute": "throughput.succeededLastMinute",
    "dead_last_minute": "throughput.deadLastMinute",
}
CappedCount = Literal[
    "tasks.ready",
    "tasks.scheduled",
    "tasks.running",
    "tasks.dead",
    "throughput.succeededLastMinute",
    "throughput.deadLastMinute",
]


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
    count_cap: NonNegative | None = None
    """Where the counts of tasks and throughput stop (the operator's count cap), so that
    reading them costs the same whatever the backlog."""
    capped: list[CappedCount] | None = Field(default=None, max_length=len(_CAPPED))
    """The counts that reached countCap: each is at least its value, not exactly it. Absent
    when every count is exact."""

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
                "count_cap": stats.count_cap,
                "capped": [_CAPPED[c] for c in stats.capped] or None,
            }
        )
