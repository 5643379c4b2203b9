"""Live pages: a Server-Sent Events stream per page that sends, every tick, the parts of the
page that changed, rendered by the same templates as the page itself (so the browser only
swaps HTML in). Each tick authenticates the session's key again: a revoked or expired key
ends the stream with `signed-out`, and the page goes to the login page."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from taskq.auth import ApiKey
from taskq.errors import DatabaseUnavailableError, SchemaMissingError, TaskqError
from taskq_api.dashboard.chart import Sparkline, chart, wait_chart
from taskq_api.dashboard.context import Visit, dashboard, service, visit
from taskq_api.dashboard.overview import namespace_filter, page_after, sparklines
from taskq_api.dashboard.tasks import path_task_id, task_context
from taskq_api.service import (
    DATABASE_UNAVAILABLE_DETAIL,
    WAIT_SAMPLE,
    ApiError,
    NotAuthenticatedError,
)

# The throughput chart is drawn again every this many ticks (30 s).
CHART_EVERY = 15
# Rendered parts of a page by the id of the element they replace.
Produce = Callable[[ApiKey], Awaitable[Mapping[str, str]]]


def _event(name: str, data: str) -> str:
    lines = data.splitlines() or [""]
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def _live(request: Request, found: Visit, produce: Produce) -> Response:
    parts = dashboard(request)
    api = service(request)
    prefix, key_digest = found.session.prefix, found.session.key_digest
    # a Visit is signed in
    assert prefix is not None
    assert key_digest is not None

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {int(parts.tick_seconds * 1000)}\n\n"
        sent: dict[str, str] = {}
        while not parts.stopping():
            try:
                key = await api.authenticate_digest(prefix, key_digest)
                updates = await produce(key)
            except NotAuthenticatedError:
                yield _event("signed-out", "")
                return
            except (DatabaseUnavailableError, SchemaMissingError):
                yield _event("stale", DATABASE_UNAVAILABLE_DETAIL)
            except (TaskqError, ApiError) as error:  # e.g. the queue was dropped
                yield _event("stale", str(error))
            else:
                for element, html in updates.items():
                    if sent.get(element) != html:
                        yield _event("swap", f"{element}\n{html}")
                        sent[element] = html
                yield _event("live", datetime.now(UTC).strftime("%H:%M:%S UTC"))
            await asyncio.sleep(parts.tick_seconds)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def overview_events(request: Request) -> Response:
    found = await visit(request)
    namespace, after = namespace_filter(request), page_after(request)
    pages = dashboard(request).pages
    base = str(request.scope.get("root_path") or "")
    ticks = itertools.count()
    sparks: dict[str, Sparkline] = {}

    async def produce(key: ApiKey) -> Mapping[str, str]:
        api = service(request)
        overview = await api.overview(key, namespace, after)
        if next(ticks) % CHART_EVERY == 0:  # every queue's hour: not every tick
            sparks.clear()
            sparks.update(sparklines(await api.throughputs(key, namespace, after)))
        html = pages.fragment("_queue_rows.html", base=base, overview=overview, sparks=sparks)
        return {"queue-rows": html}

    return await _live(request, found, produce)


async def queue_events(request: Request) -> Response:
    found = await visit(request)
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    pages = dashboard(request).pages
    base = str(request.scope.get("root_path") or "")
    ticks = itertools.count()

    async def produce(key: ApiKey) -> Mapping[str, str]:
        api = service(request)
        queue = await api.queue(key, namespace, name)
        pools = await api.worker_pools(key, namespace, name)
        parts = {
            "queue-counts": pages.fragment("_queue_counts.html", queue=queue),
            "pools": pages.fragment("_pools.html", pools=pools, base=base),
        }
        if next(ticks) % CHART_EVERY == 0:  # an hour of counts: not every tick
            minutes = await api.throughput(key, namespace, name)
            parts["throughput"] = pages.fragment("_throughput.html", chart=chart(minutes))
            waits = await api.wait(key, namespace, name)
            parts["wait"] = pages.fragment(
                "_wait.html", wait=wait_chart(waits), wait_sample=WAIT_SAMPLE
            )
        return parts

    return await _live(request, found, produce)


async def task_events(request: Request) -> Response:
    found = await visit(request)
    wanted = path_task_id(request)
    pages = dashboard(request).pages
    base = str(request.scope.get("root_path") or "")

    async def produce(key: ApiKey) -> Mapping[str, str]:
        task = await service(request).task(key, wanted)
        fresh = Visit(found.session, key)  # the key as it is now: its role may have changed
        html = pages.fragment("_task.html", base=base, visit=fresh, **task_context(fresh, task))
        return {"task-body": html}

    return await _live(request, found, produce)
