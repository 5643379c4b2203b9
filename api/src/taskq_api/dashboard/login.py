"""Sign in with an API key, and out again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskq.auth import parse_prefix
from taskq_api.dashboard import session as sessions
from taskq_api.dashboard.context import dashboard, observed, page, service, visit
from taskq_api.dashboard.errors import STALE_FORM
from taskq_api.dashboard.forms import read_form
from taskq_api.service import NotAuthenticatedError

KEY_FORMAT = (
    "paste the whole key as `taskq keys create` printed it: tq_, 8 letters or digits, _, "
    "then 43 more characters"
)


def _next(request: Request, wanted: str | None) -> str:
    """Where to go after sign-in: a page of this dashboard, never another site."""
    base = str(request.scope.get("root_path") or "")
    if wanted and wanted.startswith(f"{base}/") and not wanted.startswith("//") and (
        "\\" not in wanted
    ):
        return wanted
    return f"{base}/"


def _form(
    request: Request, session: sessions.Session, *, status: int = 200,
    error: str | None = None, wanted: str | None = None,
) -> Response:
    response = page(
        request, "login.html", None, status=status, csrf=session.csrf, error=error,
        next=_next(request, wanted or request.query_params.get("next")),
    )
    dashboard(request).codec.write(request, response, session)
    return response


async def login_page(request: Request) -> Response:
    codec = dashboard(request).codec
    current = codec.read(request)
    if current is not None and current.signed_in:
        try:
            await visit(request)
            return RedirectResponse(_next(request, request.query_params.get("next")), 303)
        except NotAuthenticatedError:
            pass  # its key is no longer usable: sign in again
    return _form(request, current if current is not None else sessions.anonymous())


async def login(request: Request) -> Response:
    form = await read_form(request)
    current = dashboard(request).codec.read(request)
    wanted = form.get("next")
    if current is None:
        return _form(request, sessions.anonymous(), status=403, error=STALE_FORM, wanted=wanted)
    try:
        current.check_csrf(form.get("csrf"))
    except sessions.CsrfError:
        return _form(request, current, status=403, error=STALE_FORM, wanted=wanted)
    secret = (form.get("key") or "").strip()
    if parse_prefix(secret) is None:
        error = f"API key: {'empty' if not secret else 'not a taskq key'}: {KEY_FORMAT}"
        return _form(request, current, status=422, error=error, wanted=wanted)
    try:
        key = await service(request).authenticate(secret)
    except NotAuthenticatedError:
        error = (
            "API key: not valid: unknown, expired or revoked (`taskq keys list` shows the "
            "keys and their state): sign in with another key"
        )
        return _form(request, current, status=401, error=error, wanted=wanted)
    observed(request, key.prefix)
    response = RedirectResponse(_next(request, wanted), status_code=303)
    dashboard(request).codec.write(request, response, sessions.signed_in(secret))
    return response


async def logout(request: Request) -> Response:
    form = await read_form(request)
    current = dashboard(request).codec.read(request)
    if current is None:
        raise sessions.CsrfError
    current.check_csrf(form.get("csrf"))
    base = str(request.scope.get("root_path") or "")
    response = RedirectResponse(f"{base}/login", status_code=303)
    sessions.clear(request, response)
    dashboard(request).codec.flash(request, response, "Signed out.")
    return response
