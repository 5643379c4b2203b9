"""The worker's frequent writes commit asynchronously whatever their session says (migration
0027): through transaction pooling the worker cannot set synchronous_commit per session, so
claim, complete, heartbeat and worker_beat set it for their own transaction, and for no
longer."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import MakeQueue

CALLS = {
    "claim": "SELECT * FROM taskq.claim(p_queue_id => $1, p_worker_id => 'w', p_limit => 1,"
             " p_lease_s => 30)",
    "complete": "SELECT * FROM taskq.complete(p_queue_id => $1, p_worker_id => 'w',"
                " p_outcome => 'succeeded', p_ids => '{}', p_attempt_ids => '{}')",
    "heartbeat": "SELECT * FROM taskq.heartbeat(p_queue_id => $1, p_ids => '{}',"
                 " p_attempt_ids => '{}', p_progress => NULL, p_lease_s => 30)",
    "worker_beat": "SELECT rescued, $1::int FROM taskq.worker_beat('async-commit-test', 3, 1)",
}


@pytest.mark.parametrize("function", sorted(CALLS))
async def test_the_function_commits_asynchronously(
    dsn: str, make_queue: MakeQueue, function: str
) -> None:
    queue = await make_queue()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = on")  # as a session through a pooler
        async with conn.transaction():
            await conn.fetch(CALLS[function], queue.id)
            assert await conn.fetchval("SELECT current_setting('synchronous_commit')") == "off"
        assert await conn.fetchval("SELECT current_setting('synchronous_commit')") == "on"
    finally:
        await conn.close()
