"""GET /v1/tasks: a queue's tasks newest first, filtered, a page at a time with a cursor.
Each answer is checked against the server's /openapi.json."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from taskq import TaskRequest
from taskq.client import Client
from taskq.models import QueueInfo
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, problem
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue


async def listing(
    http: httpx.AsyncClient, openapi: OpenApiChecker, key: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = openapi.check(await http.get("/v1/tasks", params=params, headers=key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def filled(client: Client, pool: asyncpg.Pool, queue: QueueInfo) -> list[int]:
    """12 tasks: names a/b alternating, correlation ids c0..c2, the first four dead; ids."""
    results = await client.enqueue_many(
        queue.full_name,
        [
            TaskRequest(
                "a" if n % 2 == 0 else "b", {"n": n}, correlation_id=f"c{n % 3}"
            )
            for n in range(12)
        ],
    )
    ids = [r.id for r in results]
    await pool.execute(
        "UPDATE taskq.tasks SET state = 'dead', finished_at = now(), "
        "error = '{\"m\": 1}' WHERE queue_id = $1 AND id = ANY($2)",
        queue.id,
        ids[:4],
    )
    return ids


async def test_filters_alone_and_combined(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace], reads_payloads=True))
    ids = await filled(client, pool, queue)
    newest_first = ids[::-1]

    async def found(**params: Any) -> list[int]:
        body = await listing(http, openapi, key, queue=queue.full_name, **params)
        return [item["id"] for item in body["items"]]

    assert await found() == newest_first
    assert await found(state="dead") == ids[:4][::-1]
    assert await found(state="ready") == ids[4:][::-1]
    assert await found(task="a") == newest_first[1::2]
    assert await found(correlation_id="c1") == [i for n, i in enumerate(ids) if n % 3 == 1][::-1]
    assert await found(state="dead", task="b") == [ids[3], ids[1]]
    assert await found(state="ready", task="a", correlation_id="c0") == [ids[6]]
    created = await pool.fetch(
        "SELECT id, created_at FROM taskq.tasks WHERE queue_id = $1 ORDER BY id", queue.id
    )
    moment = created[0]["created_at"]
    assert await found(created_after=moment.isoformat()) == newest_first
    assert await found(created_before=moment.isoformat()) == []
    later = (moment + timedelta(hours=1)).isoformat()
    assert await found(created_after=later) == []
    assert await found(created_before=later, state="dead") == ids[:4][::-1]
    body = await listing(http, openapi, key, queue=queue.full_name, limit=1)
    item = body["items"][0]
    assert item["payload"] == {"n": 11} and item["payload_hidden"] is False
    assert item["task_name"] == "b" and item["correlation_id"] == "c2"
    assert "attempt_history" not in item


async def test_pages_neither_repeat_nor_skip_while_tasks_are_enqueued(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace]))
    first = [r.id for r in await client.enqueue_many(
        queue.full_name, [TaskRequest("t", n) for n in range(23)]
    )]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"queue": queue.full_name, "limit": 5}
        if cursor is not None:
            params["cursor"] = cursor
        body = await listing(http, openapi, key, **params)
        pages += 1
        seen.extend(item["id"] for item in body["items"])
        await client.enqueue_many(queue.full_name, [TaskRequest("t", "late")] * 3)
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == 5
    assert seen == first[::-1]
    assert pages == 5  # 5, 5, 5, 5, 3: the last page says so itself


async def test_limit_default_and_bounds(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace]))
    await client.enqueue_many(queue.full_name, [TaskRequest("t", n) for n in range(501)])
    body = await listing(http, openapi, key, queue=queue.full_name)
    assert len(body["items"]) == 100 and body["next_cursor"]
    body = await listing(http, openapi, key, queue=queue.full_name, limit=500)
    assert len(body["items"]) == 500 and body["next_cursor"]
    body = await listing(http, openapi, key, queue=queue.full_name, limit=500,
                         cursor=body["next_cursor"])
    assert len(body["items"]) == 1 and body["next_cursor"] is None
    for limit in ("0", "501", "-1", "ten"):
        response = openapi.check(await http.get(
            "/v1/tasks", params={"queue": queue.full_name, "limit": limit}, headers=key
        ))
        assert problem(response, 422)["errors"][0]["parameter"] == "limit", limit


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({}, "queue", "across queues"),
        ({"queue": "no-slash"}, "queue", "NAMESPACE/NAME"),
        ({"queue": "Bad/Name!"}, "queue", "lowercase"),
        ({"state": "done"}, "state", "ready"),
        ({"cursor": "not a cursor"}, "cursor", "next_cursor"),
        ({"cursor": "LTE"}, "cursor", "next_cursor"),  # base64 of "-1"
        ({"created_after": "yesterday"}, "created_after", "datetime"),
        ({"created_before": "2024-01-01T00:00:00"}, "created_before", "timezone"),
        (
            {"created_after": "2024-02-01T00:00:00Z", "created_before": "2024-01-01T00:00:00Z"},
            "created_after",
            "swap",
        ),
        ({"task": "x" * 201}, "task", "200"),
    ],
)
async def test_bad_parameters_are_422_naming_the_parameter(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
    openapi: OpenApiChecker, params: dict[str, str], parameter: str, words: str,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace]))
    if parameter != "queue":
        params = {"queue": queue.full_name, **params}
    response = openapi.check(await http.get("/v1/tasks", params=params, headers=key))
    body = problem(response, 422)
    [error] = body["errors"]
    assert error["parameter"] == parameter, body
    assert words in error["detail"], body


async def test_another_namespace_is_403_and_an_unknown_queue_404(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    other = bearer(await make_key("admin", ["elsewhere"]))
    response = openapi.check(await http.get(
        "/v1/tasks", params={"queue": queue.full_name}, headers=other
    ))
    problem(response, 403)
    mine = bearer(await make_key("viewer", [queue.namespace]))
    response = openapi.check(await http.get(
        "/v1/tasks", params={"queue": f"{queue.namespace}/nope"}, headers=mine
    ))
    assert problem(response, 404)["type"] == "/problems/unknown-queue"
    response = openapi.check(await http.get("/v1/tasks", params={"queue": queue.full_name}))
    problem(response, 401)


async def test_a_viewer_without_payload_rights_sees_null_payloads(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    await filled(client, pool, queue)
    await pool.execute(
        "UPDATE taskq.tasks SET state = 'succeeded', finished_at = now(), error = NULL, "
        "worker_id = 'w', attempt_id = gen_random_uuid(), result = '{\"r\": 1}' "
        "WHERE queue_id = $1 AND state = 'dead'",
        queue.id,
    )
    viewer = bearer(await make_key("viewer", [queue.namespace]))
    body = await listing(http, openapi, viewer, queue=queue.full_name, state="succeeded")
    assert len(body["items"]) == 4
    assert all(i["payload"] is None and i["result"] is None for i in body["items"])
    assert all(i["payload_hidden"] is True for i in body["items"])
    reader = bearer(await make_key("viewer", [queue.namespace], reads_payloads=True))
    body = await listing(http, openapi, reader, queue=queue.full_name, state="succeeded")
    assert all(i["result"] == {"r": 1} and i["payload"] for i in body["items"])



async def test_error_contains_matches_the_last_errors_text_literally(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, client: Client,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace]))
    ids = await filled(client, pool, queue)
    await pool.execute(
        "UPDATE taskq.tasks SET error = jsonb_build_object('type', 'KeyError', "
        "'message', 'sku_' || id || ' 100%') WHERE queue_id = $1 AND id = ANY($2)",
        queue.id, ids[:2],
    )

    body = await listing(http, openapi, key, queue=queue.full_name, error_contains="KEYERROR")
    assert [t["id"] for t in body["items"]] == ids[:2][::-1]
    assert (body["next_cursor"], body["partial"]) == (None, False)
    exact = await listing(http, openapi, key, queue=queue.full_name,
                          error_contains=f"sku_{ids[0]} 100%")
    assert [t["id"] for t in exact["items"]] == [ids[0]]
    # '%' and '_' are no wildcards; an error that is no {type, message} object is its JSON
    assert (await listing(http, openapi, key, queue=queue.full_name,
                          error_contains="sku%"))["items"] == []
    other = await listing(http, openapi, key, queue=queue.full_name, error_contains='"m": 1',
                          state="dead", limit=1)
    assert [t["id"] for t in other["items"]] == [ids[3]]
    assert other["next_cursor"] and not other["partial"]

    blank = await http.get("/v1/tasks", params={"queue": queue.full_name,
                                                "error_contains": " "}, headers=key)
    assert problem(openapi.check(blank), 422)["detail"].startswith("invalid error_contains: ")
