"""The overview: the queues a key reads with their counts, a namespace filter, and live
updates by Server-Sent Events; over real sockets, on the real server and database."""

from __future__ import annotations

import asyncio
import html
import itertools
import re
import time

import asyncpg
import httpx

from taskq import TaskRequest
from taskq.client import COUNT_CAP, Client
from taskq_api.service.operations import OVERVIEW_PAGE
from tests.api.conftest import running_api
from tests.conftest import MakeQueue
from tests.dashboard.conftest import SESSION_SECRET, MakeKey, server_events, sign_in
from tests.integration.helpers import claim, finish

_pages = itertools.count()


async def _every_page(web: httpx.AsyncClient) -> str:
    """The overview's pages, one after the other (the session's database holds many queues)."""
    pages, path = [], "/dashboard/"
    while path:
        page = html.unescape((await web.get(path)).text)
        pages.append(page)
        later = re.search(r'href="(/dashboard/\?after=[^"]+)">Queues after', page)
        path = later.group(1) if later else ""
    return "".join(pages)


def _row(html: str, queue: str) -> dict[str, str]:
    """The counts of a queue's row of the overview."""
    row = re.search(rf'<tr data-queue="{re.escape(queue)}">(.*?)</tr>', html, re.S)
    assert row, html
    return dict(re.findall(r'data-count="([a-z-]+)">(\d+)<', row.group(1)))


async def test_the_overview_shows_each_visible_queue_with_its_counts(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    other = await make_queue()
    await client.enqueue(queue.full_name, "t", 1)
    await client.enqueue(queue.full_name, "t", 2, delay=3600)
    await client.enqueue(queue.full_name, "t", 3)
    await client.enqueue(queue.full_name, "t", 4)
    running, dying = await claim(pool, queue, limit=2)
    await finish(pool, dying, "failed")
    await client.set_paused(queue.full_name, True)
    await sign_in(web, await make_key("viewer", [queue.namespace]))

    page = (await web.get("/dashboard/")).text

    assert _row(page, queue.full_name) == {
        "ready": "1", "scheduled": "1", "running": "1", "dead": "1",
        "succeeded-per-minute": "0", "dead-per-minute": "1",
    }
    assert "paused" in page
    assert other.full_name not in page  # outside the key's namespaces
    assert running.id
    # the row's chart of the last hour: one polyline of finished tasks, one of the dead
    spark = f'aria-label="{queue.full_name}: last 61 minutes: 0 succeeded, 1 dead, at most 1 a'
    assert spark in page
    assert '<polyline class="dead"' in page


async def test_a_count_past_the_cap_is_shown_as_at_least_the_cap(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client
) -> None:
    queue = await make_queue()
    await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {}) for _ in range(COUNT_CAP + 1)]
    )
    await sign_in(web, await make_key("viewer", [queue.namespace]))
    page = html.unescape((await web.get("/dashboard/")).text)
    row = re.search(rf'<tr data-queue="{re.escape(queue.full_name)}">(.*?)</tr>', page, re.S)
    assert row
    assert f'data-count="ready">≥ {COUNT_CAP}<' in row.group(1)
    assert 'data-count="scheduled">0<' in row.group(1)
    detail = html.unescape((await web.get(f"/dashboard/queues/{queue.full_name}")).text)
    assert f'<dd data-count="ready">≥ {COUNT_CAP}</dd>' in detail


async def test_the_namespace_filter_shows_that_namespace_only(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue
) -> None:
    one, two = await make_queue(), await make_queue()
    await sign_in(web, await make_key("viewer", None))

    filtered = (await web.get(f"/dashboard/?namespace={one.namespace}")).text
    everything = await _every_page(web)

    assert one.full_name in filtered
    assert two.full_name not in filtered
    assert f'<option value="{two.namespace}">' in filtered  # still offered in the filter
    assert one.full_name in everything
    assert two.full_name in everything
    bad = await web.get("/dashboard/?namespace=Not_A_Label")
    assert bad.status_code == 422
    assert "invalid namespace" in bad.text


async def test_counts_arrive_live_as_tasks_are_enqueued(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client
) -> None:
    queue = await make_queue()
    await sign_in(web, await make_key("viewer", [queue.namespace]))
    seen: list[str] = []

    async with web.stream(
        "GET", f"/dashboard/events/overview?namespace={queue.namespace}"
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(20):
            async for event, data in server_events(stream):
                if event != "swap":
                    continue
                element, _newline, html = data.partition("\n")
                assert element == "queue-rows"
                seen.append(_row(html, queue.full_name)["ready"])
                if seen == ["0"]:
                    await client.enqueue(queue.full_name, "t", None)
                    await client.enqueue(queue.full_name, "t", None)
                if seen[-1] == "2":
                    break

    assert seen == ["0", "2"]  # an unchanged part is not sent again


async def test_a_revoked_key_ends_its_live_stream(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    secret = await make_key("viewer", [queue.namespace])
    await sign_in(web, secret)

    async with web.stream("GET", "/dashboard/events/overview") as stream:
        async with asyncio.timeout(20):
            events = server_events(stream)
            assert (await anext(events))[0] == "swap"
            await pool.execute(
                "UPDATE taskq.api_keys SET revoked_at = now() WHERE prefix = $1",
                secret.split("_")[1],
            )
            rest = [event async for event, _data in events]

    assert rest[-1] == "signed-out"


async def test_the_stream_needs_a_session(web: httpx.AsyncClient) -> None:
    response = await web.get("/dashboard/events/overview")
    assert response.status_code == 303


async def test_a_server_shutting_down_ends_its_live_streams_at_once(
    dsn: str, make_key: MakeKey,
) -> None:
    secret = await make_key("viewer", None)
    async with running_api(
        dsn, dashboard=True, session_secret=SESSION_SECRET, shutdown_grace=30.0
    ) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as web:
        await sign_in(web, secret)
        async with web.stream("GET", "/dashboard/events/overview") as stream:
            events = server_events(stream)
            assert (await anext(events))[0] == "swap"
            began = time.monotonic()
            api.server.should_exit = True  # what SIGTERM does
            async with asyncio.timeout(10):
                rest = [event async for event, _data in events]
            ended = time.monotonic() - began
    assert ended < 5  # a tick, not the 30 s grace
    assert "signed-out" not in rest


async def test_the_overview_shows_queues_a_page_at_a_time(
    web: httpx.AsyncClient, make_key: MakeKey, client: Client,
) -> None:
    namespace = f"paged{next(_pages)}"
    names = [f"{namespace}/q{n:02d}" for n in range(OVERVIEW_PAGE + 2)]
    for name in names:
        await client.ensure_queue(name)
    await sign_in(web, await make_key("viewer", [namespace]))

    first = html.unescape((await web.get("/dashboard/")).text)
    shown = re.findall(r'<tr data-queue="([^"]+)"', first)
    assert shown == names[:OVERVIEW_PAGE]
    assert first.count("<polyline") >= OVERVIEW_PAGE  # each row's last hour
    later = re.search(r'href="(/dashboard/\?after=[^"]+)">Queues after', first)
    assert later is not None
    assert "First queues" not in first

    second = html.unescape((await web.get(later.group(1))).text)
    assert re.findall(r'<tr data-queue="([^"]+)"', second) == names[OVERVIEW_PAGE:]
    assert "First queues" in second
    assert "Queues after" not in second
    assert f"events/overview?after={names[OVERVIEW_PAGE - 1]}" in second.replace("%2F", "/")
