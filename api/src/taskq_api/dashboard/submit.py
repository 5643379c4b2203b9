"""Submit a task by form: queue, task name, JSON payload (checked in the browser before it is
sent, and here again), priority, delay, idempotency key and correlation id."""

from __future__ import annotations

import json
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from taskq.errors import InvalidArgumentError, PayloadTooLargeError
from taskq.models import TaskRequest
from taskq_api.dashboard.actions import done, posted
from taskq_api.dashboard.context import Visit, page, service, visit

PRIORITIES: Final = ("urgent", "high", "normal", "low")
FIELDS: Final = (
    "queue", "task_name", "payload", "priority", "delay_seconds", "idempotency_key",
    "correlation_id",
)
# The form's labels, by the field names the service's errors use.
LABELS: Final = {
    "queue": "Queue",
    "namespace": "Queue",
    "name": "Queue",
    "task_name": "Task name",
    "payload": "Payload",
    "priority": "Priority",
    "delay_seconds": "Delay",
    "idempotency_key": "Idempotency key",
    "correlation_id": "Correlation id",
}


async def _form(
    request: Request, found: Visit, values: dict[str, str], *, status: int = 200,
    error: str | None = None, error_field: str | None = None,
) -> Response:
    queues = [
        q.full_name for q in await service(request).queues(found.key)
        if found.may_write(q.namespace)
    ]
    return page(
        request, "submit.html", found, status=status, queues=queues, values=values,
        priorities=PRIORITIES, error=error, error_field=error_field,
    )


async def submit_page(request: Request) -> Response:
    found = await visit(request)
    values = dict.fromkeys(FIELDS, "")
    values.update(queue=request.query_params.get("queue", ""), payload="{}")
    return await _form(request, found, values)


def _request(values: dict[str, str]) -> tuple[str, str, TaskRequest]:
    namespace, slash, name = values["queue"].partition("/")
    if not slash:
        raise InvalidArgumentError("queue", "choose a queue")
    if not values["task_name"]:
        raise InvalidArgumentError("task_name", "required: the name a worker registered")
    try:
        payload = json.loads(values["payload"] or "null")
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(
            "payload", f"not JSON ({error.msg} at line {error.lineno} column {error.colno}): "
            'write a JSON value, e.g. {"order": 42}, or null for none'
        ) from None
    delay = None
    if values["delay_seconds"]:
        try:
            delay = float(values["delay_seconds"])
        except ValueError:
            raise InvalidArgumentError(
                "delay_seconds", f"{values['delay_seconds'][:20]!r} is not a number of seconds"
            ) from None
    return namespace, name, TaskRequest(
        values["task_name"],
        payload,
        priority=values["priority"] or None,
        delay=delay,
        idempotency_key=values["idempotency_key"] or None,
        correlation_id=values["correlation_id"] or None,
    )


async def submit(request: Request) -> Response:
    found, form = await posted(request)
    values = {name: (form.get(name) or "").strip() for name in FIELDS}
    values["payload"] = form.get("payload") or ""
    try:
        namespace, name, task = _request(values)
        enqueued = await service(request).enqueue(found.key, namespace, name, task)
    except (InvalidArgumentError, PayloadTooLargeError) as error:
        field = getattr(error, "field", "payload")
        label = LABELS.get(field, field)
        message = str(error).removeprefix(f"invalid {field}: ")
        return await _form(
            request, found, values, status=422 if isinstance(error, InvalidArgumentError) else 413,
            error=f"{label}: {message}", error_field=field,
        )
    base = str(request.scope.get("root_path") or "")
    verb = "Enqueued" if enqueued.created else "Not enqueued: the idempotency key is held by"
    return done(request, f"{base}/tasks/{enqueued.task.id}", f"{verb} task {enqueued.task.id}.")
