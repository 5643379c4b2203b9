"""The worker pod contract: every setting comes from a TASKQ_* environment variable.

The operator configures worker pods only through these variables, and `taskq worker` run by hand
with the same variables behaves exactly as the pod does. Documented in docs/worker.md.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taskq.models import MAX_PERIOD_SECONDS
from taskq.names import QueueName
from taskq.store.pool_mode import PoolMode

ENV_PREFIX = "TASKQ_"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    dsn: SecretStr = Field(description="PostgreSQL DSN (from a Secret in pods)")
    queues: Annotated[list[str], NoDecode] = Field(
        description="comma-separated queues to serve, as NAMESPACE/NAME"
    )
    app: str = Field(
        description="module that registers handlers, e.g. myapp.tasks (or mod:registry)"
    )
    concurrency: int = Field(default=10, ge=1, le=10_000, description="tasks run at once")
    batch_size: int = Field(default=100, ge=1, le=5_000, description="most tasks per claim")
    lease_seconds: float = Field(
        default=30.0, ge=1, le=MAX_PERIOD_SECONDS, description="lease renewed by heartbeats"
    )
    poll_interval: float = Field(default=1.0, gt=0, le=300, description="claim poll when idle")
    listen: bool = Field(default=True, description="LISTEN for wake-ups (off behind PgBouncer)")
    db_pool_mode: PoolMode = Field(
        default="session",
        description="how TASKQ_DSN reaches PostgreSQL: session (directly, or a pooler in session "
        "mode) or transaction (PgBouncer's transaction pooling)",
    )
    db_pool_size: int = Field(
        default=4,
        ge=2,
        le=100,
        description="most connections of the worker's pool (claim, outcomes, lease renewals and "
        "maintenance hold one each at a time); webhook deliveries add as many again",
    )
    shutdown_grace: float = Field(
        default=25.0, ge=0, le=MAX_PERIOD_SECONDS, description="SIGTERM: finish in-flight"
    )
    ack_interval: float = Field(default=0.005, ge=0, le=1, description="ack batching delay")
    maintenance_interval: float = Field(
        default=5.0,
        gt=0,
        le=MAX_PERIOD_SECONDS,
        description="period of maintenance (lease rescue, retention)",
    )
    db_timeout: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="deadline of each database call, connecting included "
        "(default: a third of lease_seconds, between 1 and 10 s)",
    )
    webhooks: bool = Field(
        default=True,
        description="also deliver completion webhooks (the queue taskq-system/webhooks)",
    )
    webhook_concurrency: int = Field(
        default=4, ge=1, le=1_000, description="webhook deliveries at once, besides concurrency"
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables the server")
    metrics_host: str = Field(default="127.0.0.1", description="bind address of /metrics")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    pod_uid: str | None = Field(default=None, description="set by the operator (downward API)")

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("queues")
    @classmethod
    def _valid_queues(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one queue, e.g. TASKQ_QUEUES=default/emails")
        for name in value:
            QueueName.parse(name)
        if len(set(value)) != len(value):
            raise ValueError("a queue is listed twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.listen and self.db_pool_mode == "transaction":
            raise ValueError(
                "TASKQ_LISTEN=true does not work with TASKQ_DB_POOL_MODE=transaction (LISTEN "
                "needs a server session of its own, which transaction pooling does not keep): "
                "set TASKQ_LISTEN=false"
            )
        if self.poll_interval >= self.lease_seconds:
            raise ValueError("poll_interval must be shorter than lease_seconds")
        if self.db_timeout is not None and self.db_timeout >= self.lease_seconds:
            raise ValueError(
                "db_timeout must be shorter than lease_seconds, or a hung lease renewal "
                "outlives the lease"
            )
        return self

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 3

    @property
    def db_deadline(self) -> float:
        if self.db_timeout is not None:
            return self.db_timeout
        return min(10.0, max(1.0, self.lease_seconds / 3))

    @property
    def outcome_stall_limit(self) -> float:
        """Outcomes left unrecorded this long fail the liveness probe: by then their leases
        have run out and the tasks are being run again elsewhere."""
        return 2 * self.lease_seconds


def env_name(setting: str) -> str:
    """The environment variable of a WorkerSettings field. The operator names the variables it
    sets through this, so a renamed or removed setting fails loudly there instead of leaving
    pods with a variable nothing reads."""
    if setting not in WorkerSettings.model_fields:
        raise KeyError(f"WorkerSettings has no setting {setting!r}")
    return ENV_PREFIX + setting.upper()


def new_worker_id(pod_uid: str | None) -> str:
    """Unique per process: the pod (or host), the pid, and a nonce against pid reuse."""
    return f"{pod_uid or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
