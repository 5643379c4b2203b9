"""The API's operations with their authorization, free of any protocol (no HTTP, no gRPC)."""

from taskq_api.service.errors import (
    ApiError,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)
from taskq_api.service.operations import (
    DEFAULT_LIST_LIMIT,
    DEFAULT_MAX_WAIT,
    FINISHED_STATES,
    MAX_BATCH,
    MAX_LIST_LIMIT,
    QUEUE_REQUIRED,
    ApiService,
    Enqueued,
)
from taskq_api.service.ratelimit import RateLimiter
from taskq_api.service.views import QueueDetails, TaskDetails, TaskPage, TaskView

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_MAX_WAIT",
    "FINISHED_STATES",
    "MAX_BATCH",
    "MAX_LIST_LIMIT",
    "QUEUE_REQUIRED",
    "ApiError",
    "ApiService",
    "ConflictError",
    "Enqueued",
    "NotAuthenticatedError",
    "PermissionDeniedError",
    "QueueDetails",
    "RateLimitedError",
    "RateLimiter",
    "TaskDetails",
    "TaskPage",
    "TaskView",
]
