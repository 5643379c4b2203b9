"""Handlers for the benchmarks' `taskq worker` processes (TASKQ_APP=sleepers, bench/ on the
path): a task that sleeps as long as its payload says."""

from __future__ import annotations

import asyncio

from taskq import TaskContext, task


@task("sleep")
async def sleep(ctx: TaskContext) -> None:
    await asyncio.sleep(float(ctx.payload["seconds"]))
