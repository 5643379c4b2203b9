"""Every queue setting reaches taskq.queues through each door: the Python client, the
`taskq queue create` command and SQL (taskq.ensure_queue). The TaskQueue door is tested on the
cluster (tests/e2e/test_operator.py). The settings come from QueueSettings' fields
(tests/queue_settings.py), so a new setting is covered here without editing this file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import asyncpg
import pytest

from taskq.client import Client
from taskq.models import QueueSettings, setting_fields
from tests.queue_settings import assert_stored, cli_options, other_settings

# The columns of taskq.queues that are not settings: identity, the rate limit's bucket, age.
_NOT_SETTINGS = {"id", "namespace", "name", "rate_tokens", "rate_refilled_at", "created_at"}


def _queue() -> tuple[str, str]:
    return f"settings-{uuid.uuid4().hex[:8]}", "q"


async def _row(pool: asyncpg.Pool, namespace: str, name: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM taskq.queues WHERE namespace = $1 AND name = $2", namespace, name
    )
    assert row is not None
    return row


async def test_every_setting_is_a_column_and_its_default_is_the_columns(
    pool: asyncpg.Pool,
) -> None:
    columns = {
        row["column_name"]
        for row in await pool.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'taskq' AND table_name = 'queues'"
        )
    }
    assert columns - _NOT_SETTINGS == {field.column for field in setting_fields()}
    # A queue made in SQL with no settings has QueueSettings' defaults.
    namespace, name = _queue()
    await pool.fetchrow("SELECT * FROM taskq.ensure_queue($1, $2, '{}')", namespace, name)
    assert_stored(await _row(pool, namespace, name), QueueSettings())


async def test_python_client(client: Client, pool: asyncpg.Pool) -> None:
    namespace, name = _queue()
    first = other_settings()
    info = await client.ensure_queue(f"{namespace}/{name}", first)
    assert info.settings == first
    assert_stored(await _row(pool, namespace, name), first)
    # applying again updates every setting of the existing queue
    second = other_settings(first)
    info = await client.ensure_queue(f"{namespace}/{name}", second)
    assert info.settings == second
    assert_stored(await _row(pool, namespace, name), second)
    assert (await client.get_queue(f"{namespace}/{name}")).settings == second


async def _taskq(dsn: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskq.cli.main",
        *args,
        env={**env, "TASKQ_DSN": dsn},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_cli(dsn: str, pool: asyncpg.Pool) -> None:
    namespace, name = _queue()
    first = other_settings()
    printed = json.loads(
        await _taskq(dsn, "queue", "create", f"{namespace}/{name}", *cli_options(first))
    )
    assert QueueSettings.model_validate(printed["settings"]) == first
    assert_stored(await _row(pool, namespace, name), first)
    # `queue create` of an existing queue applies the settings it is given
    second = other_settings(first)
    await _taskq(dsn, "queue", "create", f"{namespace}/{name}", *cli_options(second))
    assert_stored(await _row(pool, namespace, name), second)


async def test_sql_changes_the_settings_it_names_and_keeps_the_others(pool: asyncpg.Pool) -> None:
    namespace, name = _queue()
    first = other_settings()
    await pool.fetchrow(
        "SELECT * FROM taskq.ensure_queue($1, $2, $3::jsonb)",
        namespace,
        name,
        json.dumps(first.to_columns()),
    )
    assert_stored(await _row(pool, namespace, name), first)
    for field in setting_fields():
        changed = QueueSettings.from_paths(
            {field.path: field.value_in(other_settings(first))}
            | {f.path: f.value_in(first) for f in setting_fields() if f is not field}
        )
        row = await pool.fetchrow(
            "SELECT * FROM taskq.ensure_queue($1, $2, $3::jsonb)",
            namespace,
            name,
            json.dumps({field.column: field.value_in(changed)}),
        )
        assert row is not None
        assert_stored(row, changed)
        first = changed


async def test_sql_refuses_unknown_settings_and_bad_values(pool: asyncpg.Pool) -> None:
    namespace, name = _queue()
    ensure = "SELECT * FROM taskq.ensure_queue($1, $2, $3::jsonb)"
    with pytest.raises(asyncpg.InvalidParameterValueError, match="unknown queue settings: retries"):
        await pool.fetchrow(ensure, namespace, name, '{"retries": 5, "paused": true}')
    with pytest.raises(asyncpg.InvalidParameterValueError, match="must be a JSON object"):
        await pool.fetchrow(ensure, namespace, name, "[]")
    with pytest.raises(asyncpg.PostgresError, match=r"p_settings.max_attempts is 0: give 1..1000"):
        await pool.fetchrow(ensure, namespace, name, '{"max_attempts": 0}')
    # nothing was created by the failed calls
    assert (
        await pool.fetchval("SELECT count(*) FROM taskq.queues WHERE namespace = $1", namespace)
        == 0
    )


def _bounded() -> list[tuple[str, dict[str, Any]]]:
    return [(f.column, f.bounds) for f in setting_fields() if f.bounds]


@pytest.mark.parametrize(("column", "bounds"), _bounded(), ids=[c for c, _ in _bounded()])
async def test_sql_holds_the_python_bounds_and_names_the_setting(
    pool: asyncpg.Pool, column: str, bounds: dict[str, Any]
) -> None:
    """The SQL door's bounds are QueueSettings' (taskq/models.py): the largest value each
    allows is stored; past it, below its least, NaN or Infinity, and a string are refused
    naming `p_settings.<column>`, where before they overflowed or slipped past "> 0"."""
    namespace, name = _queue()
    ensure = "SELECT * FROM taskq.ensure_queue($1, $2, $3::jsonb)"
    # the base may not exceed the max: the max is raised alongside
    extra = {"backoff_max_s": bounds.get("le")} if column == "backoff_base_s" else {}
    highest = bounds["le"]
    await pool.fetchrow(ensure, namespace, name, json.dumps({column: highest, **extra}))
    assert (await _row(pool, namespace, name))[column] == highest
    lowest = bounds.get("ge", bounds.get("gt"))
    refused = [highest * 10 + 1, "NaN", "Infinity", "many"]
    if lowest is not None:
        refused.append(lowest - 1 if "ge" in bounds else lowest)
    for value in refused:
        with pytest.raises(asyncpg.PostgresError, match=rf"p_settings\.{column} is ") as error:
            await pool.fetchrow(ensure, namespace, name, json.dumps({column: value, **extra}))
        assert "give " in str(error.value)
    assert (await _row(pool, namespace, name))[column] == highest  # unchanged


async def test_a_changed_rate_limit_starts_from_a_full_bucket(pool: asyncpg.Pool) -> None:
    namespace, name = _queue()
    ensure = "SELECT * FROM taskq.ensure_queue($1, $2, $3::jsonb)"
    await pool.fetchrow(ensure, namespace, name, '{"rate_limit_per_s": 5}')
    await pool.execute(
        "UPDATE taskq.queues SET rate_tokens = 0 WHERE namespace = $1 AND name = $2",
        namespace,
        name,
    )
    kept = await pool.fetchrow(ensure, namespace, name, '{"rate_limit_per_s": 5, "paused": true}')
    assert kept is not None and kept["rate_tokens"] == 0
    changed = await pool.fetchrow(ensure, namespace, name, '{"rate_limit_per_s": 6}')
    assert changed is not None and changed["rate_tokens"] is None
