"""The request rate per key (TASKQ_API_RATE_LIMIT) on the real server: a key over its rate is
answered 429 with Retry-After, writes nothing, holds no other key back, and gets through once
it has waited as long as Retry-After said."""

from __future__ import annotations

import asyncio
import json
import logging

import asyncpg
import httpx
import pytest

from taskq import auth
from taskq.worker.logs import JsonFormatter
from tests.api.conftest import MakeKey, running_api
from tests.api.helpers import bearer, problem, queue_path, stored_tasks
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue


async def test_a_key_over_its_rate_gets_429_then_gets_through_after_retry_after(
    dsn: str,
    pool: asyncpg.Pool,
    make_queue: MakeQueue,
    make_key: MakeKey,
    openapi: OpenApiChecker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_queue()
    busy = await make_key("operator", [queue.namespace])
    other = await make_key("viewer", [queue.namespace])
    enqueue = {"task_name": "t"}
    async with (
        running_api(dsn, rate_limit=1.0, rate_burst=2) as api,
        httpx.AsyncClient(base_url=api.url) as http,
    ):
        statuses = []
        with caplog.at_level(logging.INFO, logger="taskq_api.access"):
            # a burst of 2, then a token a second: back-to-back requests meet a 429 at once
            for _ in range(10):
                response = await http.post(
                    queue_path(queue, "/tasks"), headers=bearer(busy), json=enqueue
                )
                statuses.append(response.status_code)
                if response.status_code != 201:
                    break
        limited = openapi.check(response)
        other_reads = await http.get(queue_path(queue), headers=bearer(other))
        await asyncio.sleep(int(limited.headers["retry-after"]))
        again = await http.post(queue_path(queue, "/tasks"), headers=bearer(busy), json=enqueue)

    assert statuses[-1] == 429 and statuses.count(201) >= 2, statuses
    body = problem(limited, 429)
    assert body["type"] == "/problems/rate-limited"
    assert "limit of 1 requests/s per key" in body["detail"] and "bursts of 2" in body["detail"]
    assert limited.headers["retry-after"] == "1"
    assert other_reads.status_code == 200
    assert again.status_code == 201
    # the refused request wrote nothing: one task per 201
    assert len(await stored_tasks(pool, queue)) == statuses.count(201) + 1
    [refused] = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "taskq_api.access" and r.__dict__.get("status") == 429
    ]
    assert refused["key_prefix"] == auth.parse_prefix(busy)


async def test_without_a_rate_limit_a_key_is_never_held_back(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("viewer", [queue.namespace]))
    responses = await asyncio.gather(*(http.get(queue_path(queue), headers=key) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
