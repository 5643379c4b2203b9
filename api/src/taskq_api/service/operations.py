"""What the API does, with authorization: one method per operation, shared by every protocol
(REST and gRPC) so that they cannot drift. No HTTP here: callers pass the key's secret
and plain values, and get taskq's models or the service's errors back.

Authorization, in this order: a usable key (NotAuthenticatedError), then the key's namespaces
and role (PermissionDeniedError), then the thing itself (UnknownQueueError, UnknownTaskError).
A task outside the key's namespaces is reported as unknown, not forbidden, so that task ids do
not reveal what other namespaces hold; a queue is named with its namespace, so a queue outside
them is forbidden whether or not it exists; so is a schedule, named the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar, get_args

from taskq import tracing
from taskq.auth import Action, ApiKey, KeyAdmin, KeyStore, Role
from taskq.client import Client
from taskq.errors import (
    InvalidArgumentError,
    ScheduleExistsError,
    UnknownApiKeyError,
    UnknownTaskError,
)
from taskq.models import (
    AttemptInfo,
    BulkCancelResult,
    BulkRetryResult,
    EnqueueResult,
    QueueInfo,
    ReplayResult,
    TaskInfo,
    TaskRequest,
    TaskState,
    ThroughputMinute,
    WaitMinute,
    WorkerPoolInfo,
)
from taskq.names import check_label
from taskq_api.service.errors import (
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)
from taskq_api.service.groupcommit import GroupCommit
from taskq_api.service.ratelimit import RateLimiter
from taskq_api.service.schedules import PutSchedule, ScheduleView, schedule_spec, schedule_view
from taskq_api.service.submissions import check_correlation_ids
from taskq_api.service.throughput import CHART_MINUTES, ThroughputCache
from taskq_api.service.views import Overview, QueueDetails, TaskDetails, TaskPage, TaskView
from taskq_api.service.waiting import FINISHED_STATES, changed, reads

# Most tasks in one batch: one transaction (COPY above 64 tasks without idempotency keys).
MAX_BATCH: Final = 10_000
DEFAULT_MAX_WAIT: Final = 60.0
# A listing's page: this many tasks unless the caller asks for 1..MAX_LIST_LIMIT.
DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 500
QUEUE_REQUIRED: Final = (
    "name the queue as NAMESPACE/NAME, e.g. queue=shop/emails: a listing covers one queue "
    "(tasks live in per-queue partitions; listing across queues is not supported)"
)
_STATES: Final = get_args(TaskState)
# The error-text filter: a substring search has no index, so each page reads at most this many
# of the queue's tasks (newest first from the cursor) and may end early with a cursor that goes
# on (TaskPage.partial): a page costs about the same however rare the text is
# (docs/dashboard.md, "Searching by error text").
ERROR_SEARCH_WALK: Final = 20_000
MAX_ERROR_CONTAINS: Final = 200
# The overview's page: its queues and their counts are read at once, OVERVIEW_READS at a time.
OVERVIEW_PAGE: Final = 50
OVERVIEW_READS: Final = 4
_T = TypeVar("_T")
_MAX_TASK_ID: Final = 2**63 - 1

_WHAT_NEEDS = {
    Action.READ: "reading queues, tasks and schedules",
    Action.WRITE: (
        "enqueueing, canceling, retrying, pausing, resuming, replaying and changing schedules"
    ),
    Action.MANAGE_KEYS: "managing keys",
}
# The store names a bad request field as tasks[i].<TaskRequest field>; the API's requests name
# two of those fields with their unit.
_STORE_FIELD = re.compile(r"^tasks\[(\d+)\]\.(\w+)$")
_REQUEST_FIELDS = {"delay": "delay_seconds", "timeout": "timeout_seconds"}


@dataclass(frozen=True, slots=True)
class Enqueued:
    task: TaskDetails
    created: bool  # False: an unfinished task already held the idempotency key; this is it


class ApiService:
    def __init__(
        self,
        client: Client,
        keys: KeyStore,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        limiter: RateLimiter | None = None,
        key_admin: KeyAdmin | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._key_admin = key_admin  # None: this service manages no keys
        self.max_wait = max_wait
        self._limiter = limiter  # None: no request rate per key
        self._groups = GroupCommit(client)
        self._throughput = ThroughputCache(client)

    # -- keys -------------------------------------------------------------------------------

    async def authenticate(self, secret: str | None) -> ApiKey:
        """The usable key whose secret this is; NotAuthenticatedError otherwise, and
        RateLimitedError when the key is over its request rate."""
        if not secret:
            raise NotAuthenticatedError(
                "send an API key as `Authorization: Bearer <key>`, an HTTP header or gRPC "
                "metadata (`taskq keys create` makes one)",
                key_presented=False,
            )
        return self._admit(await self._keys.authenticate(secret))

    async def authenticate_digest(self, prefix: str, key_digest: bytes) -> ApiKey:
        """As authenticate, for a session that kept the key's prefix and digest rather than
        the key itself (the dashboard's cookie)."""
        return self._admit(await self._keys.authenticate_digest(prefix, key_digest))

    def _admit(self, key: ApiKey | None) -> ApiKey:
        if key is None:
            raise NotAuthenticatedError(
                "the API key is not valid: unknown, expired or revoked "
                "(`taskq keys list` shows the keys and their state)",
                key_presented=True,
            )
        if self._limiter is not None:
            retry_after = self._limiter.take(key.prefix)
            if retry_after > 0:
                raise RateLimitedError(
                    f"this key (prefix {key.prefix}) is over the server's limit of "
                    f"{self._limiter.per_second:g} requests/s per key (bursts of "
                    f"{self._limiter.burst}): retry in {retry_after:.2f} s, and send fewer "
                    f"requests (a batch enqueues up to {MAX_BATCH:,} tasks in one)",
                    key_prefix=key.prefix,
                    retry_after=retry_after,
                )
        return key

    async def keys(self, key: ApiKey) -> list[ApiKey]:
        """The keys an admin key manages: every key, or for an admin key confined to some
        namespaces, the keys confined within them."""
        admin = self._admin(key)
        return [k for k in await admin.list_keys() if _within(key, k.namespaces)]

    async def create_key(
        self,
        key: ApiKey,
        name: str,
        role: Role,
        namespaces: Sequence[str] | None,
        *,
        reads_payloads: bool = False,
        expires_in: timedelta | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). A key makes no key that reaches further
        than itself: an admin confined to namespaces makes keys within them."""
        admin = self._admin(key)
        if not _within(key, namespaces):
            raise PermissionDeniedError(
                f"this key (prefix {key.prefix}) reaches {', '.join(key.namespaces or ())} "
                "only: a key it makes must name some of those namespaces"
            )
        return await admin.create_key(
            name, role, namespaces, reads_payloads=reads_payloads, expires_in=expires_in
        )

    async def revoke_key(self, key: ApiKey, name: str) -> ApiKey:
        admin = self._admin(key)
        found = next((k for k in await admin.list_keys() if k.name == name), None)
        if found is None or not _within(key, found.namespaces):
            raise UnknownApiKeyError(name)  # as if absent: names outside reveal nothing
        return await admin.revoke_key(name)

    def _admin(self, key: ApiKey) -> KeyAdmin:
        self._require(key, Action.MANAGE_KEYS, None)
        if self._key_admin is None:
            raise PermissionDeniedError("this server manages no keys: use `taskq keys`")
        return self._key_admin

    async def schema_version(self) -> int:
        """Readiness: the database answers and holds the taskq schema."""
        return await self._client.schema_version()

    # -- producing --------------------------------------------------------------------------

    async def enqueue(
        self, key: ApiKey, namespace: str, name: str, task: TaskRequest,
        traceparent: str | None = None,
    ) -> Enqueued:
        """`traceparent`: the caller's, from its request (docs/tracing.md). Concurrent
        enqueues to one queue share a transaction (service/groupcommit.py)."""
        queue = self._queue(key, Action.WRITE, namespace, name)
        try:
            check_correlation_ids([task])
            created, info = await self._groups.enqueue(
                queue, task, tracing.caller_traceparent(traceparent)
            )
        except InvalidArgumentError as error:
            raise _request_error(error, single=True) from None
        # a task just made has no history yet: one read fewer on the common path
        history = await self._client.task_attempts(info.id) if not created else []
        return Enqueued(_details(key, info, history), created)

    async def enqueue_batch(
        self, key: ApiKey, namespace: str, name: str, tasks: Sequence[TaskRequest],
        traceparent: str | None = None,
    ) -> list[EnqueueResult]:
        """All or nothing, in one transaction; errors name the task's index and field."""
        queue = self._queue(key, Action.WRITE, namespace, name)
        if not 1 <= len(tasks) <= MAX_BATCH:
            raise InvalidArgumentError(
                "tasks", f"{len(tasks)} tasks: send 1 to {MAX_BATCH} tasks in one batch"
            )
        try:
            check_correlation_ids(tasks)
            return await self._client.enqueue_many(
                queue, tasks, traceparent=tracing.caller_traceparent(traceparent)
            )
        except InvalidArgumentError as error:
            raise _request_error(error, single=False) from None

    # -- tasks ------------------------------------------------------------------------------

    async def task(self, key: ApiKey, task_id: int, *, wait: float = 0.0) -> TaskDetails:
        """The task with its history; with `wait` (seconds), once it is finished or the wait
        has passed, whichever comes first (the state tells which)."""
        if not 0 <= wait <= self.max_wait:
            raise InvalidArgumentError(
                "wait", f"{wait:g}s: wait between 0 and {self.max_wait:g} seconds"
            )
        info = await self._visible_task(key, task_id)
        if wait > 0 and info.state not in FINISHED_STATES:
            deadline = asyncio.get_running_loop().time() + wait
            async for read in reads(self._client, task_id, deadline):
                info = read  # the last read: finished, or the wait is over
        return await self._with_history(key, info)

    async def watch(self, key: ApiKey, task_id: int) -> AsyncGenerator[TaskDetails, None]:
        """The task now, then again each time its state, attempts, cancel request or progress
        changes, until it is finished: the finished task is the last one yielded. No bound of
        its own: the caller's deadline, or its going away, ends a watch sooner."""
        info = await self._visible_task(key, task_id)
        yield await self._with_history(key, info)
        if info.state in FINISHED_STATES:
            return
        async with aclosing(reads(self._client, task_id, math.inf)) as later:
            async for read in later:
                if changed(info, read):
                    info = read
                    yield await self._with_history(key, info)

    async def cancel(self, key: ApiKey, task_id: int) -> TaskDetails:
        """A waiting task is canceled at once; a running one is asked to stop (its state stays
        running, with cancel_requested, until its handler stops). Canceling a canceled task
        again changes nothing and is no error; a succeeded or dead one is a conflict."""
        info = await self._visible_task(key, task_id)
        self._require(key, Action.WRITE, _namespace(info))
        _refuse_finished(info, "canceled")
        result = await self._client.cancel(task_id)
        info = await self._client.get_task(task_id)
        if result.state in ("succeeded", "dead"):
            _refuse_finished(info, "canceled")  # it finished in the meantime
        return await self._with_history(key, info)

    async def retry(self, key: ApiKey, task_id: int) -> TaskDetails:
        """Run a dead task again, from a fresh set of attempts (its history stays)."""
        info = await self._visible_task(key, task_id)
        self._require(key, Action.WRITE, _namespace(info))
        if info.state != "dead":
            raise ConflictError(f"task {task_id} is {info.state}: only a dead task can be retried")
        try:
            result = await self._client.replay_dead(info.queue, [task_id])
        except InvalidArgumentError:  # it stopped being dead since it was read above
            raise ConflictError(
                f"task {task_id} is no longer dead: another request retried it"
            ) from None
        if result.replayed == 0:
            raise ConflictError(
                f"task {task_id} was not retried: an unfinished task holds its idempotency "
                f"key {info.idempotency_key!r}; wait for that task, or enqueue a new one"
                if result.skipped
                else f"task {task_id} is no longer dead: another request retried it"
            )
        return await self._with_history(key, await self._client.get_task(task_id))

    async def list_tasks(
        self,
        key: ApiKey,
        queue: str | None,
        *,
        state: str | None = None,
        task_name: str | None = None,
        correlation_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        error_contains: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of a queue's tasks, newest first, matching every filter given; the page's
        `next_cursor` (None on the last page) continues after it. Keyset pagination on the
        task id: tasks enqueued between pages are newer than any cursor, so they neither
        repeat nor shift a page. With `error_contains` (the last error's text, "Type: message",
        holds it literally, in any case) a page reads at most ERROR_SEARCH_WALK tasks and may
        end early, `partial`, with a cursor that goes on. Errors name the parameters `queue`,
        `state`, `created_after`, `error_contains`, `limit` and `cursor`."""
        full_name = self._named_queue(key, Action.READ, queue)
        if state is not None and state not in _STATES:
            raise InvalidArgumentError(
                "state", f"{state[:30]!r} is not a state: use one of {', '.join(_STATES)}"
            )
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgumentError("limit", f"{limit}: ask for 1 to {MAX_LIST_LIMIT} tasks")
        if (
            created_after is not None
            and created_before is not None
            and (created_after >= created_before)
        ):
            raise InvalidArgumentError(
                "created_after",
                "is not before created_before: the window is created_after (inclusive) "
                "to created_before (exclusive); swap them, or leave one out",
            )
        before_id = None if cursor is None else _decode_cursor(cursor)
        if error_contains is not None:
            if not error_contains.strip() or len(error_contains) > MAX_ERROR_CONTAINS:
                raise InvalidArgumentError(
                    "error_contains",
                    f"{error_contains[:30]!r}: give 1 to {MAX_ERROR_CONTAINS} characters of "
                    "the error's text (not only spaces), or leave it out",
                )
            found = await self._client.list_tasks_by_error(
                full_name,
                error_contains,
                walk=ERROR_SEARCH_WALK,
                state=state,
                task_name=task_name,
                correlation_id=correlation_id,
                created_after=created_after,
                created_before=created_before,
                before_id=before_id,
                limit=limit + 1,
            )
            if found.walked_to is not None:  # the walk's bound ended the page, not the queue
                return TaskPage(
                    items=[_view(key, info) for info in found.tasks],
                    next_cursor=_encode_cursor(found.walked_to),
                    partial=True,
                )
            tasks = found.tasks
        else:
            tasks = await self._client.list_tasks(
                full_name,
                state=state,
                task_name=task_name,
                correlation_id=correlation_id,
                created_after=created_after,
                created_before=created_before,
                before_id=before_id,
                limit=limit + 1,  # one more than the page tells whether a next page exists
            )
        page = tasks[:limit]
        more = len(tasks) > limit
        return TaskPage(
            items=[_view(key, info) for info in page],
            next_cursor=_encode_cursor(page[-1].id) if more else None,
        )

    def _named_queue(self, key: ApiKey, action: Action, queue: str | None) -> str:
        """A queue named as NAMESPACE/NAME that the key may `action` (errors name `queue`)."""
        if queue is None:
            raise InvalidArgumentError("queue", QUEUE_REQUIRED)
        namespace, slash, name = queue.partition("/")
        if not slash:
            raise InvalidArgumentError("queue", f"{queue[:130]!r}: {QUEUE_REQUIRED}")
        try:
            check_label(namespace, "queue")
            check_label(name, "queue")
        except InvalidArgumentError:
            raise InvalidArgumentError(
                "queue",
                f"{queue[:130]!r}: the namespace and the name are each 1-63 lowercase letters, "
                "digits or '-', starting and ending with a letter or digit (e.g. shop/emails)",
            ) from None
        return self._queue(key, action, namespace, name)

    def writable_queue(self, key: ApiKey, queue: str | None) -> str:
        """The queue NAMESPACE/NAME if the key may change its tasks (cancel, retry), else the
        error those would raise: for a caller that asks before it acts (a confirmation)."""
        return self._named_queue(key, Action.WRITE, queue)

    async def cancel_tasks(
        self, key: ApiKey, queue: str, ids: Sequence[int]
    ) -> BulkCancelResult:
        """cancel() for each of these tasks of the queue, in batches of BULK_BATCH (one
        transaction each); each one's outcome counted, none refused: a task finished since it
        was chosen is counted as finished, one that is no task of the queue as missing. The
        rights are cancel()'s. Errors name `queue` and `ids`."""
        full_name = self._named_queue(key, Action.WRITE, queue)
        return await self._client.cancel_many(full_name, _bulk_ids(ids))

    async def retry_tasks(self, key: ApiKey, queue: str, ids: Sequence[int]) -> BulkRetryResult:
        """retry() for each of these tasks of the queue that is dead, in batches; the others
        are counted, not refused (BulkRetryResult). The rights are retry()'s."""
        full_name = self._named_queue(key, Action.WRITE, queue)
        return await self._client.retry_many(full_name, _bulk_ids(ids))

    # -- queues -----------------------------------------------------------------------------

    async def queues(self, key: ApiKey) -> list[QueueInfo]:
        """The queues in the key's namespaces, by namespace and name."""
        self._require(key, Action.READ, None)
        return [q for q in await self._client.list_queues() if key.may(Action.READ, q.namespace)]

    async def overview(
        self, key: ApiKey, namespace: str | None = None, after: str | None = None
    ) -> Overview:
        """A page of the queues the key reads (or those of `namespace`), OVERVIEW_PAGE at most,
        by namespace and name after the queue `after`, each with its depth: one read of the
        queues, then one of each queue's counts, OVERVIEW_READS at once. A page bounds what one
        view costs whatever the number of queues (docs/dashboard.md)."""
        visible, page, next_after = await self._overview_page(key, namespace, after)
        details = await _bounded([partial(self._queue_details, info) for info in page])
        return Overview(
            namespaces=sorted({info.namespace for info in visible}),
            queues=details,
            after=after,
            next_after=next_after,
        )

    async def _overview_page(
        self, key: ApiKey, namespace: str | None, after: str | None
    ) -> tuple[list[QueueInfo], list[QueueInfo], str | None]:
        if namespace is not None:
            check_label(namespace, "namespace")
        visible = await self.queues(key)
        chosen = [
            info
            for info in visible
            if (namespace is None or info.namespace == namespace)
            and (after is None or info.full_name > after)
        ]
        page = chosen[:OVERVIEW_PAGE]
        more = len(chosen) > OVERVIEW_PAGE
        return visible, page, page[-1].full_name if more else None

    async def queue(self, key: ApiKey, namespace: str, name: str) -> QueueDetails:
        queue = self._queue(key, Action.READ, namespace, name)
        return await self._queue_details(await self._client.get_queue(queue))

    async def throughput(self, key: ApiKey, namespace: str, name: str) -> list[ThroughputMinute]:
        """Tasks that finished succeeded or dead in each of the last 60 minutes and the
        current one, oldest first (finished minutes remembered: service/throughput.py)."""
        queue = self._queue(key, Action.READ, namespace, name)
        return await self._throughput.last_hour(await self._client.get_queue(queue))

    async def throughputs(
        self, key: ApiKey, namespace: str | None = None, after: str | None = None
    ) -> dict[str, list[ThroughputMinute]]:
        """throughput() of each queue of the overview's page (the same arguments), by queue
        name: for its charts."""
        _visible, page, _next = await self._overview_page(key, namespace, after)
        hours = await _bounded([partial(self._throughput.last_hour, info) for info in page])
        return {info.full_name: hour for info, hour in zip(page, hours, strict=True)}

    async def wait(self, key: ApiKey, namespace: str, name: str) -> list[WaitMinute]:
        """How long succeeded tasks waited from due to start, per minute of the last 60 and
        the current one (a sample of at most WAIT_SAMPLE tasks a minute)."""
        queue = self._queue(key, Action.READ, namespace, name)
        return await self._client.queue_wait(queue, CHART_MINUTES)

    async def worker_pools(self, key: ApiKey, namespace: str, name: str) -> list[WorkerPoolInfo]:
        """The worker pools serving the queue as the operator last recorded them (none
        without an operator)."""
        queue = self._queue(key, Action.READ, namespace, name)
        return await self._client.worker_pools(queue)

    async def set_paused(
        self, key: ApiKey, namespace: str, name: str, *, paused: bool
    ) -> QueueDetails:
        """A paused queue accepts tasks but no worker claims them; no other setting changes."""
        queue = self._queue(key, Action.WRITE, namespace, name)
        return await self._queue_details(await self._client.set_paused(queue, paused))

    async def replay_dead(
        self, key: ApiKey, namespace: str, name: str, ids: Sequence[int], *, every: bool
    ) -> ReplayResult:
        """Send dead tasks back to ready: these `ids`, or every dead task of the queue; the
        request names one or the other (errors name `ids` and `all`)."""
        queue = self._queue(key, Action.WRITE, namespace, name)
        if bool(ids) == every:
            raise InvalidArgumentError(
                "ids",
                "name the dead tasks in ids, or ask for every one with all (not both, "
                "not neither)",
            )
        if len(ids) > MAX_BATCH:
            raise InvalidArgumentError(
                "ids", f"{len(ids)} ids: name 1 to {MAX_BATCH}, or ask for all instead"
            )
        bad = next((i for i, task_id in enumerate(ids) if not 1 <= task_id <= _MAX_TASK_ID), None)
        if bad is not None:
            raise InvalidArgumentError(f"ids[{bad}]", f"{ids[bad]} is not a task id (1 or more)")
        return await self._client.replay_dead(queue, None if every else ids)

    # -- schedules --------------------------------------------------------------------------

    async def schedules(self, key: ApiKey, namespace: str | None = None) -> list[ScheduleView]:
        """The schedules in the key's namespaces (only `namespace`'s, when given: one the key
        does not reach is forbidden), by namespace and name."""
        if namespace is not None:
            check_label(namespace, "namespace")
        self._require(key, Action.READ, namespace)
        found = await self._client.list_schedules(namespace)
        return [schedule_view(key, s) for s in found if key.may(Action.READ, s.namespace)]

    async def schedule(self, key: ApiKey, namespace: str, name: str) -> ScheduleView:
        schedule = self._queue(key, Action.READ, namespace, name)
        return schedule_view(key, await self._client.get_schedule(schedule))

    async def put_schedule(
        self, key: ApiKey, namespace: str, name: str, fields: Mapping[str, Any]
    ) -> PutSchedule:
        """Create or update the schedule `fields` declare (ScheduleSpec's fields; left out:
        its defaults); errors name the field (`cron`, `time_zone`). The schedule's queue need
        not exist yet: a tick without it records `last_error`, and stays due."""
        schedule = self._queue(key, Action.WRITE, namespace, name)
        spec = schedule_spec(fields)
        try:
            info = await self._client.create_schedule(schedule, spec)
        except ScheduleExistsError:
            # an update; one that raced a delete recreates it (reported as an update)
            return PutSchedule(schedule_view(key, await self._client.put_schedule(schedule, spec)),
                               created=False)
        return PutSchedule(schedule_view(key, info), created=True)

    async def set_schedule_suspended(
        self, key: ApiKey, namespace: str, name: str, *, suspend: bool
    ) -> ScheduleView:
        """A suspended schedule enqueues nothing; resuming starts at the next tick from now
        (the ticks while suspended are not run). Suspending a suspended schedule again, or
        resuming a running one, changes nothing and is no error."""
        schedule = self._queue(key, Action.WRITE, namespace, name)
        return schedule_view(key, await self._client.set_schedule_suspended(schedule, suspend))

    async def delete_schedule(self, key: ApiKey, namespace: str, name: str) -> None:
        """Its tasks already enqueued stay."""
        schedule = self._queue(key, Action.WRITE, namespace, name)
        await self._client.delete_schedule(schedule)

    # -- helpers ----------------------------------------------------------------------------

    def _require(self, key: ApiKey, action: Action, namespace: str | None) -> None:
        if key.may(action, namespace):
            return
        needed = Role(action.value)
        if key.role < needed:
            raise PermissionDeniedError(
                f"{_WHAT_NEEDS[action]} needs a key of role {needed.label} or higher; this key "
                f"(prefix {key.prefix}) is a {key.role.label} key"
            )
        reach = ", ".join(key.namespaces or ())
        raise PermissionDeniedError(
            f"this key (prefix {key.prefix}) does not reach namespace {namespace!r}; "
            f"it reaches: {reach}"
        )

    def _queue(self, key: ApiKey, action: Action, namespace: str, name: str) -> str:
        check_label(namespace, "namespace")
        check_label(name, "name")
        self._require(key, action, namespace)
        return f"{namespace}/{name}"

    async def _visible_task(self, key: ApiKey, task_id: int) -> TaskInfo:
        info = await self._client.get_task(task_id)
        if not key.may(Action.READ, _namespace(info)):
            raise UnknownTaskError(task_id)
        return info

    async def _with_history(self, key: ApiKey, info: TaskInfo) -> TaskDetails:
        return _details(key, info, await self._client.task_attempts(info.id))

    async def _queue_details(self, info: QueueInfo) -> QueueDetails:
        stats = await self._client.queue_stats(info)
        return QueueDetails(
            queue=info.full_name,
            namespace=info.namespace,
            name=info.name,
            created_at=info.created_at,
            settings=info.settings,
            stats=stats,
        )


async def _bounded(reads: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """The reads' results in order, OVERVIEW_READS at a time (each on a connection of its
    own): the rest of the server keeps connections meanwhile. Each read is begun only when its
    turn comes: a request cancelled meanwhile leaves no coroutine never awaited."""
    limit = asyncio.Semaphore(OVERVIEW_READS)

    async def one(read: Callable[[], Awaitable[_T]]) -> _T:
        async with limit:
            return await read()

    return list(await asyncio.gather(*(one(read) for read in reads)))


def _within(key: ApiKey, namespaces: Sequence[str] | None) -> bool:
    """True when `namespaces` (None: all) lie within the key's reach."""
    if key.namespaces is None:
        return True
    return namespaces is not None and set(namespaces) <= set(key.namespaces)


def _namespace(info: TaskInfo) -> str:
    return info.queue.partition("/")[0]


def _visible_fields(key: ApiKey, info: TaskInfo) -> tuple[dict[str, object], bool]:
    """The task's fields as the key may see them, and whether payload, result and callback URL
    (which can carry a token) are hidden."""
    fields = info.model_dump()
    hidden = not key.sees_payloads()
    if hidden:
        fields.update(payload=None, result=None, callback_url=None)
    return fields, hidden


def _view(key: ApiKey, info: TaskInfo) -> TaskView:
    fields, hidden = _visible_fields(key, info)
    return TaskView(**fields, payload_hidden=hidden)


def _details(key: ApiKey, info: TaskInfo, history: Sequence[AttemptInfo]) -> TaskDetails:
    fields, hidden = _visible_fields(key, info)
    return TaskDetails(**fields, attempt_history=list(history), payload_hidden=hidden)


def _encode_cursor(task_id: int) -> str:
    """Opaque to callers: the last id of a page, which the next page starts below."""
    return base64.urlsafe_b64encode(str(task_id).encode()).decode().rstrip("=")


def _bulk_ids(ids: Sequence[int]) -> list[int]:
    if not ids:
        raise InvalidArgumentError("ids", f"no task is named: name 1 to {MAX_BATCH} tasks")
    if len(ids) > MAX_BATCH:
        raise InvalidArgumentError("ids", f"{len(ids)} ids: name 1 to {MAX_BATCH} at a time")
    bad = next((i for i, task_id in enumerate(ids) if not 1 <= task_id <= _MAX_TASK_ID), None)
    if bad is not None:
        raise InvalidArgumentError(f"ids[{bad}]", f"{ids[bad]} is not a task id (1 or more)")
    return list(ids)


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if len(cursor) > 32 or not text.isdigit() or not 1 <= int(text) <= _MAX_TASK_ID:
        raise InvalidArgumentError(
            "cursor",
            "not a cursor of this API: pass the previous page's next_cursor as it is, or leave "
            "cursor out for the first page",
        )
    return int(text)


def _refuse_finished(info: TaskInfo, verb: str) -> None:
    if info.state in ("succeeded", "dead"):
        raise ConflictError(
            f"task {info.id} is {info.state}: only a waiting or running task can be {verb}"
        )


def _request_error(error: InvalidArgumentError, *, single: bool) -> InvalidArgumentError:
    """The store's error, naming the field as the request names it: `priority` for one task,
    `tasks[3].priority` in a batch."""
    match = _STORE_FIELD.match(error.field)
    if match is None:
        return error
    problem = str(error).removeprefix(f"invalid {error.field}: ")
    field = _REQUEST_FIELDS.get(match[2], match[2])
    return InvalidArgumentError(field if single else f"tasks[{match[1]}].{field}", problem)
