"""Producing tasks and looking after them: enqueue, inspect, cancel, dead letters, replay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from taskq import jsonutil
from taskq.correlation import current_correlation_id
from taskq.errors import InvalidArgumentError, PayloadTooLargeError, UnknownQueueError
from taskq.models import (
    MAX_IDEMPOTENCY_KEY,
    MAX_TASK_NAME,
    AttemptInfo,
    CancelResult,
    EnqueueResult,
    ReplayResult,
    TaskInfo,
    TaskRequest,
    resolve_priority,
)
from taskq.store.sqlfiles import query
from taskq.store.types import Connection, Executor

# Tasks per statement: bounds statement size and memory; one transaction spans all chunks.
ENQUEUE_CHUNK = 50_000
# Batches this large without idempotency keys are written with COPY.
COPY_THRESHOLD = 64
COPY_COLUMNS = [
    "queue_id",
    "id",
    "task_name",
    "state",
    "priority",
    "payload",
    "run_at",
    "max_attempts",
    "timeout_s",
    "correlation_id",
]
KEYS = 4  # position of the idempotency keys in the function's columns


def _delay_seconds(delay: float | timedelta | None, position: int) -> float | None:
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not 0 <= seconds < float("inf"):  # also refuses NaN
        raise InvalidArgumentError(f"tasks[{position}].delay", f"{delay!r} must be >= 0 seconds")
    return seconds


Column = list[Any] | None


def _optional_columns(tasks: Sequence[TaskRequest], inherited: str | None) -> list[Column]:
    """Priority, delay, key, attempts, timeout and correlation columns; an all-NULL column is
    sent as NULL (less to encode; the SQL function reads NULL as "defaults")."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    priorities, delays, keys, attempts, timeouts, correlations = columns
    for i, t in enumerate(tasks):
        if t.idempotency_key is not None and not 1 <= len(t.idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidArgumentError(
                f"tasks[{i}].idempotency_key", f"must be 1..{MAX_IDEMPOTENCY_KEY} characters"
            )
        if t.max_attempts is not None and not 1 <= t.max_attempts <= 1000:
            raise InvalidArgumentError(f"tasks[{i}].max_attempts", "must be 1..1000")
        if t.timeout is not None and not t.timeout > 0:
            raise InvalidArgumentError(f"tasks[{i}].timeout", "must be > 0 seconds")
        priorities.append(resolve_priority(t.priority, f"tasks[{i}].priority"))
        delays.append(_delay_seconds(t.delay, i))
        keys.append(t.idempotency_key)
        attempts.append(t.max_attempts)
        timeouts.append(t.timeout)
        correlations.append(t.correlation_id if t.correlation_id is not None else inherited)
    return [c if any(v is not None for v in c) else None for c in columns]


def _columns(tasks: Sequence[TaskRequest]) -> list[Column]:
    """Validate requests and lay them out as the SQL function's arrays. The common request
    (a name and a payload) takes one cheap pass: bulk enqueue spends most of its Python time
    here."""
    names: list[str] = []
    payloads: list[str] = []
    encode = jsonutil.encoder.encode
    only_defaults = True
    for i, t in enumerate(tasks):
        name = t.task_name
        if not isinstance(name, str) or not 0 < len(name) <= MAX_TASK_NAME:
            raise InvalidArgumentError(
                f"tasks[{i}].task_name", f"{name!r} must be 1..{MAX_TASK_NAME} characters"
            )
        names.append(name)
        try:
            payloads.append(encode(t.payload))
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"tasks[{i}].payload", f"not JSON-serialisable: {error}"
            ) from None
        if only_defaults and (
            t.priority is not None
            or t.delay is not None
            or t.idempotency_key is not None
            or t.max_attempts is not None
            or t.timeout is not None
            or t.correlation_id is not None
        ):
            only_defaults = False
    inherited = current_correlation_id.get()
    if only_defaults:
        correlations = None if inherited is None else [inherited] * len(names)
        return [names, payloads, None, None, None, None, None, correlations]
    return [names, payloads, *_optional_columns(tasks, inherited)]


async def enqueue_many(
    conn: Connection, queue: str, tasks: Sequence[TaskRequest]
) -> list[EnqueueResult]:
    """Enqueue in the caller's transaction if one is open, else in one of our own.

    Large batches without idempotency keys are written with COPY (about three times the rate
    of the SQL function); batches with keys take the function, which owns ON CONFLICT."""
    results: list[EnqueueResult] = []
    async with conn.transaction():
        for start in range(0, len(tasks), ENQUEUE_CHUNK):
            columns = _columns(tasks[start : start + ENQUEUE_CHUNK])
            if columns[KEYS] is None and len(columns[0] or ()) >= COPY_THRESHOLD:
                results.extend(await _copy_in(conn, queue, columns, start))
                continue
            rows = await conn.fetch(query("enqueue_many"), queue, *columns)
            results.extend(EnqueueResult(row["id"], row["created"]) for row in rows)
    return results


async def _copy_in(
    conn: Connection, queue: str, columns: list[Column], offset: int
) -> list[EnqueueResult]:
    """COPY a batch into the queue's partition, applying what taskq.enqueue_many would."""
    names, payloads, priorities, delays, _keys, attempts, timeouts, correlations = columns
    assert names is not None
    assert payloads is not None
    namespace, _, name = queue.partition("/")
    info = await conn.fetchrow(query("queue_for_copy"), namespace, name)
    if info is None:
        raise UnknownQueueError(queue)
    _check_payload_sizes(payloads, info["payload_limit_bytes"], offset)
    ids: list[int] = await conn.fetchval(query("reserve_task_ids"), len(names))
    queue_id, now = info["id"], info["now"]
    if priorities is delays is attempts is timeouts is correlations is None:
        ready = ("ready", info["default_priority"])
        records: list[tuple[Any, ...]] = [
            (queue_id, task_id, task_name, *ready, payload, now, info["max_attempts"], None, None)
            for task_id, task_name, payload in zip(ids, names, payloads, strict=True)
        ]
    else:
        records = []
        for i, (task_id, task_name, payload) in enumerate(zip(ids, names, payloads, strict=True)):
            delay = delays[i] if delays else None
            priority = priorities[i] if priorities else None
            max_attempts = attempts[i] if attempts else None
            records.append(
                (
                    queue_id,
                    task_id,
                    task_name,
                    "scheduled" if delay else "ready",
                    info["default_priority"] if priority is None else priority,
                    payload,
                    now + timedelta(seconds=delay) if delay else now,
                    info["max_attempts"] if max_attempts is None else max_attempts,
                    timeouts[i] if timeouts else None,
                    correlations[i] if correlations else None,
                )
            )
    await conn.copy_records_to_table(
        f"tasks_q{queue_id}", schema_name="taskq", columns=COPY_COLUMNS, records=records
    )
    await conn.execute(query("notify_ready"), str(queue_id))
    return [EnqueueResult(task_id, True) for task_id in ids]


def _check_payload_sizes(payloads: list[str], limit: int, offset: int) -> None:
    for i, payload in enumerate(payloads):
        # a character is at most 4 bytes in UTF-8: most payloads need no encoding to check
        if len(payload) * 4 > limit and len(payload.encode()) > limit:
            raise PayloadTooLargeError(
                f"payload of task {offset + i + 1} is {len(payload.encode())} bytes, over the "
                f"queue's limit of {limit} bytes (store large data elsewhere and pass a "
                "reference, or raise the queue's payload limit)"
            )


def _task_from_row(row: asyncpg.Record) -> TaskInfo:
    data = dict(row)
    del data["queue_id"]
    for key in ("payload", "result", "error", "progress"):
        data[key] = jsonutil.loads(data[key])
    return TaskInfo(**data)


async def get_task(db: Executor, task_id: int) -> TaskInfo | None:
    row = await db.fetchrow(query("get_task"), task_id)
    return None if row is None else _task_from_row(row)


async def task_attempts(db: Executor, task_id: int) -> list[AttemptInfo]:
    rows = await db.fetch(query("task_attempts"), task_id)
    return [AttemptInfo(**{**dict(r), "error": jsonutil.loads(r["error"])}) for r in rows]


async def cancel_task(db: Executor, task_id: int) -> CancelResult | None:
    row = await db.fetchrow(query("cancel_task"), task_id)
    return None if row is None else CancelResult(row["state"], row["cancel_requested"])


async def list_dead(db: Executor, queue_id: int, limit: int) -> list[TaskInfo]:
    return [_task_from_row(row) for row in await db.fetch(query("list_dead"), queue_id, limit)]


async def replay_dead(db: Executor, queue_id: int, task_ids: Sequence[int] | None) -> ReplayResult:
    row = await db.fetchrow(
        query("replay_dead"), queue_id, None if task_ids is None else list(task_ids)
    )
    assert row is not None
    return ReplayResult(row["replayed"], row["skipped"])
