"""The parts of Kubernetes core/v1 types a WorkerPool exposes, field for field, so a user
writes them exactly as in a Pod spec."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from taskq_operator.api.base import K8sModel, Quantity, cel
from taskq_operator.api.common import DataKey, ObjectName

ENV_VALUE_MESSAGE = "an env entry has value or valueFrom, not both"
ENV_FROM_MESSAGE = "an envFrom entry names exactly one of configMapRef or secretRef"
VALUE_FROM_MESSAGE = (
    "valueFrom names exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"
)

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^=]+$")]


class KeySelector(K8sModel):
    """One key of a Secret or ConfigMap in the pool's namespace."""

    name: ObjectName
    """Name of the Secret or ConfigMap."""
    key: DataKey
    """Key whose value is used."""
    optional: bool | None = None
    """Start the pod even when the object or its key does not exist."""


class ObjectFieldSelector(K8sModel):
    """A field of the worker's own pod (the downward API)."""

    api_version: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    """Version of the schema fieldPath is written in; v1 when omitted."""
    field_path: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """The field, e.g. metadata.name or spec.nodeName."""


class ResourceFieldSelector(K8sModel):
    """A resource limit or request of a container of the worker pod."""

    container_name: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    """The container; the worker's own when omitted."""
    resource: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    """The resource, e.g. limits.cpu or requests.memory."""
    divisor: Quantity | None = None
    """The unit the value is given in; 1 when omitted."""


class EnvVarSource(K8sModel):
    """Where a variable's value comes from, as in a Pod spec."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef),"
                    " has(self.resourceFieldRef)].filter(x, x).size() == 1",
                    VALUE_FROM_MESSAGE,
                )
            ]
        }
    )

    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of a container."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        sources = (
            self.secret_key_ref,
            self.config_map_key_ref,
            self.field_ref,
            self.resource_field_ref,
        )
        if sum(source is not None for source in sources) != 1:
            raise ValueError(VALUE_FROM_MESSAGE)
        return self


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
    value_from: EnvVarSource | None = None
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
