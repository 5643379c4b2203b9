"""The SQL shipped as package data: named queries and numbered migrations."""

from __future__ import annotations

import re

import pytest

from taskq.store.sqlfiles import bootstrap_sql, migrations, queries, query

# every name the store modules ask for
_USED = {
    "provision_queue", "configure_queue", "drop_queue", "get_queue", "list_queues",
    "queue_stats", "enqueue_many", "get_task", "task_attempts", "cancel_task", "list_dead",
    "replay_dead", "claim", "complete", "heartbeat", "release", "rescue_expired",
    "purge_finished",
}


def test_every_named_query_loads() -> None:
    named = queries()
    assert set(named) >= _USED
    for name, sql in named.items():
        assert sql, name
        assert "-- name:" not in sql, name
        statement = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
        assert re.match(r"^\s*(SELECT|UPDATE|INSERT|DELETE|WITH)\b", statement), name


def test_unknown_query_raises_key_error() -> None:
    with pytest.raises(KeyError):
        query("no_such_query")


def test_queries_take_positional_parameters_only() -> None:
    for name, sql in queries().items():
        assert "%s" not in sql, name
        assert "{" not in sql, name


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert [m.name for m in found[:2]] == ["schema", "functions"]
    assert len({m.checksum for m in found}) == len(found)
    for migration in found:
        assert re.fullmatch(r"[0-9a-f]{64}", migration.checksum)
        assert migration.sql.strip()


def test_bootstrap_creates_the_ledger() -> None:
    assert "taskq.schema_migrations" in bootstrap_sql()
