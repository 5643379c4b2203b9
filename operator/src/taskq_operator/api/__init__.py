"""Pydantic models of the TaskQueue, WorkerPool and TaskqApiKey resources: the source of the
CRDs."""

from taskq_operator.api.apikey import TaskqApiKeySpec, TaskqApiKeyStatus
from taskq_operator.api.base import API_VERSION, GROUP, VERSION, K8sModel
from taskq_operator.api.common import Condition, LocalObjectReference, SecretKeyRef, set_condition
from taskq_operator.api.core import (
    ConfigMapEnvSource,
    EnvFromSource,
    EnvVar,
    ResourceRequirements,
    SecretEnvSource,
    Toleration,
)
from taskq_operator.api.taskqueue import (
    BackoffSpec,
    DatabaseRef,
    RateLimitSpec,
    RetentionSpec,
    RetrySpec,
    TaskCounts,
    TaskQueueSpec,
    TaskQueueStatus,
    Throughput,
)
from taskq_operator.api.taskschedule import TaskScheduleSpec, TaskScheduleStatus
from taskq_operator.api.workerpool import (
    OPERATOR_ENV,
    OPERATOR_SETTINGS,
    AutoscalingSpec,
    PodOverrides,
    WorkerPoolSpec,
    WorkerPoolStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "OPERATOR_ENV",
    "OPERATOR_SETTINGS",
    "VERSION",
    "AutoscalingSpec",
    "BackoffSpec",
    "Condition",
    "ConfigMapEnvSource",
    "DatabaseRef",
    "EnvFromSource",
    "EnvVar",
    "K8sModel",
    "LocalObjectReference",
    "PodOverrides",
    "RateLimitSpec",
    "ResourceRequirements",
    "RetentionSpec",
    "RetrySpec",
    "SecretEnvSource",
    "SecretKeyRef",
    "TaskCounts",
    "TaskQueueSpec",
    "TaskQueueStatus",
    "TaskScheduleSpec",
    "TaskScheduleStatus",
    "TaskqApiKeySpec",
    "TaskqApiKeyStatus",
    "Throughput",
    "Toleration",
    "WorkerPoolSpec",
    "WorkerPoolStatus",
    "set_condition",
]
