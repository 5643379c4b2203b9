"""asyncpg's codecs for the types of taskq's queries, learnt where a pooler cannot spoil it."""

from __future__ import annotations

from taskq.store.sqlfiles import query
from taskq.store.types import Connection


async def learn_types(conn: Connection) -> None:
    """Through transaction pooling, a new connection's first step: asyncpg looks up the types
    of taskq's queries it has no codec of its own for now, in one transaction. Its lookup turns
    JIT off for the session around its query and back on in another statement; outside a
    transaction the pooler may send the two to different server connections, and one of them
    keeps JIT off for whoever it serves next (tests/integration/test_pgbouncer.py)."""
    async with conn.transaction():
        await conn.fetch(query("learn_types"))
