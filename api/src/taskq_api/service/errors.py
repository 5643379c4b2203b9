"""Why the API refuses a request, beyond taskq's own errors (taskq.errors). Each protocol maps
these and taskq's errors to its statuses in one place (REST: rest/problems.py)."""

from __future__ import annotations

# What a caller is told of a failure of the server, or of its database: the cause stays in the
# server's log, under the call's correlation id (it may name hosts, or hold a secret).
INTERNAL_DETAIL = "the server failed; its log has the details under this correlation id"
DATABASE_UNAVAILABLE_DETAIL = (
    "the database is unavailable; retry later (the server's log has the cause under this "
    "correlation id)"
)


class ApiError(Exception):
    """Base of the refusals of the API's service layer; the message says what to do."""


class NotAuthenticatedError(ApiError):
    """No key, or one that is not a usable key: malformed, unknown, expired or revoked (the
    four are not told apart, so a guesser learns nothing)."""

    def __init__(self, message: str, *, key_presented: bool) -> None:
        super().__init__(message)
        self.key_presented = key_presented


class PermissionDeniedError(ApiError):
    """The key is valid but its role or its namespaces do not allow this."""


class ConflictError(ApiError):
    """The request is valid but the state of what it names forbids it now (e.g. retrying a
    task that is not dead)."""


class RateLimitedError(ApiError):
    """The key sent more requests than its rate allows (service/ratelimit.py)."""

    def __init__(self, message: str, *, key_prefix: str, retry_after: float) -> None:
        super().__init__(message)
        self.key_prefix = key_prefix
        self.retry_after = retry_after  # seconds until the key may send a request again
