"""Types both resources use: references to Secrets and status conditions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from taskq_operator.api.base import K8sModel

# Secret names are DNS-1123 subdomains; keys are what a Secret's data map accepts.
_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

DataKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_DATA_KEY_PATTERN)]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_SUBDOMAIN)]

# The reason pattern of metav1.Condition: CamelCase, usable as a Prometheus label value too.
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=REASON_PATTERN)]

ConditionStatus = Literal["True", "False", "Unknown"]


class SecretKeyRef(K8sModel):
    """A key of a Secret in the resource's own namespace."""

    name: ObjectName
    """Name of the Secret."""
    key: DataKey = "dsn"
    """Key in the Secret whose value is used."""


class SecretKeySelector(K8sModel):
    """A key of a Secret in the resource's own namespace, both named (no default key: a
    signing secret has no conventional one)."""

    name: ObjectName
    """Name of the Secret."""
    key: DataKey
    """Key in the Secret whose value is used."""


class LocalObjectReference(K8sModel):
    """A reference to an object in the same namespace, by name."""

    name: ObjectName
    """Name of the object."""


class Condition(K8sModel):
    """One aspect of the resource's state, as metav1.Condition."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=REASON_PATTERN)]
    """Kind of condition, e.g. Ready."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Reason
    """Why the condition is in this status, in one CamelCase word."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """What happened and what to do about it, for humans."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation this condition was computed from."""


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Conditions with `type` replaced; its lastTransitionTime moves only when status changes,
    so a repeated reconcile does not make a condition look newer than it is."""
    previous = next((c for c in conditions if c.type == type), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type else c for c in conditions]
