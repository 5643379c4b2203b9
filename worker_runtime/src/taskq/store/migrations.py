"""Applies the numbered migrations, each once, in its own transaction, under an advisory lock
so that concurrent `taskq migrate` runs (operator replicas, worker start-ups) serialise."""

from __future__ import annotations

from taskq.errors import TaskqError
from taskq.store.sqlfiles import bootstrap_sql, migrations
from taskq.store.types import Connection

# Arbitrary constant shared by every taskq process: the migration lock's key.
_LOCK_KEY = 0x7A5C_0001


class MigrationChecksumError(TaskqError):
    pass


async def migrate(conn: Connection) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(bootstrap_sql())
        rows = await conn.fetch("SELECT version, checksum FROM taskq.schema_migrations")
        done = {row["version"]: row["checksum"] for row in rows}
        for migration in migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationChecksumError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it "
                        "was applied: add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO taskq.schema_migrations (version, name, checksum) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
