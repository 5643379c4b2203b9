"""The REST routes under /v1: each parses its request, calls one service operation and shapes
the answer. Authorization lives in the service, not here."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header, Path, Query, Response
from pydantic import AwareDatetime

from taskq.errors import InvalidArgumentError
from taskq.models import MAX_TASK_NAME, EnqueueResult, TaskRequest, TaskState
from taskq_api.rest.auth import Key, Service
from taskq_api.rest.bodyroute import JsonBodyRoute, Lean, lean_body
from taskq_api.rest.models import (
    BatchResult,
    BatchSubmission,
    EnqueuedTask,
    QueueList,
    ReplayOutcome,
    ReplayRequest,
    ScheduleList,
    ScheduleSubmission,
    TaskSubmission,
    batch_result_json,
    lean_batch_parser,
)
from taskq_api.rest.problems import responses
from taskq_api.service import (
    DEFAULT_LIST_LIMIT,
    ERROR_SEARCH_WALK,
    MAX_CORRELATION_ID,
    MAX_ERROR_CONTAINS,
    MAX_LIST_LIMIT,
    QueueDetails,
    ScheduleView,
    TaskDetails,
    TaskPage,
)

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Awaitable[Any]])
_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Patterns documented here are checked by the service, whose errors say what a valid value is.
_LABEL_SCHEMA = {"pattern": _LABEL, "maxLength": 63}
Namespace = Annotated[
    str,
    Path(description="The queue's namespace (a DNS label)", json_schema_extra=_LABEL_SCHEMA),
]
Name = Annotated[
    str, Path(description="The queue's name (a DNS label)", json_schema_extra=_LABEL_SCHEMA)
]
ScheduleNamespace = Annotated[
    str,
    Path(
        description="The schedule's namespace (a DNS label), its queue's too",
        json_schema_extra=_LABEL_SCHEMA,
    ),
]
ScheduleName = Annotated[
    str, Path(description="The schedule's name (a DNS label)", json_schema_extra=_LABEL_SCHEMA)
]
_QUEUE_PATTERN = _LABEL.removesuffix("$") + "/" + _LABEL.removeprefix("^")
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The task's id")]
_WAIT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_WAIT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
Wait = Annotated[
    str | None,
    Query(
        description="Hold the answer until the task is finished (succeeded, dead or canceled) "
        "or this long has passed, e.g. 30s, 500ms, 1m, or plain seconds; at most the server's "
        "TASKQ_API_MAX_WAIT_SECONDS (60 s by default). The answer's state tells which came first.",
        json_schema_extra={"pattern": _WAIT.pattern},
    ),
]
TraceParent = Annotated[
    str | None,
    Header(
        description="The caller's W3C trace context: the task's trace continues it (its "
        "`send` span, when the server traces, and the worker's `process` span are children). "
        "An invalid value is ignored, as the W3C recommendation says.",
    ),
]

router = APIRouter(prefix="/v1")


def _lean_post(
    path: str, lean: Lean | None = None, **options: Any
) -> Callable[[_Endpoint], _Endpoint]:
    """`router.post`, for a route that answers its common case without FastAPI's per-request
    work (rest/bodyroute.py): the enqueue routes; `lean`, a leaner way still."""

    def add(endpoint: _Endpoint) -> _Endpoint:
        if lean is not None:
            lean_body(endpoint, lean)
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=JsonBodyRoute, **options
        )
        return endpoint

    return add


def _location(response: Response, task_id: int) -> None:
    response.headers["Location"] = f"/v1/tasks/{task_id}"


@_lean_post(
    "/queues/{namespace}/{name}/tasks",
    status_code=201,
    response_model=TaskDetails,
    summary="Enqueue a task",
    tags=["tasks"],
    responses={
        200: {
            "model": TaskDetails,
            "description": "An unfinished task already held the idempotency key: this is it.",
        },
        **responses(400, 403, 404, 413, 415),
    },
)
async def enqueue(
    namespace: Namespace,
    name: Name,
    submission: Annotated[TaskSubmission, Body()],
    key: Key,
    service: Service,
    response: Response,
    traceparent: TraceParent = None,
) -> TaskDetails:
    """201 with the new task; 200 with the existing one when an unfinished task of the queue
    already holds the idempotency key. `Location` names the task either way."""
    enqueued = await service.enqueue(
        key, namespace, name, submission.to_request(_now()), traceparent
    )
    if not enqueued.created:
        response.status_code = 200
    _location(response, enqueued.task.id)
    return enqueued.task


async def _enqueue_requests(
    namespace: str,
    name: str,
    batch: dict[str, list[TaskRequest]],
    key: Key,
    service: Service,
    traceparent: str | None = None,
) -> list[EnqueueResult]:
    """enqueue_batch's common case (no task with run_at), from lean_batch_parser's tasks."""
    return await service.enqueue_batch(key, namespace, name, batch["tasks"], traceparent)


@_lean_post(
    "/queues/{namespace}/{name}/tasks:batch",
    Lean(lean_batch_parser(), _enqueue_requests, batch_result_json),
    status_code=201,
    response_model=BatchResult,
    summary="Enqueue up to 10,000 tasks, all or nothing",
    tags=["tasks"],
    responses=responses(400, 403, 404, 413, 415),
)
async def enqueue_batch(
    namespace: Namespace,
    name: Name,
    batch: Annotated[BatchSubmission, Body()],
    key: Key,
    service: Service,
    traceparent: TraceParent = None,
) -> BatchResult:
    """One transaction: every task is enqueued, or (on any error) none. Errors name the task
    by its index: `#/tasks/3/priority`."""
    now = _now()
    results = await service.enqueue_batch(
        key, namespace, name, [task.to_request(now) for task in batch.tasks], traceparent
    )
    return BatchResult(
        tasks=[EnqueuedTask(id=r.id, created=r.created) for r in results],
        created=sum(r.created for r in results),
    )


@router.get(
    "/tasks/{task_id}",
    response_model=TaskDetails,
    summary="A task with its attempts; optionally wait for it to finish",
    tags=["tasks"],
    responses=responses(404),
)
async def get_task(task_id: TaskId, key: Key, service: Service, wait: Wait = None) -> TaskDetails:
    """Payload and result are null (and payload_hidden true) for a viewer key that does not
    read payloads."""
    return await service.task(key, task_id, wait=_seconds(wait))


@router.get(
    "/tasks",
    response_model=TaskPage,
    summary="A queue's tasks, newest first, filtered, a page at a time",
    tags=["tasks"],
    responses=responses(403, 404),
)
async def list_tasks(
    key: Key,
    service: Service,
    queue: Annotated[
        str,
        Query(
            description="The queue, as NAMESPACE/NAME (required: a listing covers one queue)",
            json_schema_extra={"pattern": _QUEUE_PATTERN, "maxLength": 127},
        ),
    ],
    state: Annotated[TaskState | None, Query(description="Only tasks in this state")] = None,
    task: Annotated[
        str | None,
        Query(max_length=MAX_TASK_NAME, description="Only tasks of this task name"),
    ] = None,
    correlation_id: Annotated[
        str | None,
        Query(max_length=MAX_CORRELATION_ID, description="Only tasks with this correlation id"),
    ] = None,
    created_after: Annotated[
        AwareDatetime | None,
        Query(description="Only tasks created at or after this time (RFC 3339, with a timezone)"),
    ] = None,
    created_before: Annotated[
        AwareDatetime | None,
        Query(description="Only tasks created before this time (RFC 3339, with a timezone)"),
    ] = None,
    error_contains: Annotated[
        str | None,
        Query(
            max_length=MAX_ERROR_CONTAINS,
            description="Only tasks whose last error's text (\"Type: message\") holds this, "
            f"literally and in any case. A page then reads at most {ERROR_SEARCH_WALK:,} "
            "tasks and may end early: `partial`, with a next_cursor that goes on",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIST_LIMIT, description="Tasks per page at most")
    ] = DEFAULT_LIST_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=64, description="The previous page's next_cursor; leave out at first"),
    ] = None,
) -> TaskPage:
    """Newest (highest id) first. Pages are keyset pagination on the task id: tasks enqueued
    while you page are newer than the cursor, so no task repeats and none is skipped. Payload
    and result are null (and payload_hidden true) for a viewer key that does not read
    payloads. Each page walks the queue's tasks from the cursor down to as many matches as it
    returns: a filter that few tasks match reads many (docs/api.md, "List tasks")."""
    return await service.list_tasks(
        key,
        queue,
        state=state,
        task_name=task,
        correlation_id=correlation_id,
        created_after=created_after,
        created_before=created_before,
        error_contains=error_contains,
        limit=limit,
        cursor=cursor,
    )


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=TaskDetails,
    summary="Cancel a task",
    tags=["tasks"],
    responses={
        202: {
            "model": TaskDetails,
            "description": "The task is running: it was asked to stop (cancel_requested).",
        },
        **responses(403, 404, 409),
    },
)
async def cancel_task(
    task_id: TaskId, key: Key, service: Service, response: Response
) -> TaskDetails:
    """200: canceled (also when it already was); 202: running, asked to stop, which its
    handler does cooperatively; 409: it already succeeded or is dead."""
    task = await service.cancel(key, task_id)
    if task.state == "running":
        response.status_code = 202
    return task


@router.post(
    "/tasks/{task_id}/retry",
    response_model=TaskDetails,
    summary="Run a dead task again",
    tags=["tasks"],
    responses=responses(403, 404, 409),
)
async def retry_task(task_id: TaskId, key: Key, service: Service) -> TaskDetails:
    """The task goes back to ready with a fresh set of attempts; its history stays."""
    return await service.retry(key, task_id)


@router.get(
    "/queues",
    response_model=QueueList,
    summary="The queues in the key's namespaces",
    tags=["queues"],
    responses=responses(),
)
async def list_queues(key: Key, service: Service) -> QueueList:
    return QueueList(queues=await service.queues(key))


@router.get(
    "/queues/{namespace}/{name}",
    response_model=QueueDetails,
    summary="A queue's settings and counts",
    tags=["queues"],
    responses=responses(403, 404),
)
async def get_queue(namespace: Namespace, name: Name, key: Key, service: Service) -> QueueDetails:
    return await service.queue(key, namespace, name)


@router.post(
    "/queues/{namespace}/{name}/pause",
    response_model=QueueDetails,
    summary="Pause a queue: it accepts tasks, no worker claims them",
    tags=["queues"],
    responses=responses(403, 404),
)
async def pause_queue(namespace: Namespace, name: Name, key: Key, service: Service) -> QueueDetails:
    """For a queue made from a TaskQueue resource, the resource's spec.paused wins when the
    operator next applies the spec: pause those in the spec."""
    return await service.set_paused(key, namespace, name, paused=True)


@router.post(
    "/queues/{namespace}/{name}/resume",
    response_model=QueueDetails,
    summary="Resume a paused queue",
    tags=["queues"],
    responses=responses(403, 404),
)
async def resume_queue(
    namespace: Namespace, name: Name, key: Key, service: Service
) -> QueueDetails:
    return await service.set_paused(key, namespace, name, paused=False)


@router.post(
    "/queues/{namespace}/{name}/dead:replay",
    response_model=ReplayOutcome,
    summary="Send dead tasks back to ready",
    tags=["queues"],
    responses=responses(400, 403, 404, 413, 415),
)
async def replay_dead(
    namespace: Namespace,
    name: Name,
    replay: Annotated[ReplayRequest, Body()],
    key: Key,
    service: Service,
) -> ReplayOutcome:
    result = await service.replay_dead(key, namespace, name, replay.ids, every=replay.all)
    return ReplayOutcome(replayed=result.replayed, skipped=result.skipped)


@router.get(
    "/schedules",
    response_model=ScheduleList,
    summary="The schedules in the key's namespaces",
    tags=["schedules"],
    responses=responses(403),
)
async def list_schedules(
    key: Key,
    service: Service,
    namespace: Annotated[
        str | None,
        Query(
            description="Only this namespace's schedules (the key must reach it: else 403)",
            json_schema_extra=_LABEL_SCHEMA,
        ),
    ] = None,
) -> ScheduleList:
    """By namespace and name. `spec.payload` is null (and payload_hidden true) for a viewer
    key that does not read payloads."""
    return ScheduleList(schedules=await service.schedules(key, namespace))


@router.get(
    "/schedules/{namespace}/{name}",
    response_model=ScheduleView,
    summary="A schedule, with what its scheduler last did",
    tags=["schedules"],
    responses=responses(403, 404),
)
async def get_schedule(
    namespace: ScheduleNamespace, name: ScheduleName, key: Key, service: Service
) -> ScheduleView:
    return await service.schedule(key, namespace, name)


@router.put(
    "/schedules/{namespace}/{name}",
    response_model=ScheduleView,
    summary="Create or update a schedule",
    tags=["schedules"],
    responses={
        201: {"model": ScheduleView, "description": "The schedule was created."},
        **responses(400, 403, 413, 415),
    },
)
async def put_schedule(
    namespace: ScheduleNamespace,
    name: ScheduleName,
    spec: Annotated[ScheduleSubmission, Body()],
    key: Key,
    service: Service,
    response: Response,
) -> ScheduleView:
    """200 updated, 201 created (with `Location`). An update keeps the next tick unless the
    cron expression, the time zone or a resume moves it. A bad cron expression or time zone
    is a 422 naming `#/cron` or `#/time_zone`."""
    put = await service.put_schedule(key, namespace, name, spec.fields())
    if put.created:
        response.status_code = 201
        response.headers["Location"] = f"/v1/schedules/{namespace}/{name}"
    return put.schedule


@router.delete(
    "/schedules/{namespace}/{name}",
    status_code=204,
    summary="Delete a schedule",
    tags=["schedules"],
    responses=responses(403, 404),
)
async def delete_schedule(
    namespace: ScheduleNamespace, name: ScheduleName, key: Key, service: Service
) -> None:
    """The tasks it already enqueued stay."""
    await service.delete_schedule(key, namespace, name)


@router.post(
    "/schedules/{namespace}/{name}:suspend",
    response_model=ScheduleView,
    summary="Suspend a schedule: it enqueues nothing until resumed",
    tags=["schedules"],
    responses=responses(403, 404),
)
async def suspend_schedule(
    namespace: ScheduleNamespace, name: ScheduleName, key: Key, service: Service
) -> ScheduleView:
    return await service.set_schedule_suspended(key, namespace, name, suspend=True)


@router.post(
    "/schedules/{namespace}/{name}:resume",
    response_model=ScheduleView,
    summary="Resume a schedule, from its next tick from now",
    tags=["schedules"],
    responses=responses(403, 404),
)
async def resume_schedule(
    namespace: ScheduleNamespace, name: ScheduleName, key: Key, service: Service
) -> ScheduleView:
    """The ticks while it was suspended are not run."""
    return await service.set_schedule_suspended(key, namespace, name, suspend=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(wait: str | None) -> float:
    if wait is None:
        return 0.0
    match = _WAIT.match(wait) if len(wait) <= 20 else None
    if match is None:
        raise InvalidArgumentError(
            "wait", f"{wait[:20]!r} is not a duration: use e.g. 30s, 500ms, 1m or plain seconds"
        )
    return float(match[1]) * _WAIT_UNITS[match[2]]
