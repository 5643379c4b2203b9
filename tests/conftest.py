"""Session-wide fixtures: a real PostgreSQL server started by the test session itself.

- ``pg`` (session): the LocalPostgres server (initdb into a temp dir, 127.0.0.1, random port).
- ``dsn`` (session): DSN of a database with the taskq schema migrated.
- ``pool`` / ``client`` (function): an asyncpg pool and a taskq Client on that database.
- ``make_queue`` (function): provisions a fresh, uniquely named queue with given settings.
- ``pgbouncer`` (session): a real PgBouncer in transaction pooling in front of ``pg``, sharing
  at most ``PGBOUNCER_POOL_SIZE`` server connections per database (started on first use).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from devenv.pgbouncer import LocalPgBouncer
from devenv.postgres import LocalPostgres

from taskq.client import Client
from taskq.models import QueueInfo, QueueSettings
from taskq.store.migrations import migrate

_queue_numbers = itertools.count(1)
PGBOUNCER_POOL_SIZE = 4


# The session's database gathers about a thousand queues, and tests read taskq.tasks by id
# alone to check what happened (a statement taskq never sends: tests/unit/test_sqlfiles.py),
# which locks every partition and its indexes. The lock table holds this many per connection;
# what taskq sends is held to a small budget by tests/integration/test_lock_budget.py.
TEST_LOCKS_PER_TRANSACTION = "512"


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    server = LocalPostgres.temporary(
        settings={"max_locks_per_transaction": TEST_LOCKS_PER_TRANSACTION}
    )
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pgbouncer(pg: LocalPostgres) -> Iterator[LocalPgBouncer]:
    bouncer = LocalPgBouncer.temporary(pg.port, pool_size=PGBOUNCER_POOL_SIZE)
    bouncer.start()
    yield bouncer
    bouncer.destroy()


async def fresh_database(pg: LocalPostgres, name: str, *, migrated: bool = True) -> str:
    """An empty database `name` on `pg` (dropped first if it exists), with every migration
    applied unless `migrated` is false; returns its DSN."""
    admin = await asyncpg.connect(pg.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database = pg.dsn.rsplit("/", 1)[0] + "/" + name
    if migrated:
        conn = await asyncpg.connect(database)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return database


@pytest.fixture(scope="session")
async def dsn(pg: LocalPostgres) -> str:
    return await fresh_database(pg, "taskq_test")


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(dsn, min_size=1, max_size=20)
    assert created is not None
    yield created
    await created.close()


@pytest.fixture
async def client(pool: asyncpg.Pool) -> Client:
    return Client(pool)


MakeQueue = Callable[..., Awaitable[QueueInfo]]


@pytest.fixture
def make_queue(client: Client) -> MakeQueue:
    """`await make_queue(max_attempts=2, ...)`: a new queue named t<N>/q with those settings."""

    async def make(**settings: Any) -> QueueInfo:
        return await client.ensure_queue(f"t{next(_queue_numbers)}/q", QueueSettings(**settings))

    return make
