"""Producing tasks and looking after them: enqueue, inspect, cancel, dead letters, replay."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from taskq import jsonutil
from taskq.correlation import current_correlation_id
from taskq.errors import (
    InvalidArgumentError,
    PayloadTooLargeError,
    TaskStateError,
    UnknownQueueError,
)
from taskq.models import (
    CALLBACK_URL,
    MAX_CALLBACK_URL,
    MAX_DELAY_SECONDS,
    MAX_IDEMPOTENCY_KEY,
    MAX_TASK_NAME,
    MAX_TIMEOUT_SECONDS,
    AttemptInfo,
    BulkCancelResult,
    BulkRetryResult,
    CancelResult,
    EnqueueResult,
    ErrorSearch,
    ReplayResult,
    TaskInfo,
    TaskRequest,
    resolve_priority,
)
from taskq.store.sqlfiles import query
from taskq.store.types import Connection, Executor

# A listing's bounds when none is given: every task is inside them. Non-NULL bounds keep the
# id bound an index condition in a generic plan too (a "$n IS NULL OR id < $n" would not be).
_MAX_ID = 2**63 - 1
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)
# Tasks per statement: bounds statement size and memory; one transaction spans all chunks.
ENQUEUE_CHUNK = 10_000
COPY_CHUNK = 100_000
# Batches this large without idempotency keys are written with COPY.
COPY_THRESHOLD = 64
COPY_COLUMNS = [
    "queue_id",
    "id",
    "task_name",
    "state",
    "priority",
    "payload",
    "max_attempts",
]
# Sent only when a request in the batch sets one of them; otherwise the columns' defaults (the
# transaction's now(), NULL) apply, and there are fewer fields per row to encode and parse.
COPY_OPTIONAL_COLUMNS = ["run_at", "timeout_s", "correlation_id"]


def _delay_seconds(delay: float | timedelta | None, position: int) -> float | None:
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not 0 <= seconds <= MAX_DELAY_SECONDS:  # also refuses NaN
        raise InvalidArgumentError(
            f"tasks[{position}].delay", f"{delay!r} must be 0..{MAX_DELAY_SECONDS} seconds"
        )
    return seconds


# One validated request: name, payload JSON, priority, delay, key, max attempts, timeout,
# correlation id, callback URL (None: the queue's default, or none).
Row = tuple[
    str, str, int | None, float | None, str | None, int | None, float | None, str | None, str | None
]


def _validated(t: TaskRequest, i: int, inherited: str | None) -> Row:
    """Check one request and encode its payload; errors name the request's position."""
    name = t.task_name
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TASK_NAME:
        raise InvalidArgumentError(
            f"tasks[{i}].task_name", f"{name!r} must be 1..{MAX_TASK_NAME} characters"
        )
    try:
        payload = jsonutil.encode(t.payload)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(
            f"tasks[{i}].payload", f"not JSON-serialisable: {error}"
        ) from None
    if jsonutil.holds_nul(payload):
        raise InvalidArgumentError(
            f"tasks[{i}].payload",
            "holds the character U+0000, which PostgreSQL cannot store in JSON: remove it, "
            "or encode the data (e.g. base64)",
        )
    correlation = t.correlation_id if t.correlation_id is not None else inherited
    if (
        t.priority is None
        and t.delay is None
        and t.idempotency_key is None
        and t.max_attempts is None
        and t.timeout is None
        and t.callback_url is None
    ):
        return (name, payload, None, None, None, None, None, correlation, None)
    if t.idempotency_key is not None and not 1 <= len(t.idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidArgumentError(
            f"tasks[{i}].idempotency_key", f"must be 1..{MAX_IDEMPOTENCY_KEY} characters"
        )
    if t.max_attempts is not None and not 1 <= t.max_attempts <= 1000:
        raise InvalidArgumentError(f"tasks[{i}].max_attempts", "must be 1..1000")
    if t.timeout is not None and not 0 < t.timeout <= MAX_TIMEOUT_SECONDS:  # NaN too
        raise InvalidArgumentError(
            f"tasks[{i}].timeout", f"must be > 0 and at most {MAX_TIMEOUT_SECONDS} seconds"
        )
    return (
        name,
        payload,
        resolve_priority(t.priority, f"tasks[{i}].priority"),
        _delay_seconds(t.delay, i),
        t.idempotency_key,
        t.max_attempts,
        t.timeout,
        correlation,
        _callback_url(t.callback_url, i),
    )


def _callback_url(url: str | None, i: int) -> str | None:
    """Its shape only; whether it may be called is decided at delivery (docs/webhooks.md)."""
    if url is None:
        return None
    if not CALLBACK_URL.match(url) or len(url) > MAX_CALLBACK_URL:
        raise InvalidArgumentError(
            f"tasks[{i}].callback_url",
            f"{url[:80]!r} must be an http:// or https:// URL of at most "
            f"{MAX_CALLBACK_URL} characters",
        )
    return url


Column = list[Any] | None

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def check_traceparent(traceparent: str) -> None:
    """What taskq.enqueue_many checks, for the COPY path, which bypasses it."""
    if not _TRACEPARENT.fullmatch(traceparent):
        raise InvalidArgumentError(
            "traceparent",
            f"{traceparent!r} is not a W3C traceparent "
            "(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)",
        )


def _columns(tasks: Sequence[TaskRequest], offset: int = 0) -> list[Column]:
    """The SQL function's arrays; an all-NULL column is sent as NULL (less to encode; the
    function reads NULL as "defaults")."""
    inherited = current_correlation_id.get()
    rows = [_validated(t, offset + i, inherited) for i, t in enumerate(tasks)]
    columns = [list(column) for column in zip(*rows, strict=True)]
    return [c if n < 2 or any(v is not None for v in c) else None for n, c in enumerate(columns)]


async def enqueue_many(
    conn: Connection,
    queue: str,
    tasks: Sequence[TaskRequest],
    traceparent: str | None = None,
) -> list[EnqueueResult]:
    """Enqueue in the caller's transaction if one is open, else in one of our own;
    `traceparent`: the W3C trace context the tasks keep (taskq.tracing).

    Large batches without idempotency keys are written with COPY (several times the rate of
    the SQL function); batches with keys take the function, which owns ON CONFLICT."""
    copy = len(tasks) >= COPY_THRESHOLD and all(
        t.idempotency_key is None and t.callback_url is None for t in tasks
    )
    if not copy and len(tasks) <= ENQUEUE_CHUNK and not conn.is_in_transaction():
        # One statement is atomic by itself: BEGIN and COMMIT would only add round trips
        # (they were half the time of a single enqueue).
        return await _enqueue_chunk(conn, queue, tasks, 0, traceparent)
    results: list[EnqueueResult] = []
    async with conn.transaction():
        if copy:
            for start in range(0, len(tasks), COPY_CHUNK):
                chunk = tasks[start : start + COPY_CHUNK]
                results.extend(await _copy_in(conn, queue, chunk, start, traceparent))
            return results
        for start in range(0, len(tasks), ENQUEUE_CHUNK):
            chunk = tasks[start : start + ENQUEUE_CHUNK]
            results.extend(await _enqueue_chunk(conn, queue, chunk, start, traceparent))
    return results


async def _enqueue_chunk(
    conn: Connection,
    queue: str,
    tasks: Sequence[TaskRequest],
    offset: int,
    traceparent: str | None,
) -> list[EnqueueResult]:
    """One call of the SQL function taskq.enqueue_many."""
    rows = await conn.fetch(query("enqueue_many"), queue, *_columns(tasks, offset), traceparent)
    return [EnqueueResult(row["id"], row["created"]) for row in rows]


async def _copy_in(
    conn: Connection,
    queue: str,
    tasks: Sequence[TaskRequest],
    offset: int,
    traceparent: str | None,
) -> list[EnqueueResult]:
    """COPY requests into the queue's partition, applying what taskq.enqueue_many would.
    Rows are validated and encoded as COPY streams them, so Python's work overlaps the
    server's inserts; an invalid request aborts the COPY (and the transaction)."""
    namespace, _, name = queue.partition("/")
    info = await conn.fetchrow(query("queue_for_copy"), namespace, name)
    if info is None:
        raise UnknownQueueError(queue)
    ids: list[int] = await conn.fetchval(query("reserve_task_ids"), len(tasks))
    inherited = current_correlation_id.get()
    optional = inherited is not None or any(
        t.delay or t.timeout is not None or t.correlation_id is not None for t in tasks
    )
    columns = COPY_COLUMNS + COPY_OPTIONAL_COLUMNS if optional else COPY_COLUMNS
    top = [0]  # the highest priority copied, known once COPY has read every row
    rows: Iterator[tuple[Any, ...]] = _copy_rows(tasks, ids, info, offset, inherited, optional, top)
    if traceparent is not None:
        check_traceparent(traceparent)
        columns = [*columns, "traceparent"]
        rows = ((*row, traceparent) for row in rows)
    await conn.copy_records_to_table(
        f"tasks_q{info['id']}", schema_name="taskq", columns=columns, records=rows
    )
    # no row comes before (top, the transaction's clock) in claim order: ready rows have that
    # run_at (the column default), delayed ones later
    await conn.execute(query("notify_ready"), info["id"], top[0], info["now"])
    return [EnqueueResult(task_id, True) for task_id in ids]


def _copy_rows(
    tasks: Sequence[TaskRequest],
    ids: list[int],
    info: asyncpg.Record,
    offset: int,
    inherited: str | None,
    optional: bool,
    top: list[int],
) -> Iterator[tuple[Any, ...]]:
    """COPY_COLUMNS of each request, and COPY_OPTIONAL_COLUMNS too if `optional`; `top[0]`
    rises to the highest priority yielded."""
    queue_id, now, limit = info["id"], info["now"], info["payload_limit_bytes"]
    default_priority, default_attempts = info["default_priority"], info["max_attempts"]
    for i, (task_id, request) in enumerate(zip(ids, tasks, strict=True)):
        name, payload, priority, delay, _key, attempts, timeout, correlation, _url = _validated(
            request, offset + i, inherited
        )
        # a character is at most 4 bytes in UTF-8: most payloads need no encoding to check
        if len(payload) * 4 > limit and len(payload.encode()) > limit:
            raise PayloadTooLargeError(
                f"payload of task {offset + i + 1} is {len(payload.encode())} bytes, over the "
                f"queue's limit of {limit} bytes (store large data elsewhere and pass a "
                "reference, or raise the queue's payload limit)"
            )
        if priority is None:
            priority = default_priority
        top[0] = max(top[0], priority)
        row: tuple[Any, ...] = (
            queue_id,
            task_id,
            name,
            "scheduled" if delay else "ready",
            priority,
            payload,
            default_attempts if attempts is None else attempts,
        )
        if optional:
            row += (now + timedelta(seconds=delay) if delay else now, timeout, correlation)
        yield row


async def enqueue_details(
    conn: Connection, queue: str, task: TaskRequest, traceparent: str | None = None
) -> tuple[bool, TaskInfo]:
    """One task enqueued and read back in one statement: whether this call created it (else
    its idempotency key was held), and the task."""
    row = await conn.fetchrow(query("enqueue_details"), queue, *_columns([task]), traceparent)
    assert row is not None  # the function raises rather than return nothing
    data = dict(row)
    created: bool = data.pop("created")
    return created, _task_from_row(data)


async def enqueue_details_many(
    conn: Connection, queue: str, tasks: Sequence[TaskRequest], traceparent: str | None = None
) -> list[tuple[bool, TaskInfo]]:
    """Tasks enqueued and read back in one transaction (one commit, one notification), in
    their order: whether each was created (else its idempotency key was held, also by an
    earlier task of these), and the task. All or nothing, like enqueue_many."""
    async with conn.transaction():
        rows = await conn.fetch(query("enqueue_many"), queue, *_columns(tasks), traceparent)
        ids = [row["id"] for row in rows]
        details = await conn.fetch(query("queue_tasks_by_id"), queue, ids)
    by_id = {row["id"]: _task_from_row(row) for row in details}
    return [(row["created"], by_id[row["id"]]) for row in rows]


def _task_from_row(row: asyncpg.Record | dict[str, Any]) -> TaskInfo:
    data = dict(row)
    del data["queue_id"]
    for key in ("payload", "result", "error", "progress"):
        data[key] = jsonutil.loads(data[key])
    return TaskInfo(**data)


async def find_task_queue(db: Executor, task_id: int) -> int | None:
    """The id of the queue holding the task (None: no such task). A task id alone names no
    partition, and a statement over every queue's partition locks them all and their indexes
    (docs/design.md, "Lookups by task id"), so the queues' partitions are probed one at a time,
    newest queue first. Outside a transaction block each probe commits: at most one partition
    is locked at once. Inside one (a connection in a transaction) a procedure cannot commit,
    and the partitions probed stay locked until the transaction ends."""
    in_transaction = not isinstance(db, asyncpg.Pool) and db.is_in_transaction()
    queue_id: int | None = await db.fetchval(
        query("task_queue_in_transaction") if in_transaction else query("find_task_queue"),
        task_id,
    )
    return queue_id


async def get_task(db: Executor, queue_id: int, task_id: int) -> TaskInfo | None:
    """The task, if the queue holds it."""
    row = await db.fetchrow(query("get_task"), queue_id, task_id)
    return None if row is None else _task_from_row(row)


async def list_tasks(
    db: Executor,
    queue_id: int,
    *,
    state: str | None,
    task_name: str | None,
    correlation_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[TaskInfo]:
    """At most `limit` tasks of the queue with an id below `before_id`, newest (highest id)
    first, that match every filter given (None: any)."""
    # (a correlation id names a few tasks: taskq.list_tasks walks its index, not the queue)
    rows = await db.fetch(
        query("list_tasks"),
        queue_id,
        state,
        task_name,
        correlation_id,
        created_after if created_after is not None else _EARLIEST,
        created_before if created_before is not None else _LATEST,
        before_id if before_id is not None else _MAX_ID,
        limit,
    )
    return [_task_from_row(row) for row in rows]


async def list_tasks_by_error(
    db: Executor,
    queue_id: int,
    *,
    error: str,
    walk: int,
    state: str | None,
    task_name: str | None,
    correlation_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    before_id: int | None,
    limit: int,
) -> ErrorSearch:
    """list_tasks' page, of tasks whose error text contains `error` (literally, any case),
    reading at most `walk` tasks (taskq.list_tasks_by_error, migration 0031)."""
    rows = await db.fetch(
        query("list_tasks_by_error"),
        queue_id,
        state,
        task_name,
        correlation_id,
        created_after if created_after is not None else _EARLIEST,
        created_before if created_before is not None else _LATEST,
        before_id if before_id is not None else _MAX_ID,
        limit,
        error,
        walk,
    )
    tasks, walked_to = [], None
    for row in rows:
        data = dict(row)
        end = data.pop("walked_to")
        if end is not None:
            walked_to = end
        else:
            tasks.append(_task_from_row(data))
    return ErrorSearch(tasks, walked_to)


async def cancel_many(db: Executor, queue_id: int, task_ids: Sequence[int]) -> BulkCancelResult:
    """Cancel these tasks of the queue (at most 1,000: one transaction locks them all)."""
    row = await db.fetchrow(query("cancel_many"), queue_id, list(task_ids))
    assert row is not None
    return BulkCancelResult(
        row["canceled"], row["asked"], row["already"], row["finished"], row["missing"]
    )


async def retry_many(db: Executor, queue_id: int, task_ids: Sequence[int]) -> BulkRetryResult:
    """Send those of these tasks that are dead back to ready; the others are left alone."""
    row = await db.fetchrow(query("retry_many"), queue_id, list(task_ids))
    assert row is not None
    distinct = len(set(task_ids))
    return BulkRetryResult(
        row["replayed"], row["skipped"], distinct - row["replayed"] - row["skipped"]
    )


async def task_attempts(db: Executor, queue_id: int, task_id: int) -> list[AttemptInfo]:
    """The task's attempts, oldest first; none if the queue does not hold it."""
    rows = await db.fetch(query("task_attempts"), queue_id, task_id)
    return [AttemptInfo(**{**dict(r), "error": jsonutil.loads(r["error"])}) for r in rows]


async def cancel_task(db: Executor, queue_id: int, task_id: int) -> CancelResult | None:
    """Cancel the task if the queue holds it (None: it does not)."""
    row = await db.fetchrow(query("cancel_task"), queue_id, task_id)
    return None if row is None else CancelResult(row["state"], row["cancel_requested"])


async def list_dead(db: Executor, queue_id: int, limit: int) -> list[TaskInfo]:
    return [_task_from_row(row) for row in await db.fetch(query("list_dead"), queue_id, limit)]


async def replay_dead(
    conn: Connection, queue: str, queue_id: int, task_ids: Sequence[int] | None
) -> ReplayResult:
    """Every dead task of the queue (`task_ids` None), or these: then each must be a dead task
    of the queue, else nothing is replayed and the error names the first that is not."""
    async with conn.transaction():
        if task_ids is not None:
            rows = await conn.fetch(query("task_states_locked"), queue_id, list(task_ids))
            states = {row["id"]: row["state"] for row in rows}
            for task_id in task_ids:
                state = states.get(task_id)
                if state != "dead":
                    raise TaskStateError(
                        "ids",
                        f"no task {task_id} in queue {queue}"
                        if state is None
                        else f"task {task_id} is {state}, not dead: name only dead tasks "
                        f"(taskq dead list {queue} lists them)",
                    )
        row = await conn.fetchrow(
            query("replay_dead"), queue_id, None if task_ids is None else list(task_ids)
        )
    assert row is not None
    return ReplayResult(row["replayed"], row["skipped"])
