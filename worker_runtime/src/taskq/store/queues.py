"""Queue provisioning, settings and depth: the calls the CLI and the operator make."""

from __future__ import annotations

from typing import Any

import asyncpg

from taskq.models import BackoffPolicy, QueueInfo, QueueSettings, QueueStats
from taskq.names import QueueName
from taskq.store.sqlfiles import query
from taskq.store.types import Connection, Executor


def settings_from_row(row: asyncpg.Record) -> QueueSettings:
    return QueueSettings(
        default_priority=row["default_priority"],
        max_attempts=row["max_attempts"],
        backoff=BackoffPolicy(
            kind=row["backoff_kind"],
            base_seconds=row["backoff_base_s"],
            max_seconds=row["backoff_max_s"],
            jitter=row["backoff_jitter"],
        ),
        timeout_seconds=row["timeout_s"],
        payload_limit_bytes=row["payload_limit_bytes"],
        retention_succeeded_seconds=row["retention_succeeded_s"],
        retention_dead_seconds=row["retention_dead_s"],
        rate_limit_per_second=row["rate_limit_per_s"],
        rate_burst=row["rate_burst"],
        concurrency_limit=row["concurrency_limit"],
        paused=row["paused"],
    )


def info_from_row(row: asyncpg.Record) -> QueueInfo:
    return QueueInfo(
        id=row["id"],
        namespace=row["namespace"],
        name=row["name"],
        settings=settings_from_row(row),
        created_at=row["created_at"],
    )


def _settings_args(settings: QueueSettings) -> tuple[Any, ...]:
    b = settings.backoff
    return (
        settings.default_priority,
        settings.max_attempts,
        b.kind,
        b.base_seconds,
        b.max_seconds,
        b.jitter,
        settings.timeout_seconds,
        settings.payload_limit_bytes,
        settings.retention_succeeded_seconds,
        settings.retention_dead_seconds,
        settings.rate_limit_per_second,
        settings.rate_burst,
        settings.concurrency_limit,
        settings.paused,
    )


async def ensure_queue(conn: Connection, queue: QueueName, settings: QueueSettings) -> QueueInfo:
    """Create the queue if missing and apply settings; safe to repeat (operator reconciles)."""
    async with conn.transaction():
        queue_id = await conn.fetchval(query("provision_queue"), queue.namespace, queue.name)
        await conn.execute(query("configure_queue"), queue_id, *_settings_args(settings))
        row = await conn.fetchrow(query("get_queue"), queue.namespace, queue.name)
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


async def queue_stats(db: Executor, queue_id: int) -> QueueStats:
    row = await db.fetchrow(query("queue_stats"), queue_id)
    assert row is not None
    return QueueStats(**dict(row))
