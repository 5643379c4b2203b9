"""TaskqApiKey: an API key of the taskq API, declared from Kubernetes. The operator issues the
key, writes it into a Secret it owns, keeps the key's grants equal to the spec, and revokes
the key when the object goes (docs/api-keys.md, "Declared from Kubernetes")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from taskq_operator.api.base import DnsLabel, K8sModel, cel
from taskq_operator.api.common import Condition, ObjectName
from taskq_operator.api.taskqueue import DatabaseRef

ALL_OR_LISTED_MESSAGE = (
    "spec.namespaces and spec.allNamespaces exclude each other: list the namespaces, or set "
    "allNamespaces: true, not both"
)
DUPLICATE_NAMESPACES_MESSAGE = "spec.namespaces must not repeat a namespace"
DATABASE_IMMUTABLE_MESSAGE = (
    "spec.database is immutable: the key lives in that database. To move it, delete this "
    "TaskqApiKey and create one that names the other database."
)
HOLDER_IMMUTABLE_MESSAGE = (
    "spec.secretName is immutable: the key is in that Secret. To use another Secret, delete "
    "this TaskqApiKey and create one that names it."
)


def _immutable(field: str, message: str) -> JsonDict:
    rule = (
        f"has(self.{field}) == has(oldSelf.{field})"
        f" && (!has(self.{field}) || self.{field} == oldSelf.{field})"
    )
    return cel(rule, message, field_path=f".{field}")


class TaskqApiKeySpec(K8sModel):
    """Who the key is for: its role, its namespaces, whether a viewer sees payloads, until
    when. Each may change; the key and its Secret stay."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.namespaces) || !has(self.allNamespaces) || !self.allNamespaces",
                    ALL_OR_LISTED_MESSAGE,
                ),
                _immutable("database", DATABASE_IMMUTABLE_MESSAGE),
                _immutable("secretName", HOLDER_IMMUTABLE_MESSAGE),
            ]
        }
    )

    role: Literal["viewer", "operator", "admin"]
    """viewer reads queues and tasks; operator also enqueues, cancels, retries, pauses,
    resumes and replays; admin also manages keys (only in the operator's keys namespace)."""
    namespaces: list[DnsLabel] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Namespaces whose queues the key reaches; this object's namespace when omitted. Other
    namespaces only from the operator's keys namespace (TASKQ_OPERATOR_KEYS_NAMESPACE)."""
    all_namespaces: bool = False
    """The key reaches every namespace, present and future (only from the operator's keys
    namespace)."""
    reads_payloads: bool = False
    """A viewer key sees task payloads and results (operator and admin keys always do)."""
    expires_at: AwareDatetime | None = None
    """When the key stops working (RFC 3339, at most 3650 days ahead); never when omitted.
    Moving it later renews the key; an expired key works again once it is moved past now."""
    secret_name: ObjectName | None = None
    """The Secret, in this namespace, the operator writes the key into (data key `key`); this
    object's name when omitted. The operator owns it: a Secret of that name that it did not
    make is not touched. Immutable."""
    database: DatabaseRef | None = None
    """The database holding the key: the one the API server serves (TASKQ_API_DSN). The
    operator's default database when omitted. Immutable."""

    @model_validator(mode="after")
    def _consistent(self) -> TaskqApiKeySpec:
        if self.namespaces is not None and self.all_namespaces:
            raise ValueError(ALL_OR_LISTED_MESSAGE)
        if self.namespaces is not None and len(set(self.namespaces)) != len(self.namespaces):
            raise ValueError(DUPLICATE_NAMESPACES_MESSAGE)
        return self


class TaskqApiKeyStatus(K8sModel):
    """The key as the operator last saw it (never its secret)."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the key's grants were last set from."""
    conditions: list[Condition] = Field(
        default=[],
        max_length=8,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Ready: the key is in its Secret, with the spec's grants, and not expired."""
    prefix: Annotated[str, StringConstraints(max_length=16)] | None = None
    """The key's public prefix: it names the key in the API server's logs."""
    key_name: Annotated[str, StringConstraints(max_length=63)] | None = None
    """The key's name in the database (`taskq keys list`); a new key has a new name."""
    secret_name: ObjectName | None = None
    """The Secret holding the key, under the data key `key`."""
    issued_at: datetime | None = None
    """When the key in the Secret was made (each rotation makes a new one)."""
    last_used_at: datetime | None = None
    """When the key last authenticated a request (recorded at most once a minute)."""
    role: Literal["viewer", "operator", "admin"] | None = None
    """The key's role as the database holds it."""
    namespaces: list[str] | None = Field(default=None, max_length=64)
    """The namespaces the key reaches, as the database holds them; ["*"] for every one."""
