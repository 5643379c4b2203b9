"""Bad input over gRPC: each invalid field is INVALID_ARGUMENT naming the field as taskq.v1
does, and the fix; sizes over a limit are RESOURCE_EXHAUSTED; never a stack trace; and the
database holds exactly what was validly submitted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from taskq.client import Client
from taskq.models import QueueInfo
from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MAX_BODY_BYTES, MakeKey
from tests.api.helpers import grpc_key, grpc_refusal, stored_tasks
from tests.api.test_api_bad_input import INJECTIONS
from tests.conftest import MakeQueue

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
async def writer(make_key: MakeKey, make_queue: MakeQueue) -> tuple[QueueInfo, Metadata]:
    queue = await make_queue(payload_limit_bytes=1000)
    return queue, grpc_key(await make_key("operator", [queue.namespace]))


def _enqueue(queue: QueueInfo, **fields: Any) -> pb.EnqueueRequest:
    return pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name, task=pb.TaskSubmission(**fields))


_FAR_FUTURE = Timestamp(seconds=10**12)  # after the year 9999


@pytest.mark.parametrize(("fields", "field", "fix"), [
    ({"task_name": ""}, "task.task_name", "1..200 characters"),
    ({"task_name": "t" * 201}, "task.task_name", "1..200 characters"),
    ({"priority_number": 101}, "task.priority_number", "0..100"),
    ({"priority_number": -1}, "task.priority_number", "0..100"),
    ({"priority_level": "soon"}, "task.priority_level", "urgent, high, normal, low"),
    ({"delay_seconds": -1}, "task.delay_seconds", "0..315360000 seconds"),
    ({"delay_seconds": float("inf")}, "task.delay_seconds", "0..315360000 seconds"),
    ({"delay_seconds": float("nan")}, "task.delay_seconds", "0..315360000 seconds"),
    ({"run_at": _FAR_FUTURE}, "task.run_at", "year 1 to 9999"),
    ({"payload_json": "{nope"}, "task.payload_json", "send a JSON value"),
    ({"payload_json": "NaN"}, "task.payload_json", "NaN is not a JSON value"),
    ({"payload_json": "[1, -Infinity]"}, "task.payload_json", "not a JSON value"),
    ({"payload_json": "[" * 100_000}, "task.payload_json", "send a JSON value"),
    ({"payload_json": '{"k": "a\\u0000b"}'}, "task.payload_json", "U+0000"),
    ({"idempotency_key": ""}, "task.idempotency_key", "1..255 characters"),
    ({"correlation_id": ""}, "task.correlation_id", "1..255 characters"),
    ({"correlation_id": "c" * 256}, "task.correlation_id", "1..255 characters"),
    ({"max_attempts": 0}, "task.max_attempts", "1..1000"),
    ({"timeout_seconds": 0}, "task.timeout_seconds", "> 0 and at most 2592000 seconds"),
])
async def test_each_invalid_field_is_named_with_the_fix(
    fields: dict[str, Any], field: str, fix: str, writer: tuple[QueueInfo, Metadata],
    grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.Enqueue(_enqueue(queue, **{"task_name": "t", **fields}), metadata=key)

    details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"invalid {field}: "), details
    assert fix in details, details
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize(("namespace", "name", "field"), [
    ("t1'; DROP TABLE x", "q", "namespace"),
    ("UPPER", "q", "namespace"),
    ("ok", "-bad-", "name"),
    ("ok", "a" * 64, "name"),
    ("", "q", "namespace"),
])
async def test_bad_queue_names_are_named(
    namespace: str, name: str, field: str, grpc_stub: GrpcStub, make_key: MakeKey,
) -> None:
    key = grpc_key(await make_key("admin", None))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.GetQueue(pb.GetQueueRequest(namespace=namespace, name=name),
                                 metadata=key)
    details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"invalid {field}: ")
    assert "lowercase letters, digits or '-'" in details


@pytest.mark.parametrize(("fields", "field"), [
    ({"queue": ""}, "queue"),
    ({"queue": "no-slash"}, "queue"),
    ({"queue": "UP/per"}, "queue"),
    ({"state": 99}, "state"),
    ({"limit": 501}, "limit"),
    ({"limit": -1}, "limit"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"created_after": Timestamp(seconds=2_000_000_000),
      "created_before": Timestamp(seconds=1_000_000_000)}, "created_after"),
    ({"created_before": _FAR_FUTURE}, "created_before"),
    ({"error_contains": "  "}, "error_contains"),
])
async def test_bad_list_parameters_are_named(
    fields: dict[str, Any], field: str, writer: tuple[QueueInfo, Metadata],
    grpc_stub: GrpcStub,
) -> None:
    queue, key = writer
    request = pb.ListTasksRequest(**{"queue": queue.full_name, **fields})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.ListTasks(request, metadata=key)
    details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"invalid {field}: "), details


@pytest.mark.parametrize("count", [1, 100])  # one task: the SQL function; 100: COPY
async def test_a_payload_over_the_queues_limit_is_resource_exhausted(
    count: int, writer: tuple[QueueInfo, Metadata], grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    tasks = [pb.TaskSubmission(task_name="t", payload_json='"small"') for _ in range(count)]
    tasks[-1].payload_json = json.dumps("y" * 2000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
            namespace=queue.namespace, name=queue.name, tasks=tasks), metadata=key)
    assert "1000" in grpc_refusal(raised, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert await stored_tasks(pool, queue) == []


async def test_a_message_over_the_servers_limit_is_resource_exhausted(
    writer: tuple[QueueInfo, Metadata], grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    tasks = [pb.TaskSubmission(task_name="t", payload_json="1" * 900)] * (
        MAX_BODY_BYTES // 900 + 10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
            namespace=queue.namespace, name=queue.name, tasks=tasks), metadata=key)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await stored_tasks(pool, queue) == []


async def test_metadata_over_the_servers_limit_is_refused(
    writer: tuple[QueueInfo, Metadata], grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.Enqueue(_enqueue(queue, task_name="t"),
                                metadata=(*key, ("x-padding", "p" * 20_000)))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await stored_tasks(pool, queue) == []


@pytest.mark.parametrize("text", INJECTIONS)
async def test_injection_strings_are_stored_verbatim(
    text: str, writer: tuple[QueueInfo, Metadata], grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    queue, key = writer
    created = await grpc_stub.Enqueue(_enqueue(
        queue, task_name=text, payload_json=json.dumps({text: [text]}), idempotency_key=text,
        correlation_id=text), metadata=key)

    [stored] = await stored_tasks(pool, queue)
    assert (stored["task_name"], stored["payload"], stored["idempotency_key"],
            stored["correlation_id"]) == (text, {text: [text]}, text, text)
    assert created.task.task_name == text
    assert json.loads(created.task.payload_json) == {text: [text]}


async def test_the_database_holds_exactly_what_was_validly_submitted(
    writer: tuple[QueueInfo, Metadata], grpc_stub: GrpcStub, pool: asyncpg.Pool,
    make_key: MakeKey, client: Client,
) -> None:
    queue, key = writer
    viewer = grpc_key(await make_key("viewer", [queue.namespace]))
    stranger = grpc_key(await make_key("operator", ["elsewhere"]))

    def batch(*tasks: pb.TaskSubmission) -> pb.EnqueueBatchRequest:
        return pb.EnqueueBatchRequest(namespace=queue.namespace, name=queue.name, tasks=tasks)

    attempts: list[tuple[Any, Metadata, bool]] = [
        (_enqueue(queue, task_name="a", payload_json='{"n": 1}'), key, True),
        (_enqueue(queue, task_name="no-key"), (), False),
        (_enqueue(queue, task_name="viewer"), viewer, False),
        (_enqueue(queue, task_name="stranger"), stranger, False),
        (_enqueue(queue, task_name="bad", priority_number=1000), key, False),
        (_enqueue(queue, task_name="big", payload_json=json.dumps("z" * 5000)), key, False),
        (batch(*[pb.TaskSubmission(task_name="b", payload_json=str(i)) for i in range(3)]),
         key, True),
        (batch(pb.TaskSubmission(task_name="c"), pb.TaskSubmission(
            task_name="c", max_attempts=-1)), key, False),
        (_enqueue(queue, task_name=INJECTIONS[0], payload_json=json.dumps(INJECTIONS[0])),
         key, True),
        (_enqueue(queue, task_name="d", idempotency_key="k"), key, True),
        (_enqueue(queue, task_name="d-again", idempotency_key="k"), key, True),  # the existing
    ]
    for request, metadata, valid in attempts:
        method = grpc_stub.Enqueue if isinstance(request, pb.EnqueueRequest) else (
            grpc_stub.EnqueueBatch)
        try:
            await method(request, metadata=metadata)
            accepted = True
        except grpc.aio.AioRpcError:
            accepted = False
        assert accepted is valid, request

    stored = await stored_tasks(pool, queue)

    assert [(t["task_name"], t["payload"]) for t in stored] == [
        ("a", {"n": 1}), ("b", 0), ("b", 1), ("b", 2), (INJECTIONS[0], INJECTIONS[0]),
        ("d", None),
    ]
    assert [t["idempotency_key"] for t in stored] == [None, None, None, None, None, "k"]
    assert (await client.get_queue(queue.full_name)).settings.paused is False
