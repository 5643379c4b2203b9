"""What every dashboard request works with: the dashboard's parts, the service, and the
signed-in key (a Visit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from taskq.auth import Action, ApiKey
from taskq_api.dashboard.render import Pages
from taskq_api.dashboard.session import FLASH_COOKIE, Session, SessionCodec, clear
from taskq_api.service import OBSERVATION_SCOPE_KEY, ApiService, Observation


class SignInNeeded(Exception):
    """No session, or one from before sign-in: the login page, then back."""


@dataclass(frozen=True, slots=True)
class Dashboard:
    codec: SessionCodec
    pages: Pages
    stopping: Callable[[], bool]  # the server is shutting down: live streams end
    tick_seconds: float  # between two updates of a live page


@dataclass(frozen=True, slots=True)
class Visit:
    """A signed-in request: its session and the key, as the service authenticated it now."""

    session: Session
    key: ApiKey

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def may_write(self, namespace: str) -> bool:
        return self.key.may(Action.WRITE, namespace)

    @property
    def may_enqueue(self) -> bool:
        """In some namespace: the role allows it (the namespace is checked per queue)."""
        return self.key.may(Action.WRITE)

    @property
    def is_admin(self) -> bool:
        return self.key.may(Action.MANAGE_KEYS)


def dashboard(request: Request) -> Dashboard:
    parts: Dashboard = request.app.state.dashboard
    return parts


def service(request: Request) -> ApiService:
    found: ApiService = request.state.service
    return found


async def visit(request: Request) -> Visit:
    """The signed-in key of this request, authenticated again (an expired or revoked key is
    refused here: NotAuthenticatedError); SignInNeeded without a signed-in session."""
    session = dashboard(request).codec.read(request)
    if session is None or session.prefix is None or session.key_digest is None:
        raise SignInNeeded
    key = await service(request).authenticate_digest(session.prefix, session.key_digest)
    observed(request, key.prefix)
    return Visit(session, key)


def observed(request: Request, prefix: str) -> None:
    """The request's access log line names the key, as for a REST request."""
    observation: Observation | None = request.scope.get(OBSERVATION_SCOPE_KEY)
    if observation is not None:
        observation.key_prefix = prefix


def page(
    request: Request, template: str, found: Visit | None, *, status: int = 200, **context: object
) -> Response:
    """A page for this visit, with the notice an action left for it (shown once)."""
    parts = dashboard(request)
    flash = parts.codec.read_flash(request)
    response = parts.pages.page(
        request, template, status=status, visit=found, flash=flash, **context
    )
    response.headers["Cache-Control"] = "no-store"
    if FLASH_COOKIE in request.cookies:
        clear(request, response, FLASH_COOKIE)
    return response
