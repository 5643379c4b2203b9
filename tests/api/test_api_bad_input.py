"""Bad input: malformed JSON, wrong types, unknown fields, huge bodies, payloads over the
queue's limit, injection strings. Each answer is a problem document naming the field and the
fix, never a stack trace, and the database holds exactly what was validly submitted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.conftest import MAX_BODY_BYTES, MakeKey
from tests.api.helpers import bearer, problem, queue_path, stored_tasks
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

INJECTIONS = [
    "'; DROP TABLE taskq.tasks; --",
    "\" OR \"1\"=\"1",
    "$1); SELECT pg_sleep(10); --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "é中文🙂\t\n\\",
]
BODY_ENDPOINTS = ["/tasks", "/tasks:batch", "/dead:replay"]


@pytest.fixture
async def writer(make_key: MakeKey, make_queue: MakeQueue) -> tuple[Any, dict[str, str]]:
    queue = await make_queue(payload_limit_bytes=1000)
    return queue, bearer(await make_key("operator", [queue.namespace]))


@pytest.mark.parametrize("suffix", BODY_ENDPOINTS)
@pytest.mark.parametrize("text", ['{"task_name": ', "{'task_name': 't'}", "nope", "{,}"])
async def test_malformed_json_is_400_and_says_where(
    suffix: str, text: str, writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    response = openapi.check(await http.post(
        queue_path(queue, suffix), content=text,
        headers={**key, "content-type": "application/json"}))

    body = problem(response, 400)
    assert body["type"] == "/problems/malformed-json"
    assert "not valid JSON" in body["detail"] and "at character" in body["detail"]
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize(("fields", "pointer", "fix"), [
    ({"task_name": 5}, "#/task_name", "valid string"),
    ({"task_name": ""}, "#/task_name", "at least 1 character"),
    ({"task_name": "x" * 201}, "#/task_name", "at most 200 characters"),
    ({"priority": True}, "#/priority", "integer 0..100"),
    ({"priority": "asap"}, "#/priority", "urgent, high, normal, low"),
    ({"priority": -1}, "#/priority", "0..100"),
    ({"max_attempts": "3"}, "#/max_attempts", "valid integer"),
    ({"max_attempts": 0}, "#/max_attempts", "greater than or equal to 1"),
    ({"delay_seconds": "10"}, "#/delay_seconds", "valid number"),
    ({"delay_seconds": -1}, "#/delay_seconds", "greater than or equal to 0"),
    ({"timeout_seconds": 0}, "#/timeout_seconds", "greater than 0"),
    ({"run_at": "tomorrow"}, "#/run_at", "datetime"),
    ({"run_at": "2030-01-01T00:00:00"}, "#/run_at", "timezone"),
    ({"idempotency_key": ""}, "#/idempotency_key", "at least 1 character"),
    ({"correlation_id": 7}, "#/correlation_id", "valid string"),
    ({"taskname": "t"}, "#/taskname", "remove it"),
    ({"delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"}, "#", "not both"),
])
async def test_wrong_types_and_values_name_the_field_and_the_fix(
    fields: dict[str, Any], pointer: str, fix: str, writer: tuple[Any, dict[str, str]],
    http: httpx.AsyncClient, pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks"), headers=key, json={"task_name": "t", **fields}))

    body = problem(response, 422)
    assert body["type"] == "/problems/invalid-request"
    [error] = body["errors"]
    assert error["pointer"] == pointer
    assert fix in error["detail"], error
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize("body", ["[1, 2]", "null", '"text"', "42", ""])
async def test_a_body_that_is_not_an_object_is_422_at_the_root(
    body: str, writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    response = await http.post(queue_path(queue, "/tasks"), content=body,
                               headers={**key, "content-type": "application/json"})
    assert problem(response, 422)["errors"][0]["pointer"] == "#"
    assert await stored_tasks(pool, queue) == []


async def test_a_body_that_is_not_json_is_415(
    writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks"), content="task_name=t",
        headers={**key, "content-type": "application/x-www-form-urlencoded"}))
    assert "Content-Type: application/json" in problem(response, 415)["detail"]
    assert await stored_tasks(pool, queue) == []


async def test_a_body_over_the_servers_limit_is_413(
    writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    tasks = [{"task_name": "t", "payload": "x" * 500}] * (MAX_BODY_BYTES // 500 + 10)
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": tasks}))

    body = problem(response, 413)
    assert body["type"] == "/problems/request-too-large"
    assert str(MAX_BODY_BYTES) in body["detail"]
    assert await stored_tasks(pool, queue) == []


async def test_a_streamed_body_is_cut_at_the_limit(
    writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
) -> None:
    """No Content-Length (chunked): the server counts while it reads."""
    queue, key = writer

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"tasks": ['
        for _ in range(MAX_BODY_BYTES // 1000 + 10):
            yield b'{"task_name": "t", "payload": "' + b"x" * 960 + b'"},'
        yield b'{"task_name": "t"}]}'

    response = await http.post(queue_path(queue, "/tasks:batch"), content=chunks(),
                               headers={**key, "content-type": "application/json"})

    assert "content-length" not in response.request.headers
    assert problem(response, 413)["type"] == "/problems/request-too-large"
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize("count", [1, 100])  # one task: the SQL function; 100: COPY
async def test_a_payload_over_the_queues_limit_is_413(
    count: int, writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    tasks = [{"task_name": "t", "payload": "small"} for _ in range(count)]
    tasks[-1]["payload"] = "y" * 2000
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks:batch"), headers=key, json={"tasks": tasks}))

    body = problem(response, 413)
    assert body["type"] == "/problems/payload-too-large"
    assert "1000" in body["detail"]
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize("text", INJECTIONS)
async def test_injection_strings_are_stored_verbatim(
    text: str, writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient,
    pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue, key = writer
    body = {"task_name": text, "payload": {text: [text]}, "idempotency_key": text,
            "correlation_id": text}
    response = openapi.check(await http.post(queue_path(queue, "/tasks"), headers=key, json=body))

    assert response.status_code == 201, response.text
    [stored] = await stored_tasks(pool, queue)
    assert (stored["task_name"], stored["payload"], stored["idempotency_key"],
            stored["correlation_id"]) == (text, {text: [text]}, text, text)
    fetched = await http.get(f"/v1/tasks/{stored['id']}", headers=key)
    assert fetched.json()["task_name"] == text
    assert await pool.fetchval("SELECT count(*) FROM taskq.queues") > 0  # nothing dropped


async def test_a_nul_character_which_postgres_cannot_store_is_422(
    writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    response = await http.post(queue_path(queue, "/tasks"), headers=key,
                               json={"task_name": "t", "payload": {"k": "a\u0000b"}})
    batch = await http.post(queue_path(queue, "/tasks:batch"), headers=key,
                            json={"tasks": [{"task_name": "t"}, {"task_name": "t",
                                                                 "payload": "\u0000"}]})
    [error] = problem(response, 422)["errors"]
    assert error["pointer"] == "#/payload"
    assert "U+0000" in error["detail"]
    assert problem(batch, 422)["errors"][0]["pointer"] == "#/tasks/1/payload"
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize(("path", "parameter"), [
    ("/v1/queues/t1'%3B%20DROP%20TABLE%20x/q", "namespace"),
    ("/v1/queues/UPPER/q", "namespace"),
    ("/v1/queues/ok/-bad-", "name"),
    ("/v1/queues/ok/" + "a" * 64, "name"),
    ("/v1/tasks/abc", "task_id"),
    ("/v1/tasks/0", "task_id"),
    ("/v1/tasks/9223372036854775808", "task_id"),
    ("/v1/tasks/1%20OR%201=1", "task_id"),
])
async def test_bad_path_parameters_are_422_naming_the_parameter(
    path: str, parameter: str, http: httpx.AsyncClient, make_key: MakeKey,
    openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("admin", None))
    response = openapi.check(await http.get(path, headers=key))
    [error] = problem(response, 422)["errors"]
    assert error["parameter"] == parameter
    if parameter != "task_id":
        assert "lowercase letters, digits or '-'" in error["detail"]


async def test_unknown_routes_and_methods_are_problems_too(
    http: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    key = bearer(await make_key("admin", None))
    missing = problem(await http.get("/v2/tasks/1", headers=key), 404)
    assert "/openapi.json" in missing["detail"]
    wrong = await http.delete("/v1/tasks/1", headers=key)
    assert "GET" in problem(wrong, 405)["detail"]
    assert wrong.headers["allow"]


async def test_the_database_holds_exactly_what_was_validly_submitted(
    writer: tuple[Any, dict[str, str]], http: httpx.AsyncClient, pool: asyncpg.Pool,
    make_key: MakeKey,
) -> None:
    queue, key = writer
    viewer = bearer(await make_key("viewer", [queue.namespace]))
    stranger = bearer(await make_key("operator", ["elsewhere"]))
    path, batch = queue_path(queue, "/tasks"), queue_path(queue, "/tasks:batch")
    attempts: list[tuple[str, dict[str, str], Any, bool]] = [
        (path, key, {"task_name": "a", "payload": {"n": 1}}, True),
        (path, {}, {"task_name": "no-key"}, False),
        (path, viewer, {"task_name": "viewer"}, False),
        (path, stranger, {"task_name": "stranger"}, False),
        (path, key, {"task_name": "bad", "priority": 1000}, False),
        (path, key, {"task_name": "big", "payload": "z" * 5000}, False),
        (batch, key, {"tasks": [{"task_name": "b", "payload": i} for i in range(3)]}, True),
        (batch, key, {"tasks": [{"task_name": "c"}, {"task_name": "c", "max_attempts": -1}]},
         False),
        (path, key, {"task_name": INJECTIONS[0], "payload": INJECTIONS[0]}, True),
        (path, key, {"task_name": "d", "idempotency_key": "k"}, True),
        (path, key, {"task_name": "d-again", "idempotency_key": "k"}, False),  # 200: existing
    ]
    for url, headers, body, valid in attempts:
        response = await http.post(url, headers=headers, json=body)
        assert (response.status_code == 201) is valid, (body, response.status_code)

    stored = await stored_tasks(pool, queue)

    assert [(t["task_name"], t["payload"]) for t in stored] == [
        ("a", {"n": 1}), ("b", 0), ("b", 1), ("b", 2), (INJECTIONS[0], INJECTIONS[0]),
        ("d", None),
    ]
    assert json.dumps([t["idempotency_key"] for t in stored]) == json.dumps(
        [None, None, None, None, None, "k"])


async def test_headers_over_the_limit_are_431(
    http: httpx.AsyncClient, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("admin", None))
    response = openapi.check(
        await http.get("/v1/queues", headers={**key, "X-Padding": "p" * 20_000}))
    body = problem(response, 431)
    assert body["type"] == "/problems/headers-too-large"
    assert "16384" in body["detail"]
