"""The overview: every queue the key reads, with its depth and throughput, live."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from taskq_api.dashboard.context import page, service, visit


def namespace_filter(request: Request) -> str | None:
    return request.query_params.get("namespace") or None


async def overview_page(request: Request) -> Response:
    found = await visit(request)
    namespace = namespace_filter(request)
    overview = await service(request).overview(found.key, namespace)
    return page(request, "overview.html", found, overview=overview, namespace=namespace)
