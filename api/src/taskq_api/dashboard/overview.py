"""The overview: every queue the key reads, with its depth and throughput, live."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from taskq.models import ThroughputMinute
from taskq_api.dashboard.chart import Sparkline, sparkline
from taskq_api.dashboard.context import page, service, visit


def namespace_filter(request: Request) -> str | None:
    return request.query_params.get("namespace") or None


def page_after(request: Request) -> str | None:
    """The queue the overview's page starts after (`?after=NS/NAME`)."""
    return request.query_params.get("after") or None


async def overview_page(request: Request) -> Response:
    found = await visit(request)
    namespace = namespace_filter(request)
    api = service(request)
    after = page_after(request)
    overview = await api.overview(found.key, namespace, after)
    sparks = sparklines(await api.throughputs(found.key, namespace, after))
    return page(
        request, "overview.html", found, overview=overview, namespace=namespace, sparks=sparks
    )


def sparklines(throughputs: dict[str, list[ThroughputMinute]]) -> dict[str, Sparkline]:
    return {queue: sparkline(minutes) for queue, minutes in throughputs.items()}
