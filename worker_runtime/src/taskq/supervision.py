"""Keeps long-lived loops alive (the worker's, and the maintenance runner wherever it runs): a
loop that raises is logged with its traceback and started again after a backoff, so a bug on a
rare path can never leave a live process with a dead loop (a dead acknowledgement loop once let
a worker claim on while recording nothing)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from taskq.backoff import Backoff

log = logging.getLogger("taskq")

# A loop that ran this long before it crashed starts again after the shortest backoff.
HEALTHY_RUN = 60.0  # seconds


async def supervised(
    name: str,
    body: Callable[[], Awaitable[None]],
    on_restart: Callable[[str], None],
    backoff: Backoff | None = None,
) -> None:
    """Run `body` until it returns; restart it whenever it raises."""
    backoff = backoff or Backoff(first=0.1, cap=5.0)
    while True:
        started = time.monotonic()
        try:
            await body()
        except Exception:
            log.exception("the %s loop crashed; starting it again", name)
        else:
            return
        on_restart(name)
        if time.monotonic() - started >= HEALTHY_RUN:
            backoff.reset()
        await asyncio.sleep(backoff.next_delay())
