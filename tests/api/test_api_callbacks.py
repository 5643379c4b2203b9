"""A task's callback URL given at enqueue through the API (docs/webhooks.md): kept with the
task over REST and gRPC, one or a batch; a URL of the wrong shape is refused naming it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import grpc
import httpx
import pytest

from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, grpc_key, grpc_refusal, problem, queue_path
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

if TYPE_CHECKING:
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

URL = "https://hooks.example/orders/done"


async def _callbacks(pool: asyncpg.Pool, queue_id: int) -> list[str | None]:
    rows = await pool.fetch(
        "SELECT callback_url FROM taskq.tasks WHERE queue_id = $1 ORDER BY id", queue_id)
    return [row["callback_url"] for row in rows]


async def test_rest_keeps_each_tasks_callback_url(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    single = openapi.check(await http.post(
        queue_path(queue, "/tasks"), headers=key, json={"task_name": "t", "callback_url": URL}))
    assert single.status_code == 201, single.text
    batch = await http.post(queue_path(queue, "/tasks:batch"), headers=key, json={
        "tasks": [{"task_name": "t", "callback_url": URL + "?n=2"}, {"task_name": "t"}]})
    assert batch.status_code == 201, batch.text
    assert await _callbacks(pool, queue.id) == [URL, URL + "?n=2", None]


async def test_rest_refuses_a_callback_url_of_the_wrong_shape(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks:batch"), headers=key,
        json={"tasks": [{"task_name": "t"}, {"task_name": "t", "callback_url": "ftp://x/y"}]}))
    body = problem(response, 422)
    assert [e["pointer"] for e in body["errors"]] == ["#/tasks/1/callback_url"]
    assert await _callbacks(pool, queue.id) == []


async def test_grpc_keeps_the_callback_url_and_names_a_bad_one(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    await grpc_stub.Enqueue(pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name,
        task=pb.TaskSubmission(task_name="t", payload_json="{}", callback_url=URL)),
        metadata=key)
    assert await _callbacks(pool, queue.id) == [URL]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
            namespace=queue.namespace, name=queue.name, tasks=[
                pb.TaskSubmission(task_name="t", payload_json="{}"),
                pb.TaskSubmission(task_name="t", payload_json="{}", callback_url="mailto:x"),
            ]), metadata=key)
    assert "tasks[1].callback_url" in grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
    assert await _callbacks(pool, queue.id) == [URL]


async def test_a_tasks_callback_url_is_shown_to_keys_that_read_payloads(
    http: httpx.AsyncClient, grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey,
    openapi: OpenApiChecker,
) -> None:
    """A callback URL can carry a token: it is shown, like the payload, only to keys that may
    read payloads."""
    queue = await make_queue()
    operator = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(
        queue_path(queue, "/tasks"), headers=operator, json={"task_name": "t", "callback_url": URL})
    task_id = created.json()["id"]
    viewer = await make_key("viewer", [queue.namespace])
    shown = openapi.check(await http.get(f"/v1/tasks/{task_id}", headers=operator))
    hidden = openapi.check(await http.get(f"/v1/tasks/{task_id}", headers=bearer(viewer)))
    assert shown.json()["callback_url"] == URL
    assert (hidden.json()["callback_url"], hidden.json()["payload_hidden"]) == (None, True)
    listed = await http.get("/v1/tasks", headers=operator, params={"queue": queue.full_name})
    assert [item["callback_url"] for item in listed.json()["items"]] == [URL]
    message = await grpc_stub.GetTask(pb.GetTaskRequest(task_id=task_id),
                                      metadata=grpc_key(await make_key("operator", None)))
    assert message.HasField("callback_url") and message.callback_url == URL
    message = await grpc_stub.GetTask(pb.GetTaskRequest(task_id=task_id), metadata=grpc_key(viewer))
    assert not message.HasField("callback_url")
