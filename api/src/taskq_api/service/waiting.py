"""Waiting for a task, by reading it again and again: what REST's `?wait=`, and gRPC's
`wait_seconds` and WatchTask, share.

No notification is sent when a task changes (taskq_ready and taskq_cancel are the only
channels, and a NOTIFY per completion would cost the worker's hot path). The interval starts
short, for request/response over the queue, and doubles up to the longest, so a waiter makes at
most two reads a second once the task takes a while, and holds no connection between reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Final

from taskq.client import Client
from taskq.models import TaskInfo

# A task in one of these states will not change by itself any more.
FINISHED_STATES: Final = frozenset({"succeeded", "dead", "canceled"})
WAIT_POLL_FIRST: Final = 0.05
WAIT_POLL_LONGEST: Final = 0.5


async def reads(
    client: Client, task_id: int, deadline: float
) -> AsyncGenerator[TaskInfo, None]:
    """The task, read again and again until it is finished or `deadline` (the event loop's
    clock; math.inf for none) has passed: the read that ends it is the last one yielded."""
    loop = asyncio.get_running_loop()
    interval = WAIT_POLL_FIRST
    while True:
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
        info = await client.get_task(task_id)
        yield info
        if info.state in FINISHED_STATES or loop.time() >= deadline:
            return
        interval = min(interval * 2, WAIT_POLL_LONGEST)


def changed(before: TaskInfo, after: TaskInfo) -> bool:
    """What a watcher is told of: a new state, attempt, cancel request or progress (a lease
    renewal, which every running task has, is not news)."""
    return (before.state, before.attempts, before.cancel_requested, before.progress) != (
        after.state,
        after.attempts,
        after.cancel_requested,
        after.progress,
    )
