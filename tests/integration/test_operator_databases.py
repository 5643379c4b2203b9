"""The operator's database connections: one client and one LISTEN connection per database, let
go once no resource has used the database for a while."""

from __future__ import annotations

import asyncio

from devenv.postgres import LocalPostgres

from taskq_operator.databases import Databases

IDLE = 0.3  # seconds


async def test_an_unused_database_is_let_go_and_reopened_on_demand(dsn: str) -> None:
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(dsn)
        assert await databases.prune() == []  # just used
        await asyncio.sleep(IDLE + 0.1)
        assert await databases.prune() == [dsn]
        assert databases.dsns == []
        again = await databases.client(dsn)
        assert await again.pool.fetchval("SELECT 1") == 1
    finally:
        await databases.close()


async def test_a_database_with_wake_up_subscribers_is_kept(dsn: str) -> None:
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(dsn)
        databases.subscribe(dsn, 1, "pool-uid", lambda: None)
        await asyncio.sleep(IDLE + 0.1)
        assert await databases.prune() == []
        databases.unsubscribe("pool-uid")
        assert await databases.prune() == [dsn]
    finally:
        await databases.close()


async def test_a_decommissioned_database_is_not_retried_forever() -> None:
    server = LocalPostgres.temporary()
    server.start()
    databases = Databases(idle_close_s=IDLE)
    try:
        await databases.client(server.dsn)
        server.stop()  # gone: its LISTEN connection now retries in the background
        deadline = asyncio.get_running_loop().time() + 10
        while databases.dsns and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(IDLE)  # the background pruner runs every IDLE / 4, at least 1 s
        assert databases.dsns == []
    finally:
        await databases.close()
        server.destroy()
