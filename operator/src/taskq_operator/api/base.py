"""What every taskq resource model shares: Kubernetes naming, strictness and wire format."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "taskq.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# A DNS-1123 label: what Kubernetes accepts as a label value, and what taskq accepts as a
# queue name (taskq.names), so TaskQueue and WorkerPool names must be one.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX = 63

DnsLabel = Annotated[
    str, StringConstraints(min_length=1, max_length=DNS_LABEL_MAX, pattern=DNS_LABEL_PATTERN)
]

# Kubernetes resource.Quantity: an integer or a string like "500m" or "1Gi".
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(_QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity (for example 2, 500m or 1Gi)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": _QUANTITY_PATTERN}),
]

# Kubernetes objects taskq passes through untouched (affinity, valueFrom): the API server
# validates them in the Deployment, so mirroring their large schemas here would only drift.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class K8sModel(BaseModel):
    """Fields are snake_case in Python and camelCase on the wire; unknown fields are errors
    (a misspelt field must not be silently ignored); attribute docstrings become the CRD's
    descriptions, so `kubectl explain` shows them."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The JSON form Kubernetes stores: camelCase, unset optional fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One x-kubernetes-validations entry; its message is the one the pydantic validator
    raises too, so a user sees the same words from kubectl and from the operator."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry
