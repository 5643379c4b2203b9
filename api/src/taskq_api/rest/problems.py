"""Every error as RFC 9457 `application/problem+json`, from one table.

`PROBLEMS` maps each error the service and taskq raise on purpose to its status, type and title;
FastAPI's validation errors and Starlette's HTTP errors (unknown route, wrong method) take the
same shape. A response never carries a stack trace: an unexpected error is logged with its
traceback and answered with a 500 that names the request's correlation id only.

`type` is a stable identifier of the kind of problem (docs/api.md lists them), relative to the
server; `errors` names each bad field: `pointer` (RFC 6901, into the JSON body, as in RFC 9457's
example) or `parameter` (a path or query parameter).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import Scope

from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    TaskqError,
    UnknownQueueError,
    UnknownScheduleError,
    UnknownTaskError,
)
from taskq_api.rest.models import BODY_FIELDS
from taskq_api.service import (
    CORRELATION_SCOPE_KEY,
    DATABASE_UNAVAILABLE_DETAIL,
    INTERNAL_DETAIL,
    QUEUE_REQUIRED,
    ApiError,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)

log = logging.getLogger("taskq_api.errors")

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5


class FieldProblem(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    pointer: str | None = None
    """Where in the JSON body, as a JSON Pointer fragment: `#/tasks/3/priority`."""
    parameter: str | None = None
    """Which path or query parameter: `wait`, `task_id`."""
    detail: str
    """What is wrong and how to fix it."""


class Problem(BaseModel):
    """An error, as RFC 9457 describes it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    type: str
    """The kind of problem, a stable identifier (docs/api.md lists them); about:blank when the
    status says it all."""
    title: str
    """The kind of problem, for people."""
    status: int
    detail: str
    """This occurrence: what went wrong and what to do."""
    instance: str | None = None
    """The request path."""
    correlation_id: str | None = None
    """The request's correlation id (X-Correlation-Id), as the server's log line has it."""
    errors: list[FieldProblem] | None = None
    """Each invalid field, for a 422."""


@dataclass(frozen=True, slots=True)
class Kind:
    status: int
    slug: str  # the type, after /problems/; "" for about:blank
    title: str

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}" if self.slug else "about:blank"


UNAUTHENTICATED = Kind(401, "unauthenticated", "Not authenticated")
FORBIDDEN = Kind(403, "forbidden", "Forbidden")
INVALID_REQUEST = Kind(422, "invalid-request", "Invalid request")
MALFORMED_JSON = Kind(400, "malformed-json", "Malformed JSON")
UNSUPPORTED_MEDIA_TYPE = Kind(415, "unsupported-media-type", "Send JSON")
REQUEST_TOO_LARGE = Kind(413, "request-too-large", "Request body too large")
HEADERS_TOO_LARGE = Kind(431, "headers-too-large", "Request headers too large")
INTERNAL = Kind(500, "internal-error", "Internal server error")

# The one mapping of the errors raised on purpose; the first class that matches wins.
PROBLEMS: Sequence[tuple[type[Exception], Kind]] = (
    (NotAuthenticatedError, UNAUTHENTICATED),
    (PermissionDeniedError, FORBIDDEN),
    (UnknownQueueError, Kind(404, "unknown-queue", "No such queue")),
    (UnknownTaskError, Kind(404, "unknown-task", "No such task")),
    (UnknownScheduleError, Kind(404, "unknown-schedule", "No such schedule")),
    (ConflictError, Kind(409, "conflict", "Conflict with the current state")),
    (PayloadTooLargeError, Kind(413, "payload-too-large", "Payload over the queue's limit")),
    (RateLimitedError, Kind(429, "rate-limited", "Too many requests")),
    (InvalidArgumentError, INVALID_REQUEST),
    (DatabaseUnavailableError, Kind(503, "database-unavailable", "Database unavailable")),
    (SchemaMissingError, Kind(503, "schema-missing", "taskq schema not installed")),
    (TaskqError, Kind(500, "taskq-error", "taskq error")),
)


class BodyTooLargeError(HTTPException):
    """The request body passed the server's limit (raised while it is read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is over the server's limit of {limit} bytes: send less "
            "(split a batch), or raise TASKQ_API_MAX_BODY_BYTES",
        )


def kind_of(error: Exception) -> Kind:
    return next((kind for cls, kind in PROBLEMS if isinstance(error, cls)), INTERNAL)


def problem_response(
    scope: Scope,
    kind: Kind,
    detail: str,
    *,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
    title: str | None = None,
) -> Response:
    status = status or kind.status
    problem = Problem(
        type=kind.type,
        title=title or kind.title,
        status=status,
        detail=detail,
        instance=scope.get("path"),
        correlation_id=_correlation(scope),
        errors=list(errors) or None,
    )
    return Response(
        problem.model_dump_json(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=MEDIA_TYPE,
    )


def _correlation(scope: Scope) -> str | None:
    return scope.get(CORRELATION_SCOPE_KEY)


def error_response(scope: Scope, error: Exception) -> Response:
    """The response to an error raised on purpose (PROBLEMS), or to any other (a 500)."""
    kind = kind_of(error)
    headers: dict[str, str] = {}
    errors: list[FieldProblem] = []
    detail = str(error)
    if isinstance(error, NotAuthenticatedError):
        challenge = 'Bearer realm="taskq"'
        if error.key_presented:
            challenge += ', error="invalid_token"'
        headers["WWW-Authenticate"] = challenge
    elif isinstance(error, RateLimitedError):
        # whole seconds (RFC 9110), rounded up: a client that waits this long gets through
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    elif kind.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if isinstance(error, DatabaseUnavailableError):
            # the cause names hosts and ports: for the server's log, not for any caller
            log.warning(
                "database unavailable: %s", error, extra={"correlation_id": _correlation(scope)}
            )
            detail = DATABASE_UNAVAILABLE_DETAIL
    elif isinstance(error, InvalidArgumentError):
        problem = detail.removeprefix(f"invalid {error.field}: ")
        has_body = scope.get("method") not in _BODILESS
        errors.append(_field_problem(error.field, problem, has_body=has_body))
    elif kind is INTERNAL:
        detail = INTERNAL_DETAIL
    return problem_response(scope, kind, detail, errors=errors, headers=headers)


_INDEX = re.compile(r"\[(\d+)\]")
# Methods whose requests carry no body here: a field they name is a parameter, also one that a
# body elsewhere has (`queue`: GET /v1/tasks's parameter, a schedule's field in its PUT).
_BODILESS = frozenset({"GET", "HEAD", "DELETE"})
# The path and query parameters of the routes, as the service names them in its errors.
PARAMETERS = frozenset(
    {
        "namespace",
        "name",
        "task_id",
        "wait",
        # GET /v1/tasks
        "queue",
        "state",
        "task",
        "created_after",
        "created_before",
        "limit",
        "cursor",
    }
)


def _field_problem(field: str, problem: str, *, has_body: bool = True) -> FieldProblem:
    """A field as taskq names it (`tasks[3].priority`, `wait`) -> where it is in the request."""
    path = [part for part in _INDEX.sub(r".\1", field).split(".") if part]
    if has_body and path and path[0] in BODY_FIELDS:
        return FieldProblem(pointer=_pointer(path), detail=problem)
    if field in PARAMETERS:
        return FieldProblem(parameter=field, detail=problem)
    return FieldProblem(detail=problem)  # e.g. what the database refused, unplaced


def _pointer(path: Sequence[object]) -> str:
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "#" + "".join("/" + part for part in parts)


# -- FastAPI's and Starlette's errors in the same shape ---------------------------------------

# pydantic's message, plus the fix where the message alone does not say it
_FIXES = {
    "missing": "required: add it",
    "extra_forbidden": "not a field of this request: remove it (/openapi.json lists the fields)",
}
# a required parameter left out, where "add it" does not say enough
_MISSING_FIXES = {("query", "queue"): f"required: {QUEUE_REQUIRED}"}


def _validation_problem(item: Mapping[str, Any]) -> FieldProblem:
    where, *path = item["loc"]
    message = _FIXES.get(item["type"], item["msg"])
    if item["type"] == "missing":
        message = _MISSING_FIXES.get((where, *path[:1]), message)
    ctx = item.get("ctx") or {}
    if item["type"] == "value_error" and "error" in ctx:
        message = str(ctx["error"])  # our own validators' words, without "Value error, "
    if where == "body":
        return FieldProblem(pointer=_pointer(path), detail=message)
    return FieldProblem(parameter=str(path[0]) if path else str(where), detail=message)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    items = list(error.errors())
    scope = request.scope
    malformed = next((i for i in items if i["type"] == "json_invalid"), None)
    if malformed is not None:
        position = malformed["loc"][-1]
        reason = (malformed.get("ctx") or {}).get("error", "invalid JSON")
        return problem_response(
            scope,
            MALFORMED_JSON,
            f"the body is not valid JSON: {reason} at character {position}",
        )
    content_type = request.headers.get("content-type", "")
    if any(i["loc"] == ("body",) for i in items) and content_type and not _is_json(content_type):
        return problem_response(
            scope,
            UNSUPPORTED_MEDIA_TYPE,
            f"the body is {content_type.split(';')[0]}: send JSON, with "
            "Content-Type: application/json",
        )
    problems = [_validation_problem(item) for item in items]
    detail = "; ".join(
        f"{p.pointer or p.parameter}: {p.detail}" if (p.pointer or p.parameter) else p.detail
        for p in problems
    )
    return problem_response(scope, INVALID_REQUEST, detail, errors=problems)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = error.status_code
    if isinstance(error, BodyTooLargeError):
        return problem_response(request.scope, REQUEST_TOO_LARGE, str(error.detail))
    title = HTTPStatus(status).phrase
    detail = str(error.detail)
    if status == 404:
        detail = (
            f"no endpoint {request.method} {request.url.path}: the API is under /v1, and "
            "/openapi.json lists its endpoints"
        )
    elif status == 405:
        allowed = (error.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed here; allowed: {allowed}"
    kind = Kind(status, "", title)
    return problem_response(request.scope, kind, detail, headers=error.headers)


async def _on_error(request: Request, error: Exception) -> Response:
    return error_response(request.scope, error)


def install(app: FastAPI) -> None:
    """Problem responses for every error, and the Problem schema in the OpenAPI document."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    for cls in (*(cls for cls, _kind in PROBLEMS), ApiError):
        app.add_exception_handler(cls, _on_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas["Problem"] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: a Problem for each status it may answer with, besides
    the ones every route shares (401, 422, 429, 431, 500, 503)."""
    described = {
        400: "The body is not valid JSON.",
        401: "No API key, or not a usable one.",
        403: "The key's role or namespaces do not allow this.",
        404: "No such queue, task or schedule (or the task is outside the key's namespaces).",
        409: "The task's or queue's state does not allow this now.",
        413: "The body is over the server's limit, or a payload over the queue's.",
        415: "The body is not JSON.",
        422: "A field or parameter is invalid; `errors` names each one.",
        429: "The key sent more requests than its rate; retry after Retry-After seconds.",
        431: "The request line and headers are over the server's limit.",
        500: "The server failed (never with a stack trace).",
        503: "The database is unreachable or not migrated; retry after Retry-After seconds.",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({401, 422, 429, 431, 500, 503, *statuses}):
        entry: dict[str, Any] = {
            "description": described[status],
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "description": 'Bearer realm="taskq"',
                    "schema": {"type": "string"},
                }
            }
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "string"}}
            }
        out[status] = entry
    return out
