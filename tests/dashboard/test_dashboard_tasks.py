"""A task's page (state, payload and result, error, progress, attempts, correlation id and
traceparent; cancel and retry) and the search over a queue's tasks with cursor pages. Over
real sockets, on the real server and database."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from taskq.client import Client
from tests.conftest import MakeQueue
from tests.dashboard.conftest import MakeKey, server_events, sign_in
from tests.integration.helpers import claim, finish

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _text(response: httpx.Response) -> str:
    return html.unescape(response.text)


async def test_the_task_page_shows_everything_about_a_task(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=2)
    task = await client.enqueue(queue.full_name, "charge", {"order": 42, "name": "Zoë"},
                                correlation_id="checkout-7")
    await pool.execute("UPDATE taskq.tasks SET traceparent = $2 WHERE id = $1",
                       task.id, TRACEPARENT)
    (first,) = await claim(pool, queue, limit=1)
    await finish(pool, first, "failed", error={
        "type": "Timeout", "message": "bank slow", "traceback": "Traceback: line 1"})
    await pool.execute("UPDATE taskq.tasks SET run_at = now() WHERE id = $1", task.id)
    (second,) = await claim(pool, queue, limit=1)
    await finish(pool, second, "succeeded", result={"receipt": "r-1"})
    # as the handler's last report left it (a claim starts each attempt's progress afresh)
    await pool.execute("UPDATE taskq.tasks SET progress = $2 WHERE id = $1",
                       task.id, '{"done": 3, "of": 10}')
    await sign_in(web, await make_key("operator", [queue.namespace]))

    page = _text(await web.get(f"/dashboard/tasks/{task.id}"))

    assert f"<h1>Task {task.id}</h1>" in page
    assert 'data-field="state">succeeded<' in page
    assert '"name": "Zoë"' in page
    assert '"order": 42' in page
    assert '"receipt": "r-1"' in page
    assert '"done": 3' in page
    assert "checkout-7" in page
    assert TRACEPARENT in page
    assert page.count("<li class=\"outcome-") == 2
    assert "Timeout: bank slow" in page
    assert "Cancel task" not in page  # succeeded: nothing to cancel
    assert "Retry task" not in page


async def test_payloads_and_results_are_hidden_from_keys_that_may_not_read_them(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", {"card": "4242-secret"})
    (claimed,) = await claim(pool, queue, limit=1)
    await finish(pool, claimed, "succeeded", result={"token": "tok-secret"})

    await sign_in(web, await make_key("viewer", [queue.namespace]))
    hidden = _text(await web.get(f"/dashboard/tasks/{task.id}"))
    web.cookies.clear()
    await sign_in(web, await make_key("viewer", [queue.namespace], reads_payloads=True))
    shown = _text(await web.get(f"/dashboard/tasks/{task.id}"))

    assert "4242-secret" not in hidden
    assert "tok-secret" not in hidden
    assert "Hidden: this key does not read payloads" in hidden
    assert "4242-secret" in shown
    assert "tok-secret" in shown


async def test_a_task_outside_the_keys_namespaces_is_unknown(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    mine, other = await make_queue(), await make_queue()
    task = await client.enqueue(other.full_name, "t", None)
    await sign_in(web, await make_key("admin", [mine.namespace]))

    assert (await web.get(f"/dashboard/tasks/{task.id}")).status_code == 404
    assert (await web.get(f"/dashboard/tasks/{2**63}")).status_code == 404


async def test_cancel_and_retry_after_confirming(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    dead = await client.enqueue(queue.full_name, "t", None)
    (claimed,) = await claim(pool, queue, limit=1)
    await finish(pool, claimed, "failed")
    waiting = await client.enqueue(queue.full_name, "t", None)
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))

    page = _text(await web.get(f"/dashboard/tasks/{waiting.id}"))
    assert "Cancel task" in page
    asked = await web.post(f"/dashboard/tasks/{waiting.id}/cancel", data={"csrf": csrf})
    assert f"Cancel task {waiting.id}?" in asked.text
    assert (await client.get_task(waiting.id)).state == "ready"
    canceled = await web.post(
        f"/dashboard/tasks/{waiting.id}/cancel", data={"csrf": csrf, "confirmed": "yes"})
    assert canceled.status_code == 303
    assert f"Task {waiting.id} canceled." in (await web.get(canceled.headers["location"])).text
    assert (await client.get_task(waiting.id)).state == "canceled"

    assert "Retry task" in _text(await web.get(f"/dashboard/tasks/{dead.id}"))
    retried = await web.post(
        f"/dashboard/tasks/{dead.id}/retry", data={"csrf": csrf, "confirmed": "yes"})
    assert retried.status_code == 303
    assert (await client.get_task(dead.id)).state == "ready"

    again = await web.post(
        f"/dashboard/tasks/{dead.id}/retry", data={"csrf": csrf, "confirmed": "yes"})
    assert again.status_code == 409
    assert f"task {dead.id} is ready: only a dead task can be retried" in _text(again)


async def test_a_viewer_cannot_cancel_or_retry(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", None)
    csrf = await sign_in(web, await make_key("viewer", [queue.namespace]))

    assert "Cancel task" not in (await web.get(f"/dashboard/tasks/{task.id}")).text
    for action in ("cancel", "retry"):
        refused = await web.post(
            f"/dashboard/tasks/{task.id}/{action}", data={"csrf": csrf, "confirmed": "yes"})
        assert refused.status_code == 403, action
    assert (await client.get_task(task.id)).state == "ready"


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<th scope="row"><a href="/dashboard/tasks/(\d+)">', page)]


async def test_search_filters_and_pages_by_cursor(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    made = [
        (await client.enqueue(queue.full_name, "even" if n % 2 == 0 else "odd", n,
                              correlation_id=f"c-{n % 3}")).id
        for n in range(120)
    ]
    await sign_in(web, await make_key("viewer", [queue.namespace]))
    search = f"/dashboard/tasks?queue={queue.full_name}"

    first = (await web.get(search)).text
    assert _ids(first) == made[::-1][:50]
    next_link = re.search(r'<a href="(/dashboard/tasks\?[^"]+)" rel="next">', first)
    assert next_link
    second = (await web.get(html.unescape(next_link.group(1)))).text
    assert _ids(second) == made[::-1][50:100]

    evens = _ids((await web.get(f"{search}&task=even&correlation_id=c-0")).text)
    assert evens == [t for n, t in enumerate(made) if n % 6 == 0][::-1]
    await pool.execute("UPDATE taskq.tasks SET created_at = now() - interval '2 hours' "
                       "WHERE id = ANY($1)", made[:3])
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    old = _ids((await web.get(f"{search}&created_before={hour_ago}")).text)
    assert old == made[:3][::-1]
    assert _ids((await web.get(f"{search}&state=dead")).text) == []

    bad = await web.get(f"{search}&created_after=yesterday")
    assert bad.status_code == 422
    assert "Created from: 'yesterday' is not a date and time" in _text(bad)
    swapped = await web.get(f"{search}&created_after={hour_ago}&created_before=2020-01-01T00:00")
    assert swapped.status_code == 422
    assert "Created from: is not before created_before" in _text(swapped)
    assert "Choose a queue" in (await web.get("/dashboard/tasks")).text


async def test_search_in_a_queue_outside_the_keys_namespaces_is_refused(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue,
) -> None:
    mine, other = await make_queue(), await make_queue()
    await sign_in(web, await make_key("viewer", [mine.namespace]))

    page = await web.get("/dashboard/tasks")
    assert mine.full_name in page.text
    assert other.full_name not in page.text
    assert (await web.get(f"/dashboard/tasks?queue={other.full_name}")).status_code == 403


async def test_the_task_page_follows_the_task_live(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", None)
    await sign_in(web, await make_key("operator", [queue.namespace]))
    states: list[str] = []

    async with web.stream("GET", f"/dashboard/events/tasks/{task.id}") as stream:
        async with asyncio.timeout(20):
            async for event, data in server_events(stream):
                if event != "swap":
                    continue
                assert data.startswith("task-body\n")
                states.append(re.findall(r'data-field="state">(\w+)<', data)[0])
                if states[-1] == "ready":
                    (claimed,) = await claim(pool, queue, limit=1)
                    assert "Cancel task" in data
                elif states[-1] == "running":
                    await finish(pool, claimed, "succeeded", result={"ok": True})
                else:
                    assert "Cancel task" not in data  # the buttons follow the state
                    break

    assert states == ["ready", "running", "succeeded"]
