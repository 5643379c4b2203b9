"""Bounds on a worker's exit: nothing on the way out may wait for ever.

A worker once stayed up for minutes after SIGTERM, waiting on a claim (issue 16, item 2).
Every wait on the shutdown path therefore has a bound (`wait_or_cancel`), and `taskq worker`
arms an `ExitDeadline` when it is told to stop: past the longest a graceful stop can take, the
process exits whatever still runs (a handler that ignores its cancellation, a thread that never
returns, a call hung inside a library), which asyncio's own teardown and the interpreter's
join of worker threads would otherwise wait for without limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("taskq.worker")


async def wait_or_cancel(tasks: Iterable[asyncio.Future[Any]], seconds: float) -> int:
    """Wait up to `seconds` for `tasks`; cancel those still running and return how many there
    were. They are not awaited again: one that ignores its cancellation must not hold up the
    exit."""
    pending = {task for task in tasks if not task.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=seconds)
    for task in pending:
        task.cancel()
    return len(pending)


class ExitDeadline:
    """Ends the process with `os._exit` once a deadline passes (armed again: the earlier
    deadline holds, with its exit status)."""

    def __init__(self) -> None:
        self._at = float("inf")
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self, seconds: float, status: int, why: str) -> None:
        with self._lock:
            at = time.monotonic() + seconds
            if at >= self._at:
                return
            self._at = at
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(seconds, self._exit, (seconds, status, why))
            self._timer.daemon = True
            self._timer.start()

    @staticmethod
    def _exit(seconds: float, status: int, why: str) -> None:
        log.error("still running %.1fs after %s: exiting now (status %d)", seconds, why, status)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(status)
