"""What a refused or failed dashboard request shows: an HTML page with the service's message
(which names the problem and the fix), or the login page when the session is gone. The one
place errors become statuses here, as rest/problems.py is for the REST API."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskq.errors import (
    ApiKeyConflictError,
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    UnknownApiKeyError,
    UnknownQueueError,
    UnknownTaskError,
)
from taskq_api.dashboard.context import SignInNeeded, dashboard, page
from taskq_api.dashboard.forms import FormError
from taskq_api.dashboard.session import CsrfError, clear
from taskq_api.service import (
    CORRELATION_SCOPE_KEY,
    DATABASE_UNAVAILABLE_DETAIL,
    INTERNAL_DETAIL,
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)

log = logging.getLogger("taskq_api.dashboard")

SESSION_ENDED = (
    "Your session ended: the key is expired or revoked. Sign in with a valid key "
    "(`taskq keys list` shows the keys and their state)."
)
STALE_FORM = (
    "This form is from an earlier session, or was not sent by this dashboard: go back, "
    "reload the page and try again."
)

# The errors raised on purpose, each with its status and title; the first class that matches.
STATUSES: tuple[tuple[type[Exception], int, str], ...] = (
    (PermissionDeniedError, 403, "Not allowed"),
    (CsrfError, 403, "Form expired"),
    (UnknownQueueError, 404, "No such queue"),
    (UnknownTaskError, 404, "No such task"),
    (UnknownApiKeyError, 404, "No such key"),
    (ApiKeyConflictError, 409, "Not in this state"),
    (ConflictError, 409, "Not in this state"),
    (PayloadTooLargeError, 413, "Payload too large"),
    (InvalidArgumentError, 422, "Invalid input"),
    (FormError, 400, "Not a form of this dashboard"),
    (RateLimitedError, 429, "Too many requests"),
    (DatabaseUnavailableError, 503, "Database unavailable"),
    (SchemaMissingError, 503, "Database not migrated"),
)

Handler = Callable[[Request, Exception], Awaitable[Response]]


def login_url(request: Request) -> str:
    """The login page, coming back to this page (a GET) or the overview afterwards."""
    base = str(request.scope.get("root_path") or "")
    back = request.url.path if request.method == "GET" else f"{base}/"
    if request.url.query and request.method == "GET":
        back += "?" + request.url.query
    return f"{base}/login?next={quote(back, safe='/')}"


async def _sign_in(request: Request, _error: Exception) -> Response:
    return RedirectResponse(login_url(request), status_code=303)


async def _session_ended(request: Request, _error: Exception) -> Response:
    response = RedirectResponse(login_url(request), status_code=303)
    clear(request, response)
    dashboard(request).codec.flash(request, response, SESSION_ENDED)
    return response


def _message(error: Exception) -> str:
    if isinstance(error, CsrfError):
        return STALE_FORM
    if isinstance(error, DatabaseUnavailableError | SchemaMissingError):
        return DATABASE_UNAVAILABLE_DETAIL  # the cause may name hosts: it stays in the log
    return str(error)


async def _refused(request: Request, error: Exception) -> Response:
    status, title = next((s, t) for kind, s, t in STATUSES if isinstance(error, kind))
    if status == 503:
        log.warning("database unavailable: %s", error)
    response = page(
        request, "error.html", None, status=status, title=title, message=_message(error),
        correlation_id=request.scope.get(CORRELATION_SCOPE_KEY),
    )
    if isinstance(error, RateLimitedError):
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


async def _http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    titles = {404: "No such page", 405: "Not with this method"}
    response = page(
        request, "error.html", None, status=error.status_code,
        title=titles.get(error.status_code, "Refused"),
        message=f"{request.url.path} is not a page of the dashboard: start from its overview"
        if error.status_code == 404 else str(error.detail),
        correlation_id=request.scope.get(CORRELATION_SCOPE_KEY),
    )
    response.headers.update(error.headers or {})
    return response


async def _failed(request: Request, _error: Exception) -> Response:
    # the Observer outside logs the traceback under the correlation id
    return page(
        request, "error.html", None, status=500, title="Server error", message=INTERNAL_DETAIL,
        correlation_id=request.scope.get(CORRELATION_SCOPE_KEY),
    )


def handlers() -> Mapping[type[Exception] | int, Handler]:
    table: dict[type[Exception] | int, Handler] = {
        SignInNeeded: _sign_in,
        NotAuthenticatedError: _session_ended,
        HTTPException: _http,
        Exception: _failed,
    }
    for kind, _status, _title in STATUSES:
        table[kind] = _refused
    return table
