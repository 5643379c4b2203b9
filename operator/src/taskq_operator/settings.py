"""Operator settings, from TASKQ_OPERATOR_* environment variables (built in __main__)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKQ_OPERATOR_", extra="ignore", frozen=True)

    default_dsn: SecretStr | None = Field(
        default=None, description="DSN of the default database (TaskQueues without spec.database)"
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default=[], description="comma-separated namespaces (globs allowed) to watch; empty: all"
    )
    status_interval: float = Field(
        default=2.0, gt=0, le=300, description="seconds between TaskQueue status refreshes"
    )
    count_cap: int = Field(
        default=1_000,
        ge=1,
        le=1_000_000_000,
        description="where a TaskQueue's status stops counting its tasks by state (shown as "
        "at least that many): a reading then costs the same whatever the backlog",
    )
    maintenance_interval: float = Field(
        default=5.0, gt=0, description="seconds between lease rescue and retention runs"
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="0 disables /metrics")
    metrics_host: str = Field(default="127.0.0.1", description="bind address of /metrics")
    liveness_port: int = Field(default=8081, ge=0, le=65535, description="kopf's /healthz")
    min_reconcile_gap: float = Field(
        default=0.5, ge=0, description="least seconds between two scaling passes of one pool"
    )
    keys_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="the namespace whose TaskqApiKeys may reach other namespaces, or every one, "
        "and be admin keys; elsewhere a TaskqApiKey reaches only its own namespace. None: no "
        "namespace may",
    )
    key_interval: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds between checks of each TaskqApiKey (its Secret still holds the "
        "key; expiry; last use)",
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
