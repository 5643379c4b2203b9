"""WorkerPool: a Deployment of `taskq worker` pods serving queues, autoscaled on their depth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from taskq.worker.settings import env_name
from taskq_operator.api.base import (
    LABEL_KEY_MESSAGE,
    LABEL_KEY_MESSAGE_EXPRESSION,
    LABEL_KEY_RULE,
    DnsLabel,
    FreeForm,
    K8sModel,
    LabelValue,
    bad_label_key,
    cel,
)
from taskq_operator.api.common import (
    Condition,
    LocalObjectReference,
    ObjectName,
    Reason,
    SecretKeyRef,
)
from taskq_operator.api.core import (
    ENV_VALUE_MESSAGE,
    EnvFromSource,
    EnvVar,
    ResourceRequirements,
    Toleration,
)

# The worker settings the operator sets on every pod, as WorkerSettings fields (the contract of
# docs/worker.md); resources.py gives each its value. A user value would fight them.
OPERATOR_SETTINGS = (
    "dsn",
    "queues",
    "app",
    "concurrency",
    "metrics_port",
    "metrics_host",
    "shutdown_grace",
    "pod_uid",
)
OPERATOR_ENV = tuple(env_name(setting) for setting in OPERATOR_SETTINGS)

MIN_MAX_MESSAGE = "autoscaling.minReplicas must not exceed autoscaling.maxReplicas"
REPLICAS_MESSAGE = (
    "spec.replicas is only honoured with autoscaling.mode External; "
    "remove it, or set autoscaling.mode: External to let HPA/KEDA or kubectl scale the pool"
)
RESERVED_ENV_WHY = (
    "the operator sets these itself (from spec.queues, spec.app, spec.concurrency, "
    "spec.terminationGracePeriodSeconds and the queues' database): remove them from spec.env"
)
RESERVED_ENV_MESSAGE = "env must not set variables the operator sets: " + ", ".join(OPERATOR_ENV)


def reserved_env_message(names: list[str]) -> str:
    """The variables the user set that the operator sets, and why not."""
    return f"env must not set {', '.join(names)}: {RESERVED_ENV_WHY}"
# What spec.pooler sets on the pods (besides TASKQ_DSN): transaction pooling, polling.
POOLER_ENV = (env_name("db_pool_mode"), env_name("listen"))
POOLER_ENV_MESSAGE = (
    "env must not set " + " or ".join(POOLER_ENV) + " with pooler: the operator sets them "
    "for workers that connect through PgBouncer (transaction pooling, no LISTEN); remove "
    "them from spec.env"
)
DUPLICATE_QUEUES_MESSAGE = "queues must not repeat a queue"
IMAGE_MESSAGE = "image must not contain whitespace: remove the spaces around or in it"

# A Python module path, optionally `:attribute` naming a taskq.Registry (TASKQ_APP).
_APP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$"

_MAX_ENV = 128
_CEL_RESERVED = "[" + ", ".join(f"'{name}'" for name in OPERATOR_ENV) + "]"


class PoolEnvVar(EnvVar):
    """An environment variable of the worker container, not one the operator sets."""

    # checked per entry, so the API server names the entry (spec.env[1]) and its variable
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.value) || !has(self.valueFrom)", ENV_VALUE_MESSAGE),
                cel(
                    f"!(self.name in {_CEL_RESERVED})",
                    RESERVED_ENV_MESSAGE,
                    message_expression=(
                        f"'env must not set ' + self.name + \": {RESERVED_ENV_WHY}\""
                    ),
                ),
            ]
        }
    )


class AutoscalingSpec(K8sModel):
    """How many workers run. Builtin: the operator scales on the queues' depth (ready plus
    running tasks). External: spec.replicas decides, written by HPA, KEDA or kubectl scale
    through the scale subresource."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minReplicas <= self.maxReplicas", MIN_MAX_MESSAGE)
            ]
        }
    )

    mode: Literal["Builtin", "External"] = "Builtin"
    """Builtin or External."""
    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest workers; 0 lets an idle pool scale to zero."""
    max_replicas: int = Field(default=10, ge=1, le=1000)
    """Most workers."""
    target_backlog_per_replica: int = Field(default=10, ge=1, le=1_000_000)
    """Ready plus running tasks one worker should have; replicas = ceil(backlog / this)."""
    activation_threshold: int = Field(default=1, ge=1, le=1_000_000)
    """Backlog at which a pool at zero wakes up, and below which it may return to zero."""
    scale_up_stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    """Scale up only to the lowest replica count recommended within this window."""
    scale_down_stabilization_seconds: int = Field(default=60, ge=0, le=3600)
    """Scale down only to the highest replica count recommended within this window."""
    poll_interval_seconds: int = Field(default=10, ge=1, le=3600)
    """Seconds between depth readings."""

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(MIN_MAX_MESSAGE)
        return self


_LABEL_KEYS: JsonDict = {
    "x-kubernetes-validations": [
        cel(LABEL_KEY_RULE, LABEL_KEY_MESSAGE, message_expression=LABEL_KEY_MESSAGE_EXPRESSION)
    ]
}


class PodOverrides(K8sModel):
    """Settings copied into the worker pod template."""

    labels: dict[str, LabelValue] = Field(
        default={}, max_length=64, json_schema_extra=_LABEL_KEYS
    )
    """Extra pod labels; the operator's own labels win on a clash."""
    annotations: dict[str, Annotated[str, StringConstraints(max_length=65536)]] = Field(
        default={}, max_length=64, json_schema_extra=_LABEL_KEYS
    )
    """Extra pod annotations."""
    node_selector: dict[str, LabelValue] = Field(
        default={}, max_length=64, json_schema_extra=_LABEL_KEYS
    )
    """Node labels a worker pod's node must have."""
    tolerations: list[Toleration] = Field(default=[], max_length=64)
    """Taints worker pods tolerate."""
    affinity: FreeForm | None = None
    """A core/v1 Affinity, as in a Pod spec."""
    service_account_name: ObjectName | None = None
    """ServiceAccount of the pods; without one, no API token is mounted (workers do not
    talk to Kubernetes)."""
    image_pull_secrets: list[LocalObjectReference] = Field(default=[], max_length=16)
    """Secrets for pulling the image from a private registry."""
    priority_class_name: ObjectName | None = None
    """PriorityClass of the pods."""

    @model_validator(mode="after")
    def _label_keys(self) -> PodOverrides:
        for field, found in (
            ("labels", self.labels),
            ("annotations", self.annotations),
            ("nodeSelector", self.node_selector),
        ):
            bad = bad_label_key(found)
            if bad is not None:
                raise ValueError(f"pod.{field}: '{bad}': {LABEL_KEY_MESSAGE}")
        return self


class PoolerRef(K8sModel):
    """A PgBouncer in transaction pooling in front of the queues' database."""

    secret_key_ref: SecretKeyRef
    """A Secret key in this namespace whose value is the DSN of the queues' database through
    the pooler (`pool_mode = transaction`). The workers connect with it, without LISTEN; the
    operator still reads queue depth with the queues' own DSN."""


_CEL_POOLER_ENV = "[" + ", ".join(f"'{name}'" for name in POOLER_ENV) + "]"


class WorkerPoolSpec(K8sModel):
    """Workers running the handlers of one Python module against queues of this namespace."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.replicas)"
                    " || (has(self.autoscaling) && self.autoscaling.mode == 'External')",
                    REPLICAS_MESSAGE,
                    field_path=".replicas",
                ),
                cel(
                    "!has(self.pooler) || !has(self.env)"
                    f" || self.env.all(e, !(e.name in {_CEL_POOLER_ENV}))",
                    POOLER_ENV_MESSAGE,
                    field_path=".env",
                ),
            ]
        }
    )

    queues: list[DnsLabel] = Field(
        min_length=1, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names of the TaskQueues (in this namespace) the workers serve. All must be in the
    same database."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        json_schema_extra={
            "x-kubernetes-validations": [cel("!self.matches('[[:space:]]')", IMAGE_MESSAGE)]
        }
    )
    """Worker image: the taskq worker base image plus the application."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When the kubelet pulls the image."""
    app: Annotated[str, StringConstraints(max_length=253, pattern=_APP_PATTERN)]
    """Module whose @taskq.task handlers run (`myapp.tasks`), or `module:attribute` naming a
    taskq.Registry."""
    concurrency: int = Field(default=10, ge=1, le=10_000)
    """Tasks one worker runs at once."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Workers wanted, with autoscaling.mode External only (the scale subresource's
    specReplicasPath)."""
    resources: ResourceRequirements | None = None
    """Compute resources of each worker."""
    env: list[PoolEnvVar] = Field(default=[], max_length=_MAX_ENV)
    """Extra environment variables, e.g. TASKQ_LOG_LEVEL or the application's own."""
    env_from: list[EnvFromSource] = Field(default=[], max_length=32)
    """Variables from ConfigMaps and Secrets."""
    pod: PodOverrides = PodOverrides()
    """Scheduling and metadata of the worker pods."""
    termination_grace_period_seconds: int = Field(default=30, ge=1, le=86_400)
    """How long a stopping worker has: it stops claiming and lets running tasks finish for
    this minus 5 seconds, then gives the rest back to the queue."""
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    """How many workers run."""
    pooler: PoolerRef | None = None
    """Connect the workers through PgBouncer (transaction pooling) rather than directly:
    for pools of hundreds of replicas, whose direct connections (3-5 each) would not fit the
    server's max_connections (docs/worker.md, "Through PgBouncer")."""

    @model_validator(mode="after")
    def _consistent(self) -> WorkerPoolSpec:
        if len(set(self.queues)) != len(self.queues):
            raise ValueError(DUPLICATE_QUEUES_MESSAGE)
        if any(c.isspace() for c in self.image):
            raise ValueError(IMAGE_MESSAGE)
        reserved = [e.name for e in self.env if e.name in OPERATOR_ENV]
        if reserved:
            raise ValueError(reserved_env_message(reserved))
        if self.replicas is not None and self.autoscaling.mode != "External":
            raise ValueError(REPLICAS_MESSAGE)
        if self.pooler is not None and any(e.name in POOLER_ENV for e in self.env):
            raise ValueError(POOLER_ENV_MESSAGE)
        return self


class WorkerPoolStatus(K8sModel):
    """The pool as the operator last saw it."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the Deployment was last built from."""
    conditions: list[Condition] = Field(
        default=[],
        max_length=8,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Ready: the Deployment has the desired replicas ready."""
    replicas: Annotated[int, Field(ge=0)] | None = None
    """Worker pods that exist (the scale subresource's statusReplicasPath)."""
    ready_replicas: Annotated[int, Field(ge=0)] | None = None
    """Worker pods that are ready."""
    desired_replicas: Annotated[int, Field(ge=0)] | None = None
    """Workers the operator last asked the Deployment for."""
    selector: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Label selector of the worker pods, for HPA/KEDA (labelSelectorPath)."""
    last_scale_time: datetime | None = None
    """When the replica count last changed."""
    last_scale_reason: Reason | None = None
    """Why it last changed, in one CamelCase word."""
    last_scale_message: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Why it last changed, for humans."""
