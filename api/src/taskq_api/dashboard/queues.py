"""A queue's page: its settings and counts (live), its throughput and wait charts, the worker
pools serving it, its dead letters with replay, and pause or resume for keys that may."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from taskq.errors import InvalidArgumentError
from taskq_api.dashboard.actions import done, posted, unconfirmed
from taskq_api.dashboard.chart import chart, wait_chart
from taskq_api.dashboard.context import page, service, visit
from taskq_api.service import WAIT_SAMPLE

# Dead letters per page of the queue's page (older ones: the next page, by cursor).
DEAD_PAGE = 25


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["namespace"], request.path_params["name"]


def _url(request: Request, namespace: str, name: str) -> str:
    return f"{request.scope.get('root_path') or ''}/queues/{namespace}/{name}"


async def queue_page(request: Request) -> Response:
    found = await visit(request)
    namespace, name = _names(request)
    api = service(request)
    queue = await api.queue(found.key, namespace, name)
    dead = await api.list_tasks(
        found.key, queue.queue, state="dead", limit=DEAD_PAGE,
        cursor=request.query_params.get("cursor") or None,
    )
    minutes = await api.throughput(found.key, namespace, name)
    waits = await api.wait(found.key, namespace, name)
    pools = await api.worker_pools(found.key, namespace, name)
    return page(
        request, "queue.html", found, queue=queue, dead=dead, chart=chart(minutes),
        wait=wait_chart(waits), wait_sample=WAIT_SAMPLE, pools=pools,
        may_write=found.may_write(namespace),
        first_page=not request.query_params.get("cursor"),
    )


async def pause(request: Request) -> Response:
    found, form = await posted(request)
    namespace, name = _names(request)
    back = _url(request, namespace, name)
    asked = unconfirmed(
        request, found, form,
        f"Pause {namespace}/{name}? Workers stop claiming its tasks until it is resumed; "
        "enqueueing goes on.",
        back=back,
    )
    if asked is not None:
        return asked
    await service(request).set_paused(found.key, namespace, name, paused=True)
    return done(request, back, f"Paused {namespace}/{name}.")


async def resume(request: Request) -> Response:
    found, _form = await posted(request)
    namespace, name = _names(request)
    await service(request).set_paused(found.key, namespace, name, paused=False)
    return done(request, _url(request, namespace, name), f"Resumed {namespace}/{name}.")


async def replay(request: Request) -> Response:
    found, form = await posted(request)
    namespace, name = _names(request)
    back = _url(request, namespace, name)
    every = form.get("all") == "yes"
    ids = [] if every else form.task_ids()
    if not every and not ids:
        raise InvalidArgumentError(
            "selection", "no dead letter is selected: tick the ones to replay, or use Replay all"
        )
    what = (
        f"every dead task of {namespace}/{name}" if every
        else f"dead task {ids[0]}" if len(ids) == 1
        else f"{len(ids)} selected dead tasks"
    )
    asked = unconfirmed(request, found, form, f"Replay {what}? They run again.", back=back)
    if asked is not None:
        return asked
    result = await service(request).replay_dead(found.key, namespace, name, ids, every=every)
    message = f"Replayed {result.replayed} dead task{'s' if result.replayed != 1 else ''}."
    if result.skipped:
        message += (
            f" {result.skipped} skipped: an unfinished task holds its idempotency key."
        )
    return done(request, back, message)
