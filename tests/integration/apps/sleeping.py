"""A worker app for the shutdown tests: handlers that sleep as long as their payload says,
one of them deaf to cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from taskq import TaskContext, task


@task("sleep")
async def sleep(ctx: TaskContext) -> None:
    await asyncio.sleep(float(ctx.payload["seconds"]))


@task("stubborn")
async def stubborn(ctx: TaskContext) -> None:
    """Swallows every cancellation: only the process's exit ends it."""
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
