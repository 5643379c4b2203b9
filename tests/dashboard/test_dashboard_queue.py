"""A queue's page: settings, counts (live), dead letters and replay (one, selected, all),
pause and resume; a viewer sees no action and the server refuses one anyway. Over real
sockets, on the real server and database."""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime

import asyncpg
import httpx

from taskq.client import Client
from taskq.models import PoolReport, QueueInfo, ScalingDecision
from taskq.store.pools import forget_worker_pool, record_worker_pool
from tests.conftest import MakeQueue
from tests.dashboard.conftest import MakeKey, server_events, sign_in
from tests.integration.helpers import claim, finish


async def _dead(client: Client, pool: asyncpg.Pool, queue: QueueInfo, n: int) -> list[int]:
    for i in range(n):
        await client.enqueue(queue.full_name, "charge", {"i": i})
    ids = []
    for task in await claim(pool, queue, limit=n):
        await finish(pool, task, "failed", error={"type": "CardDeclined", "message": f"#{task.id}"})
        ids.append(task.id)
    return ids


async def test_the_queue_page_shows_settings_counts_and_dead_letters_with_their_errors(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1, concurrency_limit=7)
    dead = await _dead(client, pool, queue, 2)
    await sign_in(web, await make_key("operator", [queue.namespace]))

    page = (await web.get(f"/dashboard/queues/{queue.full_name}")).text

    assert f"<h1>Queue {queue.full_name}</h1>" in page
    assert '<dt>concurrency_limit</dt><dd>7</dd>' in page
    assert '<dd data-count="dead">2</dd>' in page
    for task_id in dead:
        assert f"CardDeclined: #{task_id}" in page
    assert "Over the last 61 minutes: 0 succeeded and 2 dead" in page  # the throughput chart
    assert '<rect class="dead"' in page
    assert "No task succeeded in the last 61 minutes." in page  # the wait chart
    assert "Worker pools" not in page  # no operator recorded any: absent, not broken
    for action in ("Pause", "Replay selected", "Replay all", f"Replay task {dead[0]}"):
        assert action in page


async def test_replay_one_selected_and_all_after_confirming(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    a, b, c, d = await _dead(client, pool, queue, 4)
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    replay = f"/dashboard/queues/{queue.full_name}/replay"

    asked = await web.post(replay, data={"csrf": csrf, "ids": [str(a), str(b)]})
    assert asked.status_code == 200
    assert "Replay 2 selected dead tasks? They run again." in asked.text
    assert (await client.get_task(a)).state == "dead"  # not before it is confirmed

    one = await web.post(replay, data={"csrf": csrf, "ids": str(a), "confirmed": "yes"})
    selected = await web.post(
        replay, data={"csrf": csrf, "ids": [str(b), str(c)], "confirmed": "yes"}
    )
    assert one.status_code == selected.status_code == 303
    assert one.headers["location"] == f"/dashboard/queues/{queue.full_name}"
    shown = (await web.get(one.headers["location"])).text
    assert "Replayed 2 dead tasks." in shown  # the last action's notice, once
    assert "Replayed" not in (await web.get(one.headers["location"])).text
    assert [(await client.get_task(i)).state for i in (a, b, c, d)] == [
        "ready", "ready", "ready", "dead"]

    every = await web.post(replay, data={"csrf": csrf, "all": "yes", "confirmed": "yes"})
    assert every.status_code == 303
    assert (await client.get_task(d)).state == "ready"

    nothing = await web.post(replay, data={"csrf": csrf, "confirmed": "yes"})
    assert nothing.status_code == 422
    assert "invalid selection: no dead letter is selected" in nothing.text
    not_dead = await web.post(replay, data={"csrf": csrf, "ids": str(a), "confirmed": "yes"})
    assert not_dead.status_code == 422
    assert f"task {a} is ready, not dead" in not_dead.text


async def test_pause_after_confirming_and_resume(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    base = f"/dashboard/queues/{queue.full_name}"

    asked = await web.post(f"{base}/pause", data={"csrf": csrf})
    assert "Workers stop claiming its tasks" in asked.text
    assert not (await client.get_queue(queue.full_name)).settings.paused
    paused = await web.post(f"{base}/pause", data={"csrf": csrf, "confirmed": "yes"})
    assert paused.status_code == 303
    assert (await client.get_queue(queue.full_name)).settings.paused
    page = (await web.get(base)).text
    assert "Paused " in page
    assert ">Resume</button>" in page

    resumed = await web.post(f"{base}/resume", data={"csrf": csrf})
    assert resumed.status_code == 303
    assert not (await client.get_queue(queue.full_name)).settings.paused


async def test_a_viewer_sees_no_action_and_the_server_refuses_each(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    (dead,) = await _dead(client, pool, queue, 1)
    csrf = await sign_in(web, await make_key("viewer", [queue.namespace]))
    base = f"/dashboard/queues/{queue.full_name}"

    page = (await web.get(base)).text
    assert f"CardDeclined: #{dead}" in page  # a viewer reads
    for action in ("Pause", "Resume", "Replay"):
        assert f">{action}" not in page
    assert 'name="ids"' not in page

    for path, data in (
        ("/pause", {"confirmed": "yes"}),
        ("/resume", {}),
        ("/replay", {"ids": str(dead), "confirmed": "yes"}),
        ("/replay", {"all": "yes", "confirmed": "yes"}),
    ):
        refused = await web.post(base + path, data={"csrf": csrf, **data})
        assert refused.status_code == 403, path
        assert "needs a key of role operator or higher; this key" in refused.text
    assert not (await client.get_queue(queue.full_name)).settings.paused
    assert (await client.get_task(dead)).state == "dead"


async def test_actions_without_the_sessions_token_are_refused(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    await sign_in(web, await make_key("admin", None))
    base = f"/dashboard/queues/{queue.full_name}"

    for data in ({"confirmed": "yes"}, {"csrf": "forged", "confirmed": "yes"}):
        refused = await web.post(f"{base}/pause", data=data)
        assert refused.status_code == 403
        assert "This form is from an earlier session" in refused.text
    as_json = await web.post(f"{base}/pause", json={"confirmed": "yes"})
    assert as_json.status_code == 400
    assert not (await client.get_queue(queue.full_name)).settings.paused


async def test_a_queue_outside_the_keys_namespaces_is_refused(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue,
) -> None:
    mine, other = await make_queue(), await make_queue()
    await sign_in(web, await make_key("operator", [mine.namespace]))

    refused = await web.get(f"/dashboard/queues/{other.full_name}")
    unknown = await web.get(f"/dashboard/queues/{mine.namespace}/nope")

    assert refused.status_code == 403
    assert f"does not reach namespace '{other.namespace}'" in html.unescape(refused.text)
    assert unknown.status_code == 404
    assert "unknown queue" in unknown.text
    missing = await web.get("/dashboard/no/such/page")
    assert missing.status_code == 404
    assert "is not a page of the dashboard" in missing.text


async def test_the_queue_counts_arrive_live(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    await sign_in(web, await make_key("viewer", [queue.namespace]))
    readies: list[str] = []
    charts: list[str] = []

    async with web.stream("GET", f"/dashboard/events/queues/{queue.full_name}") as stream:
        async with asyncio.timeout(20):
            async for event, data in server_events(stream):
                if event == "swap" and data.startswith("queue-counts\n"):
                    readies.append(data.split('data-count="ready">')[1].split("<")[0])
                    if len(readies) == 1:
                        await client.enqueue(queue.full_name, "t", None)
                    else:
                        break
                elif event == "swap":
                    charts.append(data.partition("\n")[0])

    assert readies == ["0", "1"]
    # with the first counts, then every 30 s: the charts; the pools (none here) once, as they
    # change
    assert charts == ["pools", "throughput", "wait"]


async def test_the_pools_serving_the_queue_show_with_the_autoscalers_decisions(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    for n in range(3):
        await client.enqueue(queue.full_name, "t", {"n": n})
    for task in await claim(pool, queue, limit=3):
        await finish(pool, task, "succeeded")
    serving = PoolReport(
        namespace=queue.namespace, name="mailers", queues=(queue.name, "other"),
        autoscaling="Builtin", min_replicas=0, max_replicas=5, desired=3, replicas=3, ready=2,
    )
    decision = ScalingDecision(
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), from_replicas=0, to_replicas=3,
        reason="WakeFromZero", message="15 tasks (ready 15 + running 0) at 5 per replica need 3",
    )
    await record_worker_pool(client.pool, serving, [decision])
    await record_worker_pool(
        client.pool, serving.model_copy(update={"name": "elsewhere", "queues": ("x",)}), []
    )
    await sign_in(web, await make_key("viewer", [queue.namespace]))

    page = html.unescape((await web.get(f"/dashboard/queues/{queue.full_name}")).text)

    assert '<h2 id="worker-pools">Worker pools</h2>' in page
    assert f"{queue.namespace}/mailers" in page
    assert "elsewhere" not in page
    assert "2 ready of 3, 3 desired" in page
    assert "Builtin, 0 to 5" in page
    assert "0 → 3" in page
    assert "WakeFromZero" in page
    assert "at 5 per replica need 3" in page
    # the wait chart has the three tasks
    assert "succeeded tasks waited from due to start a median of" in page
    assert '<polyline class="p50"' in page
    await forget_worker_pool(client.pool, queue.namespace, "mailers")
    await forget_worker_pool(client.pool, queue.namespace, "elsewhere")
