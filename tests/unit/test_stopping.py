"""wait_or_cancel: the bound on each wait of a worker's shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time

from taskq.worker.stopping import wait_or_cancel


async def test_tasks_that_end_in_time_are_waited_for() -> None:
    quick = asyncio.create_task(asyncio.sleep(0.01))
    assert await wait_or_cancel([quick], 5.0) == 0
    assert quick.done() and not quick.cancelled()


async def test_a_task_deaf_to_cancellation_does_not_hold_the_wait() -> None:
    async def deaf() -> None:
        for _ in range(100):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    task = asyncio.create_task(deaf())
    started = time.monotonic()
    assert await wait_or_cancel([task, asyncio.create_task(asyncio.sleep(0))], 0.1) == 1
    assert time.monotonic() - started < 2.0  # not the deaf task's 5 s
    assert not task.done()  # cancelled, swallowed it, and was not awaited again
    task.cancel()
    await asyncio.sleep(0)
