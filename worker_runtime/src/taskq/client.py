"""The taskq client: produce tasks and administer queues.

    async with await taskq.connect(dsn) as client:
        await client.enqueue("default/emails", "send_email", {"to": "a@example.com"})

Every producing call accepts `connection=`: pass a connection inside your own transaction and
the task exists only if that transaction commits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, get_args

import asyncpg

from taskq import tracing
from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    SchemaMissingError,
    UnknownQueueError,
    UnknownScheduleError,
    UnknownTaskError,
    UnknownWebhookError,
)
from taskq.models import (
    AttemptInfo,
    BulkCancelResult,
    BulkRetryResult,
    CancelResult,
    EnqueueResult,
    ErrorSearch,
    QueueInfo,
    QueueSettings,
    QueueStats,
    ReplayResult,
    TaskInfo,
    TaskRequest,
    TaskState,
    ThroughputMinute,
    WaitMinute,
    WorkerPoolInfo,
    setting_fields,
)
from taskq.names import QueueName
from taskq.schedules import ScheduleSpec
from taskq.store import pools as pool_store
from taskq.store import queues as queue_store
from taskq.store import schedules as schedule_store
from taskq.store import tasks as task_store
from taskq.store import webhooks as webhook_store
from taskq.store.codecs import learn_types
from taskq.store.dberrors import CONNECTION_ERRORS, describe_connection_error, translated
from taskq.store.migrations import migrate
from taskq.store.pool_mode import PoolMode, connect_settings, statement_cache_size
from taskq.store.schedules import ScheduleInfo
from taskq.store.sqlfiles import query
from taskq.store.types import Connection
from taskq.store.webhooks import WebhookInfo
from taskq.webhooks import WebhookSpec

_Found = TypeVar("_Found")

# Most tasks one call of Client.list_tasks returns (the REST API's pages hold at most 500).
MAX_LIST_LIMIT = 10_000
# A throughput chart covers a day at most: each minute is a range of the finished-tasks index.
MAX_THROUGHPUT_MINUTES = 24 * 60
# A wait chart's sample: at most this many tasks per minute (each one read from the heap), by
# default and at most (taskq.queue_wait refuses more).
WAIT_SAMPLE = 200
MAX_WAIT_SAMPLE = 10_000
# Where queue_stats stops counting by default (the CLI, the API and its dashboard, as the
# operator's status): a reading then walks at most this many index entries per count, a few
# milliseconds, whatever the backlog.
COUNT_CAP = 10_000
# Task ids whose queue a client remembers (the most recently looked up): a task never changes
# queue, and neither task nor queue ids are used twice, so what is remembered stays true while
# the task exists. A watch, a wait, or a read then its history find the queue once.
TASK_QUEUES_KEPT = 4096
# Tasks a bulk cancel or retry changes in one transaction (taskq.cancel_many takes 1,000 at
# most): a larger selection is several short transactions, never one that locks it all.
BULK_BATCH = 500


async def no_session_reset(_conn: asyncpg.Connection) -> None:
    """A `reset` for pools whose calls leave no session state behind (no LISTEN, SET or
    advisory lock): asyncpg's default reset (UNLISTEN, RESET ALL, ...) costs a round trip each
    time a connection is given back, after every claim and acknowledgement of a worker and
    every query of the API server. asyncpg still rolls back a transaction left open by a
    cancelled call before calling this."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    pool_mode: PoolMode = "session",
) -> asyncpg.Pool:
    """A connection pool, or DatabaseUnavailableError naming why the database is unreachable.
    `reset` replaces asyncpg's reset of a connection given back (None: asyncpg's, or none
    through transaction pooling, where no session state is the connection's to reset).
    `pool_mode`: how the DSN reaches PostgreSQL (store/pool_mode.py)."""
    if reset is None and pool_mode == "transaction":
        reset = no_session_reset
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=10,
            server_settings=connect_settings(server_settings),
            reset=reset,
            statement_cache_size=statement_cache_size(pool_mode),
            init=learn_types if pool_mode == "transaction" else None,
        )
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailableError(describe_connection_error(error)) from None
    except ValueError as error:  # a malformed DSN
        raise DatabaseUnavailableError(f"invalid database DSN: {error}") from None
    assert pool is not None
    return pool


def _check_page(limit: int, state: str | None) -> None:
    """A page of a task listing: InvalidArgumentError naming the argument that cannot be."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidArgumentError("limit", f"{limit} must be 1..{MAX_LIST_LIMIT}")
    if state is not None and state not in get_args(TaskState):
        raise InvalidArgumentError(
            "state", f"{state!r} must be one of {', '.join(get_args(TaskState))}"
        )


class Client:
    def __init__(self, pool: asyncpg.Pool, *, owns_pool: bool = False) -> None:
        self.pool = pool
        self._owns_pool = owns_pool
        # task id -> queue id, least recently used first (TASK_QUEUES_KEPT)
        self._task_queues: OrderedDict[int, int] = OrderedDict()

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- schema and queues ------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        with translated():
            async with self.pool.acquire() as conn:
                return await migrate(conn)

    async def ensure_queue(self, queue: str, settings: QueueSettings | None = None) -> QueueInfo:
        name = QueueName.parse(queue)
        with translated(queue):
            return await queue_store.ensure_queue(self.pool, name, settings or QueueSettings())

    async def drop_queue(self, queue: str) -> bool:
        with translated(queue):
            return await queue_store.drop_queue(self.pool, QueueName.parse(queue))

    async def get_queue(self, queue: str) -> QueueInfo:
        with translated(queue):
            info = await queue_store.get_queue(self.pool, QueueName.parse(queue))
        if info is None:
            raise UnknownQueueError(queue)
        return info

    async def list_queues(self) -> list[QueueInfo]:
        with translated():
            return await queue_store.list_queues(self.pool)

    async def set_paused(self, queue: str, paused: bool) -> QueueInfo:
        """Pause (no worker claims its tasks; enqueueing goes on) or resume an existing queue,
        changing no other setting. A queue managed by a TaskQueue resource gets its spec's
        `paused` back when the operator next applies the spec: pause those in the spec."""
        name = QueueName.parse(queue)
        await self.get_queue(queue)  # UnknownQueueError rather than creating it
        column = next(field.column for field in setting_fields() if field.path == "paused")
        with translated(queue):
            return await queue_store.change_settings(self.pool, name, {column: paused})

    # Schedules, named `namespace/name` like queues; a schedule's queue is in its namespace.

    async def create_schedule(self, schedule: str, spec: ScheduleSpec) -> ScheduleInfo:
        """A new schedule; ScheduleExistsError when the name is taken."""
        name = QueueName.parse(schedule, what="schedule")
        return await schedule_store.create_schedule(self.pool, name.namespace, name.name, spec)

    async def put_schedule(self, schedule: str, spec: ScheduleSpec) -> ScheduleInfo:
        """Create or update; an update keeps the next tick unless its cron or time zone
        changed, or it resumes."""
        name = QueueName.parse(schedule, what="schedule")
        return await schedule_store.put_schedule(self.pool, name.namespace, name.name, spec)

    async def get_schedule(self, schedule: str) -> ScheduleInfo:
        name = QueueName.parse(schedule, what="schedule")
        found = await schedule_store.get_schedule(self.pool, name.namespace, name.name)
        if found is None:
            raise UnknownScheduleError(schedule)
        return found

    async def list_schedules(self, namespace: str | None = None) -> list[ScheduleInfo]:
        return await schedule_store.list_schedules(self.pool, namespace)

    async def set_schedule_suspended(self, schedule: str, suspend: bool) -> ScheduleInfo:
        """Suspend, or resume from the next tick (ticks while suspended are not run)."""
        name = QueueName.parse(schedule, what="schedule")
        found = await schedule_store.set_suspended(self.pool, name.namespace, name.name, suspend)
        if found is None:
            raise UnknownScheduleError(schedule)
        return found

    async def delete_schedule(self, schedule: str) -> None:
        name = QueueName.parse(schedule, what="schedule")
        if not await schedule_store.delete_schedule(self.pool, name.namespace, name.name):
            raise UnknownScheduleError(schedule)

    # Webhooks: a queue's endpoints, named within it (docs/webhooks.md).

    async def put_webhook(
        self, queue: str, name: str, spec: WebhookSpec, declared_by: str | None = None
    ) -> WebhookInfo:
        """Create or update the queue's endpoint `name` (the queue need not exist yet)."""
        return await webhook_store.put_webhook(
            self.pool, QueueName.parse(queue), name, spec, declared_by
        )

    async def get_webhook(self, queue: str, name: str) -> WebhookInfo:
        found = await webhook_store.get_webhook(self.pool, QueueName.parse(queue), name)
        if found is None:
            raise UnknownWebhookError(queue, name)
        return found

    async def list_webhooks(self, queue: str | None = None) -> list[WebhookInfo]:
        """Every webhook, or those of `queue` (NAMESPACE/NAME, or NAMESPACE alone)."""
        if queue is None:
            return await webhook_store.list_webhooks(self.pool)
        if "/" not in queue:
            return await webhook_store.list_webhooks(self.pool, queue)
        name = QueueName.parse(queue)
        return await webhook_store.list_webhooks(self.pool, name.namespace, name.name)

    async def delete_webhook(self, queue: str, name: str) -> None:
        if not await webhook_store.delete_webhook(self.pool, QueueName.parse(queue), name):
            raise UnknownWebhookError(queue, name)

    async def schema_version(self) -> int:
        """The newest migration applied: a cheap readiness probe (the database answers and
        the taskq schema is there), else DatabaseUnavailableError or SchemaMissingError."""
        with translated():
            version: int | None = await self.pool.fetchval(query("schema_version"))
        if version is None:
            raise SchemaMissingError
        return version

    async def queue_stats(
        self, queue: str | QueueInfo, *, cap: int = COUNT_CAP
    ) -> QueueStats:
        """The queue's depth; given a QueueInfo (as list_queues returns), without looking the
        queue up again (a queue dropped since then counts nothing). Each count stops at `cap`
        tasks (1..1,000,000,000), which bounds what a reading costs: QueueStats.capped names
        the counts that reached it."""
        info = queue if isinstance(queue, QueueInfo) else await self.get_queue(queue)
        with translated(info.full_name):
            return await queue_store.queue_stats(self.pool, info.id, cap)

    async def queue_throughput(
        self, queue: str | QueueInfo, minutes: int = 60, *, since: datetime | None = None
    ) -> list[ThroughputMinute]:
        """Tasks that finished succeeded or dead in each of the last `minutes` whole minutes
        and the current one, oldest first; or, given `since`, in each minute from its minute
        to the current one (counted from the finished-tasks index, one range per outcome:
        fine per page view, not per second)."""
        if not 1 <= minutes <= MAX_THROUGHPUT_MINUTES:
            raise InvalidArgumentError(
                "minutes", f"{minutes}: ask for 1 to {MAX_THROUGHPUT_MINUTES} minutes"
            )
        info = queue if isinstance(queue, QueueInfo) else await self.get_queue(queue)
        with translated(info.full_name):
            if since is not None:
                return await queue_store.queue_throughput_since(self.pool, info.id, since)
            return await queue_store.queue_throughput(self.pool, info.id, minutes)

    async def queue_wait(
        self, queue: str | QueueInfo, minutes: int = 60, *, sample: int = WAIT_SAMPLE
    ) -> list[WaitMinute]:
        """How long succeeded tasks waited from due to start, per minute of finishing over the
        last `minutes` whole minutes and the current one, oldest first: the median and 95th
        percentile of at most `sample` tasks a minute (the first to finish in it)."""
        if not 1 <= minutes <= MAX_THROUGHPUT_MINUTES:
            raise InvalidArgumentError(
                "minutes", f"{minutes}: ask for 1 to {MAX_THROUGHPUT_MINUTES} minutes"
            )
        if not 1 <= sample <= MAX_WAIT_SAMPLE:
            raise InvalidArgumentError(
                "sample", f"{sample}: ask for 1 to {MAX_WAIT_SAMPLE} tasks a minute"
            )
        info = queue if isinstance(queue, QueueInfo) else await self.get_queue(queue)
        with translated(info.full_name):
            return await queue_store.queue_wait(self.pool, info.id, minutes, sample)

    async def worker_pools(self, queue: str) -> list[WorkerPoolInfo]:
        """The worker pools the operator recorded as serving the queue, by name (none without
        an operator)."""
        name = QueueName.parse(queue)
        with translated(queue):
            return await pool_store.worker_pools_serving(self.pool, name.namespace, name.name)

    # -- producing --------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        task_name: str,
        payload: Any = None,
        *,
        priority: int | str | None = None,
        delay: float | timedelta | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the task's execution timeout
        correlation_id: str | None = None,
        callback_url: str | None = None,
        connection: Connection | None = None,
    ) -> EnqueueResult:
        request = TaskRequest(
            task_name,
            payload,
            priority,
            delay,
            idempotency_key,
            max_attempts,
            timeout,
            correlation_id,
            callback_url,
        )
        (result,) = await self.enqueue_many(queue, [request], connection=connection)
        return result

    async def enqueue_many(
        self,
        queue: str,
        tasks: Sequence[TaskRequest],
        *,
        connection: Connection | None = None,
        traceparent: str | None = None,
    ) -> list[EnqueueResult]:
        """All or nothing: one transaction (the caller's, if `connection` is in one). With
        tracing on, under a `send <queue>` span whose context the tasks keep. `traceparent`:
        the caller's trace context (e.g. an HTTP request's), the parent of that span, or what
        the tasks keep when tracing is off."""
        QueueName.parse(queue)
        if not tasks:
            return []
        with (
            translated(queue),
            tracing.attached(traceparent),
            tracing.send_span(queue, len(tasks)) as sent,
        ):
            context = sent or traceparent
            if connection is not None:
                return await task_store.enqueue_many(connection, queue, tasks, context)
            async with self.pool.acquire() as conn:
                return await task_store.enqueue_many(conn, queue, tasks, context)

    async def enqueue_and_get(
        self, queue: str, task: TaskRequest, *, traceparent: str | None = None
    ) -> tuple[bool, TaskInfo]:
        """One task enqueued and read back in one round trip: whether this call created it
        (False: its idempotency key was held by the task returned), and the task.
        `traceparent`: the caller's trace context (e.g. an HTTP request's), the parent of the
        `send` span."""
        QueueName.parse(queue)
        with (
            translated(queue),
            tracing.attached(traceparent),
            tracing.send_span(queue, 1) as sent,
        ):
            async with self.pool.acquire() as conn:
                return await task_store.enqueue_details(conn, queue, task, sent or traceparent)

    async def enqueue_and_get_many(
        self, queue: str, tasks: Sequence[TaskRequest], *, traceparent: str | None = None
    ) -> list[tuple[bool, TaskInfo]]:
        """Tasks enqueued and read back in one transaction, all or nothing: for each, in
        order, whether this call created it (False: its idempotency key was held, also by an
        earlier task of these) and the task. `traceparent` as for enqueue_and_get."""
        QueueName.parse(queue)
        with (
            translated(queue),
            tracing.attached(traceparent),
            tracing.send_span(queue, len(tasks)) as sent,
        ):
            async with self.pool.acquire() as conn:
                return await task_store.enqueue_details_many(
                    conn, queue, tasks, sent or traceparent
                )

    # -- tasks ------------------------------------------------------------------------------

    async def get_task(self, task_id: int) -> TaskInfo:
        with translated():
            task = await self._by_id(task_id, task_store.get_task)
        if task is None:
            raise UnknownTaskError(task_id)
        return task

    async def task_attempts(self, task_id: int) -> list[AttemptInfo]:
        with translated():
            return await self._by_id(task_id, task_store.task_attempts) or []

    async def cancel(self, task_id: int) -> CancelResult:
        """Waiting tasks are canceled at once; a running one is asked to stop (cooperatively)."""
        with translated():
            result = await self._by_id(task_id, task_store.cancel_task)
        if result is None:
            raise UnknownTaskError(task_id)
        return result

    async def _by_id(
        self, task_id: int, run: Callable[[asyncpg.Pool, int, int], Awaitable[_Found | None]]
    ) -> _Found | None:
        """`run(pool, queue_id, task_id)` on the task's queue; None for an unknown task. The
        queue is found by probing the queues one at a time (store.tasks.find_task_queue), or
        remembered from an earlier lookup."""
        queue_id = self._task_queues.get(task_id)
        if queue_id is None:
            queue_id = await task_store.find_task_queue(self.pool, task_id)
            if queue_id is None:
                return None
        found = await run(self.pool, queue_id, task_id)
        if found is None:
            # the task is gone (purged, its queue dropped): its id will not come back
            self._task_queues.pop(task_id, None)
            return None
        self._task_queues[task_id] = queue_id
        self._task_queues.move_to_end(task_id)
        while len(self._task_queues) > TASK_QUEUES_KEPT:
            self._task_queues.popitem(last=False)
        return found

    async def list_tasks(
        self,
        queue: str,
        *,
        state: str | None = None,
        task_name: str | None = None,
        correlation_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[TaskInfo]:
        """The queue's tasks, newest (highest id) first, that match every filter given:
        `created_after` is inclusive, `created_before` exclusive. Page with `before_id`, the
        last id of the previous page. Each page walks the queue's primary key backwards from
        `before_id`, so a filter that few tasks match makes a long walk."""
        _check_page(limit, state)
        info = await self.get_queue(queue)
        with translated(queue):
            return await task_store.list_tasks(
                self.pool,
                info.id,
                state=state,
                task_name=task_name,
                correlation_id=correlation_id,
                created_after=created_after,
                created_before=created_before,
                before_id=before_id,
                limit=limit,
            )

    async def list_tasks_by_error(
        self,
        queue: str,
        error: str,
        *,
        walk: int,
        state: str | None = None,
        task_name: str | None = None,
        correlation_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> ErrorSearch:
        """list_tasks' page of tasks whose last error's text ("Type: message") contains
        `error`, literally and in any case. No index serves that, so a page reads at most
        `walk` tasks below `before_id`: when those fill no page, it ends early with
        `walked_to`, where the next page starts (ErrorSearch)."""
        _check_page(limit, state)
        info = await self.get_queue(queue)
        with translated(queue):
            return await task_store.list_tasks_by_error(
                self.pool,
                info.id,
                error=error,
                walk=walk,
                state=state,
                task_name=task_name,
                correlation_id=correlation_id,
                created_after=created_after,
                created_before=created_before,
                before_id=before_id,
                limit=limit,
            )

    async def cancel_many(self, queue: str, task_ids: Sequence[int]) -> BulkCancelResult:
        """Cancel these tasks of the queue as cancel() does each, BULK_BATCH in a transaction
        (each batch commits on its own: a long selection never holds all its rows locked)."""
        info = await self.get_queue(queue)
        total = BulkCancelResult(0, 0, 0, 0, 0)
        with translated(queue):
            for batch in _batches(task_ids):
                total += await task_store.cancel_many(self.pool, info.id, batch)
        return total

    async def retry_many(self, queue: str, task_ids: Sequence[int]) -> BulkRetryResult:
        """Send those of these tasks that are dead back to ready, BULK_BATCH in a transaction;
        the others are counted, not refused (a bulk action over a search meets all kinds)."""
        info = await self.get_queue(queue)
        total = BulkRetryResult(0, 0, 0)
        with translated(queue):
            for batch in _batches(task_ids):
                total += await task_store.retry_many(self.pool, info.id, batch)
        return total

    async def list_dead(self, queue: str, limit: int = 100) -> list[TaskInfo]:
        info = await self.get_queue(queue)
        with translated(queue):
            return await task_store.list_dead(self.pool, info.id, limit)

    async def replay_dead(self, queue: str, task_ids: Sequence[int] | None = None) -> ReplayResult:
        info = await self.get_queue(queue)
        with translated(queue):
            async with self.pool.acquire() as conn:
                return await task_store.replay_dead(conn, queue, info.id, task_ids)


def _batches(task_ids: Sequence[int]) -> Iterator[list[int]]:
    unique = list(dict.fromkeys(task_ids))
    for start in range(0, len(unique), BULK_BATCH):
        yield unique[start:start + BULK_BATCH]


async def connect(
    dsn: str, *, min_size: int = 1, max_size: int = 10, pool_mode: PoolMode = "session"
) -> Client:
    """A client with its own pool; close it (or use `async with`) when done. Through
    PgBouncer's transaction pooling, pass `pool_mode="transaction"`."""
    pool = await create_pool(dsn, min_size=min_size, max_size=max_size, pool_mode=pool_mode)
    return Client(pool, owns_pool=True)
