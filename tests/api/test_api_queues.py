"""Queues over HTTP: list, settings and counts, pause and resume, replaying dead letters."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from taskq.client import COUNT_CAP, Client
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, problem, queue_path, stored_tasks
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish


async def test_the_list_holds_the_queues_of_the_keys_namespaces_only(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    openapi: OpenApiChecker,
) -> None:
    mine, other = await make_queue(), await make_queue()
    sibling = await client.ensure_queue(f"{mine.namespace}/second")
    confined = bearer(await make_key("viewer", [mine.namespace]))
    everywhere = bearer(await make_key("viewer", None))

    response = openapi.check(await http.get("/v1/queues", headers=confined))
    every = openapi.check(await http.get("/v1/queues", headers=everywhere))

    assert response.status_code == 200
    assert [q["namespace"] + "/" + q["name"] for q in response.json()["queues"]] == [
        mine.full_name, sibling.full_name]
    names = {q["namespace"] + "/" + q["name"] for q in every.json()["queues"]}
    assert {mine.full_name, sibling.full_name, other.full_name} <= names
    assert response.json()["queues"][0]["settings"]["max_attempts"] == 3


async def test_a_queue_shows_its_settings_and_counts(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue(max_attempts=1, payload_limit_bytes=1000)
    for n in range(3):
        await client.enqueue(queue.full_name, "t", n)
    await client.enqueue(queue.full_name, "t", delay=3600)
    [running, failing] = await claim(pool, queue, limit=2)
    await finish(pool, failing, "failed")
    key = bearer(await make_key("viewer", [queue.namespace]))

    response = openapi.check(await http.get(queue_path(queue), headers=key))

    assert response.status_code == 200
    body = response.json()
    assert body["queue"] == queue.full_name
    assert body["settings"]["max_attempts"] == 1
    assert body["settings"]["payload_limit_bytes"] == 1000
    stats = body["stats"]
    assert (stats["ready"], stats["scheduled"], stats["running"], stats["dead"]) == (1, 1, 1, 1)
    assert stats["dead_last_minute"] == 1
    assert (stats["count_cap"], stats["capped"]) == (COUNT_CAP, [])  # exact counts
    assert running.id != failing.id


async def test_pause_and_resume_change_only_paused(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue(max_attempts=9, concurrency_limit=4)
    key = bearer(await make_key("operator", [queue.namespace]))

    paused = openapi.check(await http.post(queue_path(queue, "/pause"), headers=key))
    row = await pool.fetchrow("SELECT * FROM taskq.queues WHERE id = $1", queue.id)
    assert row is not None
    resumed = openapi.check(await http.post(queue_path(queue, "/resume"), headers=key))
    after = await pool.fetchrow("SELECT * FROM taskq.queues WHERE id = $1", queue.id)
    assert after is not None

    assert paused.status_code == 200
    assert paused.json()["settings"]["paused"] is True
    assert row["paused"] is True
    assert (row["max_attempts"], row["concurrency_limit"]) == (9, 4)
    assert resumed.json()["settings"]["paused"] is False
    assert after["paused"] is False
    assert (after["max_attempts"], after["concurrency_limit"]) == (9, 4)


async def test_pausing_an_unknown_queue_does_not_create_it(
    http: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("operator", ["nowhere"]))
    requests = [
        ("GET", "/v1/queues/nowhere/none", None),
        ("POST", "/v1/queues/nowhere/none/pause", None),
        ("POST", "/v1/queues/nowhere/none/resume", None),
        ("POST", "/v1/queues/nowhere/none/dead:replay", {"all": True}),
        ("POST", "/v1/queues/nowhere/none/tasks", {"task_name": "t"}),
        ("POST", "/v1/queues/nowhere/none/tasks:batch", {"tasks": [{"task_name": "t"}]}),
    ]
    for method, path, body in requests:
        response = openapi.check(await http.request(method, path, headers=key, json=body))
        assert problem(response, 404)["type"] == "/problems/unknown-queue", path
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.queues WHERE namespace = 'nowhere'") == 0


async def test_dead_replay_by_ids_and_all(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue(max_attempts=1)
    for n in range(3):
        await client.enqueue(queue.full_name, "t", n)
    claimed = await claim(pool, queue, limit=3)
    for task in claimed:
        await finish(pool, task, "failed")
    key = bearer(await make_key("operator", [queue.namespace]))

    one = openapi.check(await http.post(queue_path(queue, "/dead:replay"), headers=key,
                                        json={"ids": [claimed[0].id]}))
    rest = openapi.check(await http.post(queue_path(queue, "/dead:replay"), headers=key,
                                         json={"all": True}))

    assert one.json() == {"replayed": 1, "skipped": 0}
    assert rest.json() == {"replayed": 2, "skipped": 0}
    assert [t["state"] for t in await stored_tasks(pool, queue)] == ["ready"] * 3


async def test_dead_replay_needs_ids_or_all(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    neither: list[dict[str, Any]] = [{}, {"ids": [1], "all": True}, {"ids": []}, {"all": False}]
    for body in neither:
        response = openapi.check(
            await http.post(queue_path(queue, "/dead:replay"), headers=key, json=body))
        assert "ids" in problem(response, 422)["detail"]
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"ids": [0]}, "#/ids/0"), ({"ids": ["1"]}, "#/ids/0"), ({"all": "yes"}, "#/all")]
    for body, pointer in wrong:
        response = await http.post(queue_path(queue, "/dead:replay"), headers=key, json=body)
        assert problem(response, 422)["errors"][0]["pointer"] == pointer
    missing = await http.post(queue_path(queue, "/dead:replay"), headers=key)
    assert problem(missing, 422)["errors"][0]["pointer"] == "#"


async def test_replaying_an_id_that_is_not_dead_replays_nothing_and_names_it(
    http: httpx.AsyncClient, client: Client, make_queue: MakeQueue, make_key: MakeKey
) -> None:
    queue = await make_queue()
    ready = await client.enqueue(queue.full_name, "t")
    response = await http.post(
        f"/v1/queues/{queue.full_name}/dead:replay",
        json={"ids": [ready.id]},
        headers=bearer(await make_key("operator", [queue.namespace])),
    )
    body = problem(response, 422)
    assert f"task {ready.id} is ready, not dead" in body["detail"]
    assert body["errors"][0]["pointer"] == "#/ids"
    assert (await client.get_task(ready.id)).state == "ready"
