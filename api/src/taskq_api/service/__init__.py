"""The API's operations with their authorization, free of any protocol (no HTTP, no gRPC)."""

from taskq_api.service.errors import (
    ApiError,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
)
from taskq_api.service.operations import (
    DEFAULT_MAX_WAIT,
    FINISHED_STATES,
    MAX_BATCH,
    ApiService,
    Enqueued,
)
from taskq_api.service.views import QueueDetails, TaskDetails

__all__ = [
    "DEFAULT_MAX_WAIT",
    "FINISHED_STATES",
    "MAX_BATCH",
    "ApiError",
    "ApiService",
    "ConflictError",
    "Enqueued",
    "NotAuthenticatedError",
    "PermissionDeniedError",
    "QueueDetails",
    "TaskDetails",
]
