"""A worker app for tests that run real `taskq worker` processes.

Its handler records every execution in taskq_test_runs (a side effect outside the queue), so
a test can count how often each task really ran, including runs whose outcome was never
recorded because the worker was killed.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from taskq import TaskContext, task

_pool: asyncpg.Pool | None = None


async def _db() -> asyncpg.Pool:
    global _pool  # noqa: PLW0603 - one pool per worker process, made on first use
    if _pool is None:
        _pool = await asyncpg.create_pool(os.environ["TASKQ_DSN"], min_size=1, max_size=4)
    assert _pool is not None
    return _pool


@task("record")
async def record(ctx: TaskContext) -> None:
    pool = await _db()
    await pool.execute(
        "INSERT INTO taskq_test_runs (task_id, attempt, worker_id) VALUES ($1, $2, $3)",
        ctx.task_id,
        ctx.attempt,
        ctx.worker_id,
    )
    await asyncio.sleep(float(ctx.payload.get("sleep", 0.005)))
