"""The task search by error text (a bounded walk whose page may end early), and bulk cancel and
retry of a search's tasks: the selected ones, or all matching, after a confirmation stating how
many. Over real sockets, on the real server and database."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import asyncpg
import httpx

from taskq.client import Client
from taskq.models import QueueInfo, TaskRequest
from taskq_api.dashboard.tasks import BULK_LIMIT
from taskq_api.service import ERROR_SEARCH_WALK
from tests.conftest import MakeQueue
from tests.dashboard.conftest import MakeKey, sign_in
from tests.integration.helpers import claim, finish


def _text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<th scope="row"><a href="/dashboard/tasks/(\d+)">', page)]


def _notice(page: str) -> str:
    found = re.search(r'role="status"[^>]*>([^<]*)<', page)
    assert found, page
    return html.unescape(found.group(1))


async def _dead(client: Client, pool: asyncpg.Pool, queue: QueueInfo, message: str) -> int:
    task = await client.enqueue(queue.full_name, "charge", None)
    (claimed,) = await claim(pool, queue, limit=1)
    assert claimed.id == task.id
    assert await finish(pool, claimed, "failed", error={
        "type": "CardDeclined", "message": message, "traceback": "in frame_x"}) == "dead"
    return task.id


async def test_search_by_error_text_matches_it_literally_in_any_case(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    half = await _dead(client, pool, queue, "coupon 50% off_today refused")
    other = await _dead(client, pool, queue, "coupon 500 off refused")
    await client.enqueue(queue.full_name, "charge", None)  # no error at all
    await sign_in(web, await make_key("viewer", [queue.namespace]))
    search = f"/dashboard/tasks?queue={queue.full_name}&error="

    assert _ids((await web.get(search + "CARDDECLINED: coupon")).text) == [other, half]
    # '%' and '_' are themselves, not LIKE's wildcards
    assert _ids((await web.get(search + "50%25 off_")).text) == [half]
    assert _ids((await web.get(search + "5_0")).text) == []
    assert _ids((await web.get(search + "frame_x")).text) == []  # the traceback is not searched
    both = await web.get(search + "refused&state=dead&task=charge")
    assert _ids(both.text) == [other, half]
    assert 'value="refused"' in both.text  # the form keeps what was typed
    assert "Cancel selected" not in both.text  # a viewer: no bulk action

    too_long = await web.get(search + "x" * 201)
    assert too_long.status_code == 422
    assert "Error text: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': give 1 to 200 characters" in _text(
        too_long)


async def test_an_error_search_page_ends_after_reading_its_bound_and_goes_on(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    oldest = await _dead(client, pool, queue, "bank unreachable")
    for _batch in range(3):  # more newer tasks without an error than one page reads
        await client.enqueue_many(
            queue.full_name, [TaskRequest("t", None)] * (ERROR_SEARCH_WALK // 2))
    await sign_in(web, await make_key("viewer", [queue.namespace]))

    first = _text(await web.get(f"/dashboard/tasks?queue={queue.full_name}&error=unreachable"))
    assert _ids(first) == []
    assert f"This page read {ERROR_SEARCH_WALK:,} tasks" in first
    assert "No task matches among these." in first
    link = re.search(r'<a href="(/dashboard/tasks\?[^"]+)" rel="next">Search older tasks<', first)
    assert link, first
    second = _text(await web.get(link.group(1)))
    assert _ids(second) == [oldest]
    assert "This page read" not in second


async def test_cancel_the_selected_tasks_after_a_confirmation_that_says_how_many(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    dead = await _dead(client, pool, queue, "no")
    waiting = [(await client.enqueue(queue.full_name, "t", None)).id for _ in range(3)]
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    search = urlencode({"queue": queue.full_name})
    page = _text(await web.get(f"/dashboard/tasks?{search}"))
    assert f'name="ids" value="{waiting[0]}"' in page
    assert "Cancel selected" in page

    chosen = {"csrf": csrf, "search": search, "ids": [str(waiting[0]), str(waiting[1]),
                                                      str(dead)]}
    asked = await web.post("/dashboard/tasks/cancel", data=chosen)
    assert asked.status_code == 200
    assert "Cancel the 3 selected tasks?" in _text(asked)
    assert (await client.get_task(waiting[0])).state == "ready"  # only asked, so far

    canceled = await web.post("/dashboard/tasks/cancel", data={**chosen, "confirmed": "yes"})
    assert canceled.status_code == 303
    assert canceled.headers["location"] == f"/dashboard/tasks?{search}"
    notice = _notice((await web.get(canceled.headers["location"])).text)
    assert notice == "Canceled 2 tasks. Skipped 1: 1 already finished (succeeded or dead)."
    assert [(await client.get_task(i)).state for i in waiting] == ["canceled", "canceled",
                                                                   "ready"]

    # the same again changes nothing, and says so
    again = await web.post("/dashboard/tasks/cancel", data={**chosen, "confirmed": "yes"})
    assert _notice((await web.get(again.headers["location"])).text) == (
        "Nothing canceled. Skipped 3: 1 already finished (succeeded or dead), "
        "2 already canceled or asked to stop.")

    retried = await web.post("/dashboard/tasks/retry", data={**chosen, "confirmed": "yes"})
    assert _notice((await web.get(retried.headers["location"])).text) == (
        "Retried 1 dead task. Skipped 2: 2 not dead (retried already, never failed, or gone).")
    assert (await client.get_task(dead)).state == "ready"

    none = await web.post("/dashboard/tasks/cancel", data={"csrf": csrf, "search": search})
    assert none.status_code == 422
    assert "invalid selection: no task is selected: tick the tasks first" in _text(none)


async def test_cancel_all_matching_states_the_count_and_does_what_was_confirmed(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    evens = [(await client.enqueue(queue.full_name, "even", n)).id for n in range(0, 6, 2)]
    odd = await client.enqueue(queue.full_name, "odd", None)
    (running,) = await claim(pool, queue, limit=1)
    assert running.id == evens[0]
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    search = urlencode({"queue": queue.full_name, "task": "even"})

    asked = await web.post(
        "/dashboard/tasks/cancel", data={"csrf": csrf, "search": search, "all": "yes"})
    text = _text(asked)
    assert "Cancel the 3 tasks matching this search?" in text
    posted_ids = sorted(int(i) for i in re.findall(r'name="ids" value="(\d+)"', text))
    assert posted_ids == evens  # the confirmation posts exactly the tasks it counted
    late = await client.enqueue(queue.full_name, "even", None)  # matches, but after the count

    canceled = await web.post("/dashboard/tasks/cancel", data={
        "csrf": csrf, "search": search, "ids": [str(i) for i in posted_ids],
        "confirmed": "yes"})
    assert _notice((await web.get(canceled.headers["location"])).text) == (
        "Canceled 2 tasks; asked 1 running task to stop.")
    assert (await client.get_task(evens[0])).cancel_requested
    assert (await client.get_task(late.id)).state == "ready"
    assert (await client.get_task(odd.id)).state == "ready"

    nothing = await web.post("/dashboard/tasks/retry", data={
        "csrf": csrf, "search": urlencode({"queue": queue.full_name, "state": "dead"}),
        "all": "yes"})
    assert nothing.status_code == 303
    assert _notice((await web.get(nothing.headers["location"])).text) == (
        "Nothing to retry: no task matches this search.")


async def test_all_matching_takes_a_bounded_number_at_once_and_says_more_match(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    made = await client.enqueue_many(queue.full_name, [TaskRequest("t", None)] * (BULK_LIMIT + 2))
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    search = urlencode({"queue": queue.full_name})

    asked = _text(await web.post(
        "/dashboard/tasks/cancel", data={"csrf": csrf, "search": search, "all": "yes"}))
    assert f"Cancel the {BULK_LIMIT:,} newest tasks matching this search (more match" in asked
    ids = re.findall(r'name="ids" value="(\d+)"', asked)
    assert len(ids) == BULK_LIMIT
    canceled = await web.post("/dashboard/tasks/cancel", data={
        "csrf": csrf, "search": search, "ids": ids, "more": "yes", "confirmed": "yes"})
    assert _notice((await web.get(canceled.headers["location"])).text) == (
        f"Canceled {BULK_LIMIT:,} tasks. More tasks match: cancel all matching again for the "
        f"next {BULK_LIMIT:,}.")
    states = [(await client.get_task(task.id)).state for task in made[:3]]
    assert states == ["ready", "ready", "canceled"]  # the newest first


async def test_bulk_actions_are_refused_to_a_viewer_and_without_the_token(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", None)
    csrf = await sign_in(web, await make_key("viewer", [queue.namespace]))
    search = urlencode({"queue": queue.full_name})

    for action in ("cancel", "retry"):
        for form in ({"ids": str(task.id)}, {"all": "yes"}):
            refused = await web.post(f"/dashboard/tasks/{action}", data={
                "csrf": csrf, "search": search, "confirmed": "yes", **form})
            assert refused.status_code == 403, (action, form)
            assert "needs a key of role operator or higher" in _text(refused)
    web.cookies.clear()
    await sign_in(web, await make_key("operator", [queue.namespace]))
    forged = await web.post("/dashboard/tasks/cancel", data={
        "search": search, "ids": str(task.id), "confirmed": "yes"})
    assert forged.status_code == 403
    assert "This form is from an earlier session" in _text(forged)
    assert (await client.get_task(task.id)).state == "ready"
