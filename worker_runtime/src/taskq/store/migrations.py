"""Applies the numbered migrations, each once, in its own transaction under a transaction-level
advisory lock, so that concurrent `taskq migrate` runs (operator replicas, worker start-ups)
serialise. The lock ends with its transaction: it works through PgBouncer's transaction
pooling too, where a session lock would stay with whichever server connection took it."""

from __future__ import annotations

from taskq.errors import TaskqError
from taskq.store.sqlfiles import Migration, bootstrap_sql, migrations
from taskq.store.types import Connection

# Arbitrary constant shared by every taskq process: the migration lock's key.
_LOCK_KEY = 0x7A5C_0001


class MigrationChecksumError(TaskqError):
    pass


async def migrate(conn: Connection) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(bootstrap_sql())
        rows = await conn.fetch("SELECT version, checksum FROM taskq.schema_migrations")
    done = {row["version"]: row["checksum"] for row in rows}
    applied_now: list[str] = []
    for migration in migrations():
        if migration.version in done:
            _check(migration, done[migration.version])
        elif await _apply(conn, migration):
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return applied_now


async def _apply(conn: Connection, migration: Migration) -> bool:
    """Apply one migration unless a concurrent run applied it since the ledger was read."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        checksum = await conn.fetchval(
            "SELECT checksum FROM taskq.schema_migrations WHERE version = $1", migration.version
        )
        if checksum is not None:
            _check(migration, checksum)
            return False
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO taskq.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            migration.checksum,
        )
    return True


def _check(migration: Migration, applied_checksum: str) -> None:
    if applied_checksum != migration.checksum:
        raise MigrationChecksumError(
            f"migration {migration.version:04d}_{migration.name} was changed after it was "
            "applied: add a new migration instead of editing an applied one"
        )
