"""Migrations over data written by earlier versions of the schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from devenv.postgres import LocalPostgres

from taskq.store.migrations import migrate
from taskq.store.sqlfiles import bootstrap_sql, migrations
from tests.conftest import fresh_database


@pytest.fixture
async def fresh_db(pg: LocalPostgres) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(await fresh_database(pg, "taskq_migrations", migrated=False))
    try:
        yield conn
    finally:
        await conn.close()


async def _migrate_up_to(conn: asyncpg.Connection, version: int) -> None:
    """As `migrate` does, stopping after `version`: the schema an older taskq left behind."""
    await conn.execute(bootstrap_sql())
    for migration in migrations():
        if migration.version <= version:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO taskq.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum)


async def test_0003_moves_recorded_successes_into_their_task_rows(
    fresh_db: asyncpg.Connection,
) -> None:
    conn = fresh_db
    await _migrate_up_to(conn, 2)
    queue_id = await conn.fetchval("SELECT taskq.provision_queue('old', 'q')")
    ok = await conn.fetchval("SELECT taskq.enqueue('old/q', 'ok')")
    bad = await conn.fetchval("SELECT taskq.enqueue('old/q', 'bad')")
    claimed = {r["id"]: r["attempt_id"] for r in await conn.fetch(
        "SELECT id, attempt_id FROM taskq.claim($1, 'w-old', 10, 30)", queue_id)}
    await conn.execute("SELECT taskq.complete($1, 'w-old', 'succeeded', $2, $3)",
                       queue_id, [ok], [claimed[ok]])
    await conn.execute("SELECT taskq.complete($1, 'w-old', 'failed', $2, $3, $4::jsonb)",
                       queue_id, [bad], [claimed[bad]],
                       f'{{"{bad}": {{"error": {{"type": "E", "message": "m"}}}}}}')

    assert await migrate(conn) == [f"{m.version:04d}_{m.name}" for m in migrations()[2:]]

    assert await conn.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE outcome = 'succeeded'") == 0
    row = await conn.fetchrow(
        "SELECT state, worker_id, attempt_id FROM taskq.tasks WHERE id = $1", ok)
    assert row is not None
    assert tuple(row) == ("succeeded", "w-old", claimed[ok])
    history = await conn.fetch(
        "SELECT task_id, attempt, attempt_id, worker_id, outcome FROM taskq.attempt_history "
        "ORDER BY task_id")
    assert [tuple(r) for r in history] == [
        (ok, 1, claimed[ok], "w-old", "succeeded"),
        (bad, 1, claimed[bad], "w-old", "failed"),
    ]
    assert await conn.fetchval("SELECT worker_id FROM taskq.tasks WHERE id = $1", bad) is None
