"""What every action (a form post that changes something) goes through: the signed-in key,
the session's CSRF token, a confirmation for those that ask for one, and a redirect that
carries its outcome to the next page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskq_api.dashboard.context import Visit, dashboard, page, visit
from taskq_api.dashboard.forms import Form, read_form


async def posted(request: Request) -> tuple[Visit, Form]:
    """The visit and its form, once the form's CSRF token is the session's (CsrfError)."""
    found = await visit(request)
    form = await read_form(request)
    found.session.check_csrf(form.get("csrf"))
    return found, form


def unconfirmed(
    request: Request, found: Visit, form: Form, question: str, *, back: str,
    fields: list[tuple[str, str]] | None = None,
) -> Response | None:
    """A page asking `question`, unless the form says it was confirmed (the page's script
    asks in a dialog and says so; without script, this page asks). Its form posts `fields`
    again (by default the form's ids and all)."""
    if form.get("confirmed") == "yes":
        return None
    if fields is None:
        fields = [
            (name, value)
            for name in ("ids", "all")
            for value in form.all(name)
        ]
    return page(
        request, "confirm.html", found, question=question, action=request.url.path,
        fields=fields, back=back,
    )


def done(request: Request, to: str, message: str) -> Response:
    response = RedirectResponse(to, status_code=303)
    dashboard(request).codec.flash(request, response, message)
    return response
