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

# Exceptions that mean "the connection failed, or the server is not there or will not have
# us", as opposed to a bad query. InternalClientError belongs here: right after its backend is
# killed, a pooled connection's next query often fails with "cannot switch to state 12;
# another operation (2) is in progress" rather than ConnectionDoesNotExistError.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.IdleSessionTimeoutError,
    TimeoutError,
)


def is_connection_error(error: BaseException) -> bool:
    # asyncpg's client-side argument errors derive from InterfaceError and ValueError: they
    # are bad input, not a lost connection.
    return isinstance(error, CONNECTION_ERRORS) and not isinstance(error, ValueError)


def is_server_answer(error: BaseException) -> bool:
    """The server received the query and answered with an error: the connection is fine."""
    return isinstance(error, asyncpg.PostgresError) and not is_connection_error(error)


def is_database_error(error: BaseException) -> bool:
    """A failure of the database or of the way to it, as opposed to a bug in taskq."""
    return is_connection_error(error) or isinstance(error, asyncpg.PostgresError)


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
    if isinstance(error, asyncpg.InternalClientError):
        return f"database connection broke: {error}"
    return f"database connection failed: {error}"


def describe_error(error: BaseException) -> str:
    """One line for a log: connection errors as describe_connection_error says them, others
    with their class (the class of an SQL error names its SQLSTATE's meaning)."""
    if is_connection_error(error):
        return describe_connection_error(error)
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}: {message}"


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
        if is_connection_error(error):
            raise DatabaseUnavailableError(describe_connection_error(error)) from None
        raise
    except CONNECTION_ERRORS as error:
        if not is_connection_error(error):
            raise
        raise DatabaseUnavailableError(describe_connection_error(error)) from None
