"""The parts of Kubernetes core/v1 types a WorkerPool exposes, field for field, so a user
writes them exactly as in a Pod spec."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from taskq_operator.api.base import FreeForm, K8sModel, Quantity
from taskq_operator.api.common import ObjectName

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^=]+$")]


class EnvVar(K8sModel):
    """An environment variable of the worker container."""

    name: EnvName
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """Literal value."""
    value_from: FreeForm | None = None
    """A source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""


class ConfigMapEnvSource(K8sModel):
    """All keys of a ConfigMap as variables."""

    name: ObjectName
    """Name of the ConfigMap."""
    optional: bool | None = None
    """Start the pod even when the ConfigMap does not exist."""


class SecretEnvSource(K8sModel):
    """All keys of a Secret as variables."""

    name: ObjectName
    """Name of the Secret."""
    optional: bool | None = None
    """Start the pod even when the Secret does not exist."""


class EnvFromSource(K8sModel):
    """Variables from every key of a ConfigMap or Secret."""

    prefix: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Prepended to each key."""
    config_map_ref: ConfigMapEnvSource | None = None
    """The ConfigMap to read."""
    secret_ref: SecretEnvSource | None = None
    """The Secret to read."""


class ResourceRequirements(K8sModel):
    """Compute resources of one worker container."""

    limits: dict[str, Quantity] = Field(default={}, max_length=32)
    """Most of each resource the container may use."""
    requests: dict[str, Quantity] = Field(default={}, max_length=32)
    """Resources the scheduler reserves for the container."""


class Toleration(K8sModel):
    """Lets worker pods schedule onto nodes with a matching taint."""

    key: Annotated[str, StringConstraints(max_length=316)] | None = None
    """Taint key; empty with operator Exists matches all taints."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    """Taint value, for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when omitted."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays on a node after the taint appears."""
