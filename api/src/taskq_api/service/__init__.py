"""The API's operations with their authorization, free of any protocol (no HTTP, no gRPC),
and what every protocol records of a call the same way."""

from taskq_api.service.errors import (
    DATABASE_UNAVAILABLE_DETAIL,
    INTERNAL_DETAIL,
    ApiError,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)
from taskq_api.service.keycache import CachedKeyStore
from taskq_api.service.observation import (
    CORRELATION_SCOPE_KEY,
    DURATION_BUCKETS,
    OBSERVATION_SCOPE_KEY,
    Observation,
    correlation_id,
)
from taskq_api.service.operations import (
    DEFAULT_LIST_LIMIT,
    DEFAULT_MAX_WAIT,
    ERROR_SEARCH_WALK,
    MAX_BATCH,
    MAX_ERROR_CONTAINS,
    MAX_LIST_LIMIT,
    QUEUE_REQUIRED,
    ApiService,
    Enqueued,
)
from taskq_api.service.ratelimit import RateLimiter
from taskq_api.service.schedules import PutSchedule, ScheduleView
from taskq_api.service.submissions import MAX_CORRELATION_ID, delay_until
from taskq_api.service.throughput import WAIT_SAMPLE
from taskq_api.service.views import Overview, QueueDetails, TaskDetails, TaskPage, TaskView
from taskq_api.service.waiting import FINISHED_STATES

__all__ = [
    "CORRELATION_SCOPE_KEY",
    "DATABASE_UNAVAILABLE_DETAIL",
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_MAX_WAIT",
    "DURATION_BUCKETS",
    "ERROR_SEARCH_WALK",
    "FINISHED_STATES",
    "INTERNAL_DETAIL",
    "MAX_BATCH",
    "MAX_CORRELATION_ID",
    "MAX_ERROR_CONTAINS",
    "MAX_LIST_LIMIT",
    "OBSERVATION_SCOPE_KEY",
    "QUEUE_REQUIRED",
    "WAIT_SAMPLE",
    "ApiError",
    "ApiService",
    "CachedKeyStore",
    "ConflictError",
    "Enqueued",
    "NotAuthenticatedError",
    "Observation",
    "Overview",
    "PermissionDeniedError",
    "PutSchedule",
    "QueueDetails",
    "RateLimitedError",
    "RateLimiter",
    "ScheduleView",
    "TaskDetails",
    "TaskPage",
    "TaskView",
    "correlation_id",
    "delay_until",
]
