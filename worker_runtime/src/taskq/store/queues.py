"""Queue provisioning, settings and depth: the calls the CLI and the operator make."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from taskq import jsonutil
from taskq.models import QueueInfo, QueueSettings, QueueStats, ThroughputMinute, WaitMinute
from taskq.names import QueueName
from taskq.store.sqlfiles import query
from taskq.store.types import Executor


def info_from_row(row: asyncpg.Record) -> QueueInfo:
    return QueueInfo(
        id=row["id"],
        namespace=row["namespace"],
        name=row["name"],
        settings=QueueSettings.from_columns(row),
        created_at=row["created_at"],
    )


async def ensure_queue(db: Executor, queue: QueueName, settings: QueueSettings) -> QueueInfo:
    """Create the queue if missing and apply settings; safe to repeat (operator reconciles)."""
    row = await db.fetchrow(
        query("ensure_queue"),
        queue.namespace,
        queue.name,
        jsonutil.dumps(settings.to_columns(), "settings"),
    )
    assert row is not None
    return info_from_row(row)


async def change_settings(db: Executor, queue: QueueName, columns: Mapping[str, Any]) -> QueueInfo:
    """Change only these settings (column -> value), leaving the others as they are: one
    statement, so a concurrent change of another setting is not lost. The queue is provisioned
    if missing, as ensure_queue does; callers that must not create one look it up first."""
    row = await db.fetchrow(
        query("ensure_queue"),
        queue.namespace,
        queue.name,
        jsonutil.dumps(dict(columns), "settings"),
    )
    assert row is not None
    return info_from_row(row)


async def drop_queue(db: Executor, queue: QueueName) -> bool:
    """Drop the queue with all its tasks and history. False if it did not exist."""
    dropped: bool = await db.fetchval(query("drop_queue"), queue.namespace, queue.name)
    return dropped


async def get_queue(db: Executor, queue: QueueName) -> QueueInfo | None:
    row = await db.fetchrow(query("get_queue"), queue.namespace, queue.name)
    return None if row is None else info_from_row(row)


async def list_queues(db: Executor) -> list[QueueInfo]:
    return [info_from_row(row) for row in await db.fetch(query("list_queues"))]


async def queue_stats(db: Executor, queue_id: int, cap: int) -> QueueStats:
    """Each count stops at `cap` tasks (QueueStats.capped names those that reached it)."""
    row = await db.fetchrow(query("queue_stats"), queue_id, cap)
    assert row is not None
    return QueueStats(**dict(row))


async def queue_throughput(db: Executor, queue_id: int, minutes: int) -> list[ThroughputMinute]:
    """The last `minutes` whole minutes and the current one, by the database's clock."""
    rows = await db.fetch(query("queue_throughput_minutes"), queue_id, minutes)
    return [ThroughputMinute(**dict(row)) for row in rows]


async def queue_throughput_since(
    db: Executor, queue_id: int, since: datetime
) -> list[ThroughputMinute]:
    """From the minute of `since` to the current one."""
    rows = await db.fetch(query("queue_throughput"), queue_id, since)
    return [ThroughputMinute(**dict(row)) for row in rows]


async def queue_wait(db: Executor, queue_id: int, minutes: int, sample: int) -> list[WaitMinute]:
    rows = await db.fetch(query("queue_wait"), queue_id, minutes, sample)
    return [WaitMinute(**dict(row)) for row in rows]
