"""A task's page (state, payload and result, error, progress, attempts; cancel and retry), and
the search over one queue's tasks, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, TypedDict, get_args
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from taskq.errors import InvalidArgumentError, UnknownTaskError
from taskq.models import TaskState
from taskq_api.dashboard.actions import done, posted, unconfirmed
from taskq_api.dashboard.context import Visit, page, service, visit
from taskq_api.service import FINISHED_STATES, TaskDetails

STATES: Final = get_args(TaskState)
SEARCH_PAGE: Final = 50
_MAX_TASK_ID: Final = 2**63 - 1
# The search form's fields, by the service's parameter names its errors use.
FIELD_LABELS: Final = {
    "queue": "Queue",
    "state": "State",
    "correlation_id": "Correlation id",
    "created_after": "Created from",
    "created_before": "Created before",
    "cursor": "Page",
}


def path_task_id(request: Request) -> int:
    task_id: int = request.path_params["task_id"]
    if not 1 <= task_id <= _MAX_TASK_ID:
        raise UnknownTaskError(task_id)
    return task_id


def _task_url(request: Request, task_id: int) -> str:
    return f"{request.scope.get('root_path') or ''}/tasks/{task_id}"


class TaskContext(TypedDict):
    task: TaskDetails
    may_cancel: bool
    may_retry: bool


def task_context(found: Visit, task: TaskDetails) -> TaskContext:
    """What the task's page (and its live part, _task.html) shows of it."""
    may_write = found.may_write(task.queue.partition("/")[0])
    return {
        "task": task,
        "may_cancel": may_write and task.state not in (*FINISHED_STATES, "dead"),
        "may_retry": may_write and task.state == "dead",
    }


async def task_page(request: Request) -> Response:
    found = await visit(request)
    task = await service(request).task(found.key, path_task_id(request))
    return page(request, "task.html", found, **task_context(found, task))


async def cancel(request: Request) -> Response:
    found, form = await posted(request)
    task_id = path_task_id(request)
    back = _task_url(request, task_id)
    asked = unconfirmed(
        request, found, form,
        f"Cancel task {task_id}? A waiting task is canceled at once; a running one is asked to "
        "stop.",
        back=back,
    )
    if asked is not None:
        return asked
    task = await service(request).cancel(found.key, task_id)
    outcome = "canceled" if task.state == "canceled" else "asked to stop (it is running)"
    return done(request, back, f"Task {task_id} {outcome}.")


async def retry(request: Request) -> Response:
    found, form = await posted(request)
    task_id = path_task_id(request)
    back = _task_url(request, task_id)
    asked = unconfirmed(
        request, found, form, f"Retry dead task {task_id}? It runs again.", back=back
    )
    if asked is not None:
        return asked
    await service(request).retry(found.key, task_id)
    return done(request, back, f"Task {task_id} is ready again.")


def _moment(field: str, text: str | None) -> datetime | None:
    """A datetime-local field's value, read as UTC (the form says so)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            field, f"{text[:40]!r} is not a date and time: write it as 2026-12-06T14:30"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def search_page(request: Request) -> Response:
    found = await visit(request)
    api = service(request)
    query = request.query_params
    wanted = {name: query.get(name, "").strip() for name in (
        "queue", "state", "task", "correlation_id", "created_after", "created_before",
    )}
    queues = [q.full_name for q in await api.queues(found.key)]
    results = None
    error: InvalidArgumentError | None = None
    if wanted["queue"]:
        try:
            results = await api.list_tasks(
                found.key,
                wanted["queue"],
                state=wanted["state"] or None,
                task_name=wanted["task"] or None,
                correlation_id=wanted["correlation_id"] or None,
                created_after=_moment("created_after", wanted["created_after"]),
                created_before=_moment("created_before", wanted["created_before"]),
                limit=SEARCH_PAGE,
                cursor=query.get("cursor") or None,
            )
        except InvalidArgumentError as refused:
            error = refused
    first = [(k, v) for k, v in query.multi_items() if k != "cursor"]
    next_query = None
    if results is not None and results.next_cursor is not None:
        next_query = urlencode([*first, ("cursor", results.next_cursor)])
    return page(
        request, "tasks.html", found, status=422 if error else 200,
        queues=queues, states=STATES, wanted=wanted, results=results,
        error=None if error is None else _field_message(error), next_query=next_query,
        first_query=urlencode(first),
        first_page=not query.get("cursor"),
    )


def _field_message(error: InvalidArgumentError) -> str:
    label = FIELD_LABELS.get(error.field, error.field)
    return f"{label}: {str(error).removeprefix(f'invalid {error.field}: ')}"
