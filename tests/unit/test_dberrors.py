"""Which database errors mean a broken connection, and what the client turns them into."""

from __future__ import annotations

import asyncpg
import pytest

from taskq.errors import DatabaseUnavailableError
from taskq.store.dberrors import (
    describe_error,
    is_connection_error,
    is_database_error,
    is_server_answer,
    translated,
)

BROKEN = asyncpg.InternalClientError(
    "cannot switch to state 12; another operation (2) is in progress"
)


@pytest.mark.parametrize(
    ("error", "connection", "answer", "database"),
    [
        (BROKEN, True, False, True),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), True, False, True),
        (asyncpg.AdminShutdownError("terminating connection"), True, False, True),
        (ConnectionResetError(104, "reset"), True, False, True),
        (TimeoutError(), True, False, True),
        (asyncpg.DeadlockDetectedError("deadlock detected"), False, True, True),
        (asyncpg.UniqueViolationError("duplicate key"), False, True, True),
        # asyncpg's client-side argument errors are bad input, not a lost connection
        (asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
         False, False, False),
        (RuntimeError("a bug"), False, False, False),
    ],
)
def test_classification(
    error: BaseException, connection: bool, answer: bool, database: bool
) -> None:
    assert is_connection_error(error) is connection
    assert is_server_answer(error) is answer
    assert is_database_error(error) is database


def test_a_broken_pooled_connection_is_a_retryable_unavailable_database() -> None:
    expected = pytest.raises(DatabaseUnavailableError, match="database connection broke: cannot")
    with expected, translated("a/b"):
        raise BROKEN


def test_descriptions_name_the_cause() -> None:
    assert describe_error(asyncpg.DeadlockDetectedError("deadlock detected")) == (
        "DeadlockDetectedError: deadlock detected")
    assert describe_error(TimeoutError()) == "database did not answer in time"
