"""A caller's trace continues through the API (docs/tracing.md): the W3C `traceparent` of an
HTTP request or gRPC call is the parent of what the task keeps, so its worker's `process`
span joins the caller's trace. An invalid one is ignored, never a reason to refuse."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import asyncpg
import httpx

from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, grpc_key, queue_path
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

if TYPE_CHECKING:
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _trace_id(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


async def _stored(pool: asyncpg.Pool, task_ids: list[int]) -> list[str | None]:
    rows = await pool.fetch(
        "SELECT traceparent FROM taskq.tasks WHERE id = ANY($1) ORDER BY id", task_ids)
    return [row["traceparent"] for row in rows]


async def test_an_enqueue_continues_the_callers_trace(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    headers = bearer(await make_key("operator", [queue.namespace])) | {"traceparent": CALLER}
    response = openapi.check(await http.post(
        queue_path(queue, "/tasks"), json={"task_name": "t"}, headers=headers))
    assert response.status_code == 201, response.text
    task = response.json()
    # the caller's context itself, or (when the server traces) its send span's, in that trace
    assert _trace_id(task["traceparent"]) == TRACE_ID
    assert await _stored(pool, [task["id"]]) == [task["traceparent"]]


async def test_a_batch_continues_the_callers_trace(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    headers = bearer(await make_key("operator", [queue.namespace])) | {"traceparent": CALLER}
    response = await http.post(queue_path(queue, "/tasks:batch"), headers=headers,
                               json={"tasks": [{"task_name": "a"}, {"task_name": "b"}]})
    assert response.status_code == 201, response.text
    stored = await _stored(pool, [t["id"] for t in response.json()["tasks"]])
    assert [_trace_id(t) for t in stored] == [TRACE_ID, TRACE_ID]


async def test_an_invalid_traceparent_is_ignored(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    invalid = [
        "not-a-trace", f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", CALLER + "-extra",
    ]
    for header in invalid:
        response = await http.post(queue_path(queue, "/tasks"), json={"task_name": "t"},
                                   headers=key | {"traceparent": header})
        assert response.status_code == 201, (header, response.text)
        (stored,) = await _stored(pool, [response.json()["id"]])
        assert _trace_id(stored) != TRACE_ID, header


async def test_a_later_versions_traceparent_keeps_its_first_four_fields(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    headers = bearer(await make_key("operator", [queue.namespace])) | {
        "traceparent": f"01-{TRACE_ID}-00f067aa0ba902b7-01-what-comes-next"}
    response = await http.post(queue_path(queue, "/tasks"), json={"task_name": "t"},
                               headers=headers)
    assert response.status_code == 201, response.text
    assert _trace_id(response.json()["traceparent"]) == TRACE_ID


async def test_a_grpc_enqueue_continues_the_callers_trace(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    metadata = (*grpc_key(await make_key("operator", [queue.namespace])), ("traceparent", CALLER))
    single = await grpc_stub.Enqueue(pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name,
        task=pb.TaskSubmission(task_name="t", payload_json=json.dumps({}))), metadata=metadata)
    assert _trace_id(single.task.traceparent) == TRACE_ID
    batch = await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
        namespace=queue.namespace, name=queue.name,
        tasks=[pb.TaskSubmission(task_name="t", payload_json="{}")]), metadata=metadata)
    assert [_trace_id(t) for t in await _stored(pool, [batch.tasks[0].id])] == [TRACE_ID]
