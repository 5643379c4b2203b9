"""Database calls under a deadline, on connections thrown away when a call leaves them in
doubt: the ports of the long-lived loops (the worker's, and maintenance) build on this.

Every call acquires a pooled connection and runs within `deadline` seconds, acquisition
included: a hung connection or an exhausted pool becomes a TimeoutError that the loops retry.
A connection is kept only when the server answered (with rows or with an ordinary SQL error);
after anything else (a lost or killed backend, asyncpg's protocol left in an odd state, a
deadline, a cancellation) it is terminated, and the pool connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg

from taskq.store.dberrors import is_server_answer
from taskq.store.types import Connection

P = ParamSpec("P")
T = TypeVar("T")


class DeadlineStore:
    def __init__(self, pool: asyncpg.Pool, deadline: float) -> None:
        self.pool = pool
        self.deadline = deadline

    async def _run(
        self,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with asyncio.timeout(self.deadline), self.pool.acquire() as conn:
            try:
                return await self._execute(conn, call, *args, **kwargs)
            except BaseException as error:
                if not is_server_answer(error):
                    # a connection already closed has left the pool by itself
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                raise

    async def _execute(
        self,
        conn: Connection,
        call: Callable[Concatenate[Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs one call on an acquired connection (tests inject faults here)."""
        return await call(conn, *args, **kwargs)
