"""Example handlers: what a user's worker image contains (TASKQ_APP=examples.thumbnails).

taskq enqueue demo/thumbnails make_thumbnail '{"image": "cat.png", "size": 128}'
"""

from __future__ import annotations

import asyncio
import logging
import random

from taskq import TaskContext, task

log = logging.getLogger("examples.thumbnails")


@task("make_thumbnail", timeout=10)
async def make_thumbnail(ctx: TaskContext) -> dict[str, object]:
    image, size = ctx.payload["image"], ctx.payload.get("size", 128)
    await asyncio.sleep(random.uniform(0.002, 0.02))  # the work  # noqa: S311
    if image.endswith(".corrupt"):
        raise ValueError(f"cannot decode {image}")
    return {"thumbnail": f"{image}.{size}px.webp"}


@task("send_report")
def send_report(ctx: TaskContext) -> None:
    """A sync handler: runs in a thread and reports progress as it goes."""
    for step in range(1, 4):
        ctx.report_progress({"step": step, "of": 3})
        if ctx.wait_canceled(0.05):
            return
    log.info("report sent to %s", ctx.payload["to"])
