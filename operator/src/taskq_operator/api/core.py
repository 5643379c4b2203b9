"""The parts of Kubernetes core/v1 types a WorkerPool exposes, field for field, so a user
writes them exactly as in a Pod spec."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from taskq_operator.api.base import FreeForm, K8sModel, Quantity, cel
from taskq_operator.api.common import ObjectName

ENV_VALUE_MESSAGE = "an env entry has value or valueFrom, not both"
ENV_FROM_MESSAGE = "an envFrom entry names exactly one of configMapRef or secretRef"

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^=]+$")]


class EnvVar(K8sModel):
    """An environment variable of the worker container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.value) || !has(self.valueFrom)", ENV_VALUE_MESSAGE)
            ]
        }
    )

    name: EnvName
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """Literal value."""
    value_from: FreeForm | None = None
    """A source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(ENV_VALUE_MESSAGE)
        return self


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

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.configMapRef) != has(self.secretRef)", ENV_FROM_MESSAGE)
            ]
        }
    )

    prefix: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Prepended to each key."""
    config_map_ref: ConfigMapEnvSource | None = None
    """The ConfigMap to read."""
    secret_ref: SecretEnvSource | None = None
    """The Secret to read."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError(ENV_FROM_MESSAGE)
        return self


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
