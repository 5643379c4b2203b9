"""Errors as gRPC status codes, from one table, as REST's are problems from its own
(rest/problems.py's PROBLEMS; a test holds the two tables to the same errors).

The details are the error's message, which names the field and the fix; never a stack trace,
nor the cause of a failure of the server or of its database, which only the log has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    TaskqError,
    UnknownQueueError,
    UnknownScheduleError,
    UnknownTaskError,
)
from taskq_api.service import (
    DATABASE_UNAVAILABLE_DETAIL,
    INTERNAL_DETAIL,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)

log = logging.getLogger("taskq_api.errors")

# The one mapping of the errors raised on purpose; the first class that matches wins.
STATUS_CODES: Sequence[tuple[type[Exception], grpc.StatusCode]] = (
    (NotAuthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownQueueError, grpc.StatusCode.NOT_FOUND),
    (UnknownTaskError, grpc.StatusCode.NOT_FOUND),
    (UnknownScheduleError, grpc.StatusCode.NOT_FOUND),
    (ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (PayloadTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (DatabaseUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (SchemaMissingError, grpc.StatusCode.UNAVAILABLE),
    (TaskqError, grpc.StatusCode.INTERNAL),
)


def status_of(error: Exception, correlation_id: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details a call ends with; an error raised by accident is logged
    with its traceback, and a database outage with its cause."""
    code = next((code for cls, code in STATUS_CODES if isinstance(error, cls)), None)
    if code is None:
        log.error(
            "call failed",
            exc_info=error,
            extra={"correlation_id": correlation_id, "error": repr(error)},
        )
        return grpc.StatusCode.INTERNAL, INTERNAL_DETAIL
    if isinstance(error, DatabaseUnavailableError):
        log.warning("database unavailable: %s", error, extra={"correlation_id": correlation_id})
        return code, DATABASE_UNAVAILABLE_DETAIL
    return code, str(error)
