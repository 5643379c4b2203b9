"""Tasks over HTTP: enqueue one or a batch, read one (with its history, or waiting for it),
cancel, retry. Each response is checked against the server's /openapi.json, and what the
database holds against what was sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from taskq.client import Client
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, problem, queue_path, stored_tasks
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish, task_row


async def test_enqueue_answers_201_with_the_task_and_stores_exactly_it(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    body = {
        "task_name": "send_receipt",
        "payload": {"order": 42, "lines": [1, 2.5, None, "x"], "nested": {"ok": True}},
        "priority": "high",
        "idempotency_key": "receipt-42",
        "correlation_id": "checkout-7",
        "max_attempts": 7,
        "timeout_seconds": 12.5,
    }
    response = openapi.check(await http.post(queue_path(queue, "/tasks"), json=body, headers=key))

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/v1/tasks/{task['id']}"
    assert task["queue"] == queue.full_name
    assert task["state"] == "ready"
    assert task["payload"] == body["payload"]
    assert task["priority"] == 75
    assert task["attempt_history"] == []
    assert task["payload_hidden"] is False
    assert await stored_tasks(pool, queue) == [{
        "id": task["id"], "task_name": "send_receipt", "payload": body["payload"],
        "priority": 75, "idempotency_key": "receipt-42", "correlation_id": "checkout-7",
        "max_attempts": 7, "timeout_s": 12.5, "state": "ready",
    }]


async def test_the_same_idempotency_key_answers_200_with_the_existing_task(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    first = await http.post(queue_path(queue, "/tasks"), headers=key,
                            json={"task_name": "t", "payload": 1, "idempotency_key": "k"})
    again = openapi.check(await http.post(
        queue_path(queue, "/tasks"), headers=key,
        json={"task_name": "t", "payload": 2, "idempotency_key": "k"}))

    assert first.status_code == 201
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"] == 1  # the existing task, not the second request
    assert again.headers["location"] == first.headers["location"]
    assert [t["payload"] for t in await stored_tasks(pool, queue)] == [1]


async def test_delay_and_run_at_schedule_the_task(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    later = datetime.now(UTC) + timedelta(hours=1)
    delayed = await http.post(queue_path(queue, "/tasks"), headers=key,
                              json={"task_name": "t", "delay_seconds": 600})
    at = await http.post(queue_path(queue, "/tasks"), headers=key,
                         json={"task_name": "t", "run_at": later.isoformat()})
    past = await http.post(queue_path(queue, "/tasks"), headers=key,
                           json={"task_name": "t", "run_at": "2001-01-01T00:00:00+00:00"})

    assert [r.status_code for r in (delayed, at, past)] == [201, 201, 201]
    assert [r.json()["state"] for r in (delayed, at, past)] == ["scheduled", "scheduled", "ready"]
    row = await task_row(pool, at.json()["id"])
    assert abs((row["run_at"] - later).total_seconds()) < 5
    row = await task_row(pool, delayed.json()["id"])
    assert 590 < (row["run_at"] - row["created_at"]).total_seconds() <= 600


async def test_a_batch_with_run_at_and_one_without_answer_alike(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    """A batch with run_at takes the declared way, one without the lean one (bodyroute.py)."""
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    later = datetime.now(UTC) + timedelta(hours=1)
    lean = await http.post(queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": [
        {"task_name": "t", "delay_seconds": 600}, {"task_name": "t", "priority": "high"}]})
    declared = await http.post(queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": [
        {"task_name": "t", "run_at": later.isoformat()}, {"task_name": "t"}]})

    assert [r.status_code for r in (lean, declared)] == [201, 201]
    for response in (lean, declared):
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["created"] == 2 and [t["created"] for t in body["tasks"]] == [True, True]
    first, second = (t["id"] for t in lean.json()["tasks"])
    row = await task_row(pool, first)
    assert 590 < (row["run_at"] - row["created_at"]).total_seconds() <= 600
    assert (await task_row(pool, second))["priority"] == 75
    row = await task_row(pool, declared.json()["tasks"][0]["id"])
    assert abs((row["run_at"] - later).total_seconds()) < 5


async def test_a_batch_is_enqueued_whole_in_order(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    tasks = [{"task_name": "n", "payload": {"i": i}} for i in range(10_000)]
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": tasks}))

    assert response.status_code == 201, response.text[:500]
    result = response.json()
    assert result["created"] == 10_000
    assert all(item["created"] for item in result["tasks"])
    stored = await stored_tasks(pool, queue)
    assert [t["id"] for t in stored] == [item["id"] for item in result["tasks"]]
    assert [t["payload"] for t in stored] == [t["payload"] for t in tasks]


async def test_a_batch_with_keys_reports_which_tasks_existed(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    first = await http.post(queue_path(queue, "/tasks"), headers=key,
                            json={"task_name": "t", "idempotency_key": "a"})
    response = await http.post(queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": [
        {"task_name": "t", "idempotency_key": "a"}, {"task_name": "t", "idempotency_key": "b"},
    ]})

    assert response.status_code == 201
    assert response.json()["created"] == 1
    assert response.json()["tasks"][0] == {"id": first.json()["id"], "created": False}
    assert response.json()["tasks"][1]["created"] is True
    assert len(await stored_tasks(pool, queue)) == 2


async def test_a_batch_with_bad_items_stores_nothing_and_names_each_item_and_field(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    tasks: list[dict[str, Any]] = [{"task_name": "ok"} for _ in range(100)]
    tasks[3] = {"task_name": "ok", "priority": 101}
    tasks[57] = {"task_name": "", "max_attempts": "3"}
    tasks[99] = {"task_name": "ok", "delay": 5}
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": tasks}))

    body = problem(response, 422)
    assert body["type"] == "/problems/invalid-request"
    assert [e["pointer"] for e in body["errors"]] == [
        "#/tasks/3/priority", "#/tasks/57/task_name", "#/tasks/57/max_attempts",
        "#/tasks/99/delay",
    ]
    assert "0..100" in body["errors"][0]["detail"]
    assert "remove it" in body["errors"][3]["detail"]
    assert await stored_tasks(pool, queue) == []


async def test_a_batch_failing_in_the_database_stores_nothing(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    """A payload that is valid for pydantic but not JSON for taskq (NaN), found while the batch
    is written: the transaction is rolled back, and the error names the item."""
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    items = ['{"task_name": "ok", "payload": 1}'] * 200
    items[150] = '{"task_name": "ok", "payload": NaN}'
    response = await http.post(
        queue_path(queue, "/tasks:batch"), headers={**key, "content-type": "application/json"},
        content='{"tasks": [' + ",".join(items) + "]}")

    body = problem(response, 422)
    assert body["errors"][0]["pointer"] == "#/tasks/150/payload"
    assert await stored_tasks(pool, queue) == []


async def test_over_10000_tasks_in_a_batch_is_refused(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    response = await http.post(queue_path(queue, "/tasks:batch"), headers=key,
                               json={"tasks": [{"task_name": "t"}] * 10_001})
    body = problem(response, 422)
    assert body["errors"][0]["pointer"] == "#/tasks"
    assert "10000" in body["errors"][0]["detail"]
    empty = await http.post(queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": []})
    assert problem(empty, 422)["errors"][0]["pointer"] == "#/tasks"
    assert await stored_tasks(pool, queue) == []


async def test_a_task_shows_its_attempts_history(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue(max_attempts=3)
    key = bearer(await make_key("viewer", [queue.namespace], reads_payloads=True))
    writer = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=writer,
                              json={"task_name": "t", "payload": {"a": 1}})
    task_id = created.json()["id"]
    [first] = await claim(pool, queue)
    await finish(pool, first, "failed")
    await pool.execute("UPDATE taskq.tasks SET run_at = now() WHERE id = $1", task_id)
    [second] = await claim(pool, queue)
    await finish(pool, second, "succeeded", result={"sent": True})

    response = openapi.check(await http.get(f"/v1/tasks/{task_id}", headers=key))

    assert response.status_code == 200
    task = response.json()
    assert task["state"] == "succeeded"
    assert task["payload"] == {"a": 1}
    assert task["result"] == {"sent": True}
    assert [(a["attempt"], a["outcome"]) for a in task["attempt_history"]] == [
        (1, "failed"), (2, "succeeded")]
    assert task["attempt_history"][0]["error"]["message"] == "failed on purpose"


async def test_a_viewer_key_without_payload_rights_sees_no_payload_or_result(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    writer = bearer(await make_key("operator", [queue.namespace]))
    viewer = bearer(await make_key("viewer", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=writer,
                              json={"task_name": "t", "payload": {"card": "4111"}})
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "succeeded", result={"secret": "s3"})

    response = openapi.check(await http.get(f"/v1/tasks/{created.json()['id']}", headers=viewer))

    task = response.json()
    assert response.status_code == 200
    assert (task["payload"], task["result"], task["payload_hidden"]) == (None, None, True)
    assert "4111" not in response.text
    assert "s3" not in response.text
    assert task["state"] == "succeeded"  # everything else is there


async def test_waiting_returns_once_the_task_finishes(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    task_id = created.json()["id"]
    waiting = asyncio.create_task(http.get(f"/v1/tasks/{task_id}?wait=5s", headers=key))
    [claimed] = await claim(pool, queue)
    await asyncio.sleep(0.1)  # let the request reach the server and start waiting
    assert not waiting.done()
    await finish(pool, claimed, "succeeded", result=[1, 2])

    response = openapi.check(await waiting)

    assert response.status_code == 200
    assert response.json()["state"] == "succeeded"
    assert response.json()["result"] == [1, 2]


async def test_a_wait_that_passes_answers_with_the_unfinished_task(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    for wait in ("150ms", "0.2", "0.1s"):
        response = await http.get(f"/v1/tasks/{created.json()['id']}",
                                  params={"wait": wait}, headers=key)
        assert response.status_code == 200
        assert response.json()["state"] == "ready"


async def test_waits_longer_than_the_servers_limit_or_malformed_are_refused(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    path = f"/v1/tasks/{created.json()['id']}"
    for wait in ("6s", "1h", "-1s", "soon", "1e3"):
        body = problem(openapi.check(await http.get(path, params={"wait": wait}, headers=key)),
                       422)
        assert body["errors"][0]["parameter"] == "wait", (wait, body)


async def test_cancel_a_waiting_task_then_again(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    path = f"/v1/tasks/{created.json()['id']}/cancel"

    first = openapi.check(await http.post(path, headers=key))
    again = openapi.check(await http.post(path, headers=key))

    assert (first.status_code, first.json()["state"]) == (200, "canceled")
    assert (again.status_code, again.json()["state"]) == (200, "canceled")
    assert (await task_row(pool, created.json()["id"]))["state"] == "canceled"


async def test_cancel_a_running_task_asks_it_to_stop(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    await claim(pool, queue)

    response = openapi.check(
        await http.post(f"/v1/tasks/{created.json()['id']}/cancel", headers=key))

    assert response.status_code == 202
    assert (response.json()["state"], response.json()["cancel_requested"]) == ("running", True)


async def test_cancel_a_finished_task_is_a_conflict(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "succeeded")

    response = openapi.check(
        await http.post(f"/v1/tasks/{created.json()['id']}/cancel", headers=key))

    body = problem(response, 409)
    assert "succeeded" in body["detail"]
    assert (await task_row(pool, created.json()["id"]))["state"] == "succeeded"


async def test_retry_runs_a_dead_task_again(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue(max_attempts=1)
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    task_id = created.json()["id"]
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")
    assert (await task_row(pool, task_id))["state"] == "dead"

    response = openapi.check(await http.post(f"/v1/tasks/{task_id}/retry", headers=key))
    again = openapi.check(await http.post(f"/v1/tasks/{task_id}/retry", headers=key))

    assert response.status_code == 200
    assert response.json()["state"] == "ready"
    assert [a["outcome"] for a in response.json()["attempt_history"]] == ["failed"]
    body = problem(again, 409)
    assert "ready" in body["detail"]
    assert (await task_row(pool, task_id))["state"] == "ready"


async def test_retry_is_a_conflict_when_a_newer_task_holds_the_key(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue(max_attempts=1)
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key,
                              json={"task_name": "t", "idempotency_key": "once"})
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")
    newer = await client.enqueue(queue.full_name, "t", idempotency_key="once")

    response = await http.post(f"/v1/tasks/{created.json()['id']}/retry", headers=key)

    assert "idempotency key" in problem(response, 409)["detail"]
    assert (await task_row(pool, created.json()["id"]))["state"] == "dead"
    assert (await task_row(pool, newer.id))["state"] == "ready"


async def test_unknown_tasks_are_404(
    http: httpx.AsyncClient, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("admin", None))
    for response in (
        await http.get("/v1/tasks/999999999", headers=key),
        await http.post("/v1/tasks/999999999/cancel", headers=key),
        await http.post("/v1/tasks/999999999/retry", headers=key),
    ):
        body = problem(openapi.check(response), 404)
        assert body["type"] == "/problems/unknown-task"
