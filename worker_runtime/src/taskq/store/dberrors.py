"""Turns database errors into taskq errors that say what to fix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    UnknownQueueError,
)

# Exceptions that mean "the server is not there or will not have us", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    TimeoutError,
)


def describe_connection_error(error: BaseException) -> str:
    if isinstance(
        error, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"database refused the credentials: {error}"
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return f"database does not exist: {error}"
    if isinstance(error, TimeoutError):
        return "database did not answer in time"
    if isinstance(error, OSError):
        return f"cannot reach the database: {error.strerror or error}"
    return f"database connection failed: {error}"


@contextlib.contextmanager
def translated(queue: str | None = None) -> Iterator[None]:
    """Re-raise database errors as taskq errors; anything unexpected passes through."""
    try:
        yield
    except asyncpg.PostgresError as error:
        state = getattr(error, "sqlstate", None)
        # str() of an asyncpg error appends DETAIL/HINT lines: keep the one-line message
        message = getattr(error, "message", None) or str(error)
        hint = getattr(error, "hint", None)
        if state == "TQ001":
            raise UnknownQueueError(queue or message) from None
        if state == "TQ002":
            raise PayloadTooLargeError(f"{message} ({hint})" if hint else message) from None
        if state == "TQ003":
            raise InvalidArgumentError("arguments", message) from None
        if isinstance(
            error,
            asyncpg.UndefinedFunctionError
            | asyncpg.UndefinedTableError
            | asyncpg.InvalidSchemaNameError,
        ):
            raise SchemaMissingError from None
        if isinstance(error, asyncpg.DataError):  # class 22: e.g. an id out of bigint range
            raise InvalidArgumentError("arguments", message) from None
        if isinstance(error, asyncpg.CheckViolationError):
            constraint = getattr(error, "constraint_name", None) or "a constraint"
            raise InvalidArgumentError(constraint, message) from None
        if isinstance(error, CONNECTION_ERRORS):
            raise DatabaseUnavailableError(describe_connection_error(error)) from None
        raise
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailableError(describe_connection_error(error)) from None
