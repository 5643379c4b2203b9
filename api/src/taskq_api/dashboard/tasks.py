"""A task's page (state, payload and result, error, progress, attempts; cancel and retry), and
the search over one queue's tasks, a page at a time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, TypedDict, get_args
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from taskq.errors import InvalidArgumentError, UnknownTaskError
from taskq.models import BulkCancelResult, BulkRetryResult, TaskState
from taskq_api.dashboard.actions import done, posted, unconfirmed
from taskq_api.dashboard.context import Visit, page, service, visit
from taskq_api.dashboard.forms import Form
from taskq_api.service import (
    ERROR_SEARCH_WALK,
    FINISHED_STATES,
    MAX_LIST_LIMIT,
    ApiService,
    TaskDetails,
    TaskPage,
)

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
    "error_contains": "Error text",
    "cursor": "Page",
    "selection": "Selection",
}
# The search form's fields (the query string's names).
SEARCH_FIELDS: Final = (
    "queue", "state", "task", "correlation_id", "created_after", "created_before", "error",
)
# "Cancel (retry) all matching" takes at most BULK_LIMIT tasks, newest first, found in at most
# BULK_PAGES pages of the search (each costing what the search's own page costs): one request
# changes a bounded number of tasks, BULK_BATCH to a transaction (taskq.client); the rest is
# for the next request.
BULK_LIMIT: Final = 1_000
BULK_PAGES: Final = 10


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


def _wanted(query: Iterable[tuple[str, str]]) -> dict[str, str]:
    given = dict(query)
    return {name: given.get(name, "").strip() for name in SEARCH_FIELDS}


async def _search(
    api: ApiService, found: Visit, wanted: dict[str, str], *, limit: int, cursor: str | None
) -> TaskPage:
    return await api.list_tasks(
        found.key,
        wanted["queue"],
        state=wanted["state"] or None,
        task_name=wanted["task"] or None,
        correlation_id=wanted["correlation_id"] or None,
        created_after=_moment("created_after", wanted["created_after"]),
        created_before=_moment("created_before", wanted["created_before"]),
        error_contains=wanted["error"] or None,
        limit=limit,
        cursor=cursor,
    )


async def search_page(request: Request) -> Response:
    found = await visit(request)
    api = service(request)
    query = request.query_params
    wanted = _wanted(query.multi_items())
    queues = [q.full_name for q in await api.queues(found.key)]
    results = None
    error: InvalidArgumentError | None = None
    if wanted["queue"]:
        try:
            results = await _search(
                api, found, wanted, limit=SEARCH_PAGE, cursor=query.get("cursor") or None
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
        walk=ERROR_SEARCH_WALK,
        may_write=bool(wanted["queue"]) and found.may_write(wanted["queue"].partition("/")[0]),
        bulk_limit=BULK_LIMIT,
    )


async def _matching_ids(
    api: ApiService, found: Visit, wanted: dict[str, str]
) -> tuple[list[int], bool]:
    """The ids of the newest tasks matching the search, BULK_LIMIT at most, and whether more
    may match (more than that, or past the pages read)."""
    ids: list[int] = []
    cursor = None
    for _page in range(BULK_PAGES):
        results = await _search(
            api, found, wanted, limit=min(MAX_LIST_LIMIT, BULK_LIMIT + 1 - len(ids)),
            cursor=cursor,
        )
        ids.extend(task.id for task in results.items)
        cursor = results.next_cursor
        if cursor is None or len(ids) > BULK_LIMIT:
            break
    return ids[:BULK_LIMIT], cursor is not None or len(ids) > BULK_LIMIT


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def cancel_report(result: BulkCancelResult) -> str:
    """What a bulk cancel did, in words; it never says something was done when nothing was."""
    did = [
        f"canceled {_plural(result.canceled, 'task')}" if result.canceled else "",
        f"asked {_plural(result.asked, 'running task')} to stop" if result.asked else "",
    ]
    skipped = [
        f"{result.finished:,} already finished (succeeded or dead)" if result.finished else "",
        f"{result.already:,} already canceled or asked to stop" if result.already else "",
        f"{result.missing:,} no longer there" if result.missing else "",
    ]
    return _report(did, skipped, result.finished + result.already + result.missing,
                   "nothing canceled")


def retry_report(result: BulkRetryResult) -> str:
    """What a bulk retry did, in words; it never says something was done when nothing was."""
    did = [f"retried {_plural(result.retried, 'dead task')}" if result.retried else ""]
    skipped = [
        f"{result.not_dead:,} not dead (retried already, never failed, or gone)"
        if result.not_dead else "",
        f"{result.held:,} whose idempotency key an unfinished task holds" if result.held else "",
    ]
    return _report(did, skipped, result.not_dead + result.held, "nothing retried")


def _report(did: list[str], skipped: list[str], count: int, nothing: str) -> str:
    said = "; ".join(part for part in did if part) or nothing
    if count:
        said += f". Skipped {count:,}: {', '.join(part for part in skipped if part)}"
    return f"{said[:1].upper()}{said[1:]}."


async def bulk_cancel(request: Request) -> Response:
    return await _bulk(request, "cancel")


async def bulk_retry(request: Request) -> Response:
    return await _bulk(request, "retry")


async def _bulk(request: Request, verb: str) -> Response:
    """Cancel or retry the selected tasks of a search, or the newest BULK_LIMIT matching it;
    the confirmation states how many, and posts their ids, so what is done is what was
    asked about."""
    found, form = await posted(request)
    api = service(request)
    search = form.get("search") or ""
    wanted = _wanted(parse_qsl(search))
    shown = urlencode([(name, value) for name, value in wanted.items() if value])
    back = f"{request.scope.get('root_path') or ''}/tasks?{shown}"
    queue = api.writable_queue(found.key, wanted["queue"] or None)  # refused before asking
    more = form.get("more") == "yes"
    if form.get("all") == "yes":
        ids, more = await _matching_ids(api, found, wanted)
        if not ids:
            return done(request, back, f"Nothing to {verb}: no task matches this search.")
        what = (
            f"the {_plural(len(ids), 'newest task')} matching this search (more match: one "
            f"action takes {BULK_LIMIT:,} at most; run it again for the rest)"
            if more else f"the {_plural(len(ids), 'task')} matching this search"
        )
    else:
        ids = _ids(form)
        what = f"the {_plural(len(ids), 'selected task')}"
    question = (
        f"Cancel {what}? Waiting tasks are canceled at once; running ones are asked to stop."
        if verb == "cancel" else f"Retry {what}? Those that are dead run again."
    )
    fields = [("search", search), *(("ids", str(i)) for i in ids)]
    if more:
        fields.append(("more", "yes"))
    asked = unconfirmed(request, found, form, question, back=back, fields=fields)
    if asked is not None:
        return asked
    if verb == "cancel":
        message = cancel_report(await api.cancel_tasks(found.key, queue, ids))
    else:
        message = retry_report(await api.retry_tasks(found.key, queue, ids))
    if more:
        message += f" More tasks match: {verb} all matching again for the next {BULK_LIMIT:,}."
    return done(request, back, message)


def _ids(form: Form) -> list[int]:
    if not form.all("ids"):
        raise InvalidArgumentError(
            "selection", "no task is selected: tick the tasks first, or act on all matching"
        )
    return form.task_ids()


def _field_message(error: InvalidArgumentError) -> str:
    label = FIELD_LABELS.get(error.field, error.field)
    return f"{label}: {str(error).removeprefix(f'invalid {error.field}: ')}"
