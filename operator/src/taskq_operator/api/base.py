"""What every taskq resource model shares: Kubernetes naming, strictness and wire format."""

from __future__ import annotations

import re
from collections.abc import Iterable
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

# Kubernetes objects taskq passes through untouched (affinity): the API server validates them
# in the Deployment, so mirroring their large schemas here would only drift; the operator
# reports what it refuses in the pool's status (pool_fields).
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

# Label keys and values as metav1 validates them: a key is [DNS subdomain prefix/]name, the
# name up to 63 characters. Classes, not escapes ([.]), so the pattern reads the same in CEL.
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_PATTERN = f"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_KEY_MAX = 253 + 1 + 63
_IS_LABEL_KEY = f"size(k) <= {LABEL_KEY_MAX} && k.matches('{LABEL_KEY_PATTERN}')"
LABEL_KEY_RULE = f"self.all(k, {_IS_LABEL_KEY})"
LABEL_KEY_MESSAGE = (
    "keys must be label keys: an optional DNS subdomain prefix and '/', then a name of 1-63 "
    "letters, digits, '-', '_' or '.' that starts and ends with a letter or digit "
    "(e.g. team or example.com/team)"
)
# "'bad key!': keys must be label keys: ..."
LABEL_KEY_MESSAGE_EXPRESSION = (
    f"\"'\" + self.filter(k, !({_IS_LABEL_KEY}))[0] + \"': {LABEL_KEY_MESSAGE}\""
)
LabelValue = Annotated[
    str,
    StringConstraints(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"),
]


def bad_label_key(keys: Iterable[str]) -> str | None:
    """The first key that is not a label key."""
    for key in keys:
        prefix, _, name = key.rpartition("/")
        if len(prefix) > 253 or not re.fullmatch(LABEL_KEY_PATTERN, key) or len(name) > 63:
            return key
    return None


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


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    message_expression: str | None = None,
) -> JsonDict:
    """One x-kubernetes-validations entry; its message is the one the pydantic validator
    raises too, so a user sees the same words from kubectl and from the operator (a
    messageExpression, when given, adds the offending value; message is its fallback)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry
