"""How connections reach PostgreSQL: each keeping a server session of its own (directly, or
through a pooler in session mode), or through PgBouncer's transaction pooling, where every
transaction may run on another server connection (docs/design.md, "Connection budget").

Through transaction pooling nothing may outlive a transaction: prepared statements (asyncpg's
statement cache), settings sent at connect (PgBouncer refuses every startup parameter but the
few it sets again on each server connection it lends, application_name among them), LISTEN,
session-level advisory locks.
"""

from __future__ import annotations

from typing import Literal

# PgBouncer's own name of its modes (pool_mode); statement pooling would break transactions.
PoolMode = Literal["session", "transaction"]

# asyncpg's default.
SESSION_STATEMENT_CACHE = 100

# asyncpg announces client_encoding as 'utf-8' at connect, and PostgreSQL reports it back as
# UTF8. PgBouncer compares the two as strings, finds them different, and sends SET
# client_encoding on the server connection each time it lends one: a statement more per
# transaction (measured with pg_stat_statements, bench/scale_bench.py). Spelled as the server
# spells it they are equal (of two values at connect, the later one counts).
ENCODING = {"client_encoding": "UTF8"}


def connect_settings(settings: dict[str, str] | None = None) -> dict[str, str]:
    """The settings a connection sends at connect: `settings` and the client encoding spelled
    as PostgreSQL spells it."""
    return {**(settings or {}), **ENCODING}


def statement_cache_size(mode: PoolMode) -> int:
    """Through transaction pooling no statement is cached: a statement prepared on one server
    connection is unknown to the next. asyncpg then parses each statement again in the round
    trip that runs it (after one that describes it), so it never relies on an earlier one."""
    return 0 if mode == "transaction" else SESSION_STATEMENT_CACHE

