"""The dashboard: an ASGI application of server-rendered pages, mounted at /dashboard on the
REST port by the server layer. It reaches the database only through the API's service, with
the signed-in key, so its pages show and do exactly what that key may through REST or gRPC."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskq_api.dashboard import events, keys, login, overview, queues, submit, tasks
from taskq_api.dashboard.context import Dashboard
from taskq_api.dashboard.errors import handlers
from taskq_api.dashboard.render import Pages
from taskq_api.dashboard.session import SessionCodec

PATH = "/dashboard"
# Between two updates of a live page (and two checks of the signed-in key by its stream).
TICK_SECONDS = 2.0

# Everything comes from this server: no inline script or style, no frames, forms post here only.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_dashboard(
    session_secret: str,
    *,
    stopping: Callable[[], bool] = lambda: False,
    tick_seconds: float = TICK_SECONDS,
) -> ASGIApp:
    """The dashboard, to mount at PATH; the service comes from the host application's
    lifespan state, as for the REST routes."""
    app = Starlette(
        routes=[
            Route("/", overview.overview_page, methods=["GET"]),
            Route("/login", login.login_page, methods=["GET"]),
            Route("/login", login.login, methods=["POST"]),
            Route("/logout", login.logout, methods=["POST"]),
            Route("/events/overview", events.overview_events, methods=["GET"]),
            Route("/queues/{namespace}/{name}", queues.queue_page, methods=["GET"]),
            Route("/events/queues/{namespace}/{name}", events.queue_events, methods=["GET"]),
            Route("/queues/{namespace}/{name}/pause", queues.pause, methods=["POST"]),
            Route("/queues/{namespace}/{name}/resume", queues.resume, methods=["POST"]),
            Route("/queues/{namespace}/{name}/replay", queues.replay, methods=["POST"]),
            Route("/tasks", tasks.search_page, methods=["GET"]),
            Route("/tasks/cancel", tasks.bulk_cancel, methods=["POST"]),
            Route("/tasks/retry", tasks.bulk_retry, methods=["POST"]),
            Route("/tasks/{task_id:int}", tasks.task_page, methods=["GET"]),
            Route("/events/tasks/{task_id:int}", events.task_events, methods=["GET"]),
            Route("/tasks/{task_id:int}/cancel", tasks.cancel, methods=["POST"]),
            Route("/tasks/{task_id:int}/retry", tasks.retry, methods=["POST"]),
            Route("/submit", submit.submit_page, methods=["GET"]),
            Route("/submit", submit.submit, methods=["POST"]),
            Route("/keys", keys.keys_page, methods=["GET"]),
            Route("/keys", keys.create, methods=["POST"]),
            Route("/keys/{name}/revoke", keys.revoke, methods=["POST"]),
            Mount("/static", StaticFiles(packages=[("taskq_api.dashboard", "static")])),
        ],
        exception_handlers=dict(handlers()),
    )
    app.state.dashboard = Dashboard(SessionCodec(session_secret), Pages(), stopping, tick_seconds)
    return _SecurityHeaders(app)
