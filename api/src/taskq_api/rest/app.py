"""The FastAPI application: routes, problem responses, health, metrics and OpenAPI.

The service comes from `open_service`, entered for the application's lifetime (the server
layer opens the database pool there), so this layer never sees a DSN or a pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from taskq_api.rest import problems, routes
from taskq_api.rest.models import Health, Readiness
from taskq_api.rest.observe import CORRELATION_HEADER, ApiMetrics, Observer
from taskq_api.service import ApiService

API_VERSION = "1"
DESCRIPTION = """The taskq REST API: enqueue tasks, follow them, look after queues and schedules.

Every /v1 request sends an API key, `Authorization: Bearer tq_...` (`taskq keys create` makes
one). Errors are RFC 9457 problem documents (`application/problem+json`).
"""


def create_app(
    open_service: Callable[[], AbstractAsyncContextManager[ApiService]],
    *,
    max_body_bytes: int,
    max_header_bytes: int = 16 * 1024,
    cors_origins: Sequence[str] = (),
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    metrics = metrics or ApiMetrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_service() as service:
            yield {"service": service}

    app = FastAPI(
        title="taskq API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # the interactive pages load scripts from a CDN: none here
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    app.include_router(routes.router)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        summary="The process serves requests",
        responses={500: problems.responses()[500]},
    )
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="The database answers and holds the taskq schema",
        responses={s: problems.responses()[s] for s in (500, 503)},
    )
    async def readyz(request: Request) -> Readiness:
        service: ApiService = request.state.service
        return Readiness(schema_version=await service.schema_version())

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", CORRELATION_HEADER],
            expose_headers=[CORRELATION_HEADER, "Location", "Retry-After", "WWW-Authenticate"],
        )
    # added last: outermost, so it sees every request, CORS preflights included
    app.add_middleware(
        Observer, max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes, metrics=metrics
    )
    return app
