"""Tasks over gRPC (taskq.v1), with a grpcio client on a socket: enqueue one or a batch, read
one (with its history, or waiting for it), list, cancel, retry, and watch one to its end.
What the database holds is checked against what was sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from taskq import TaskContext
from taskq.client import Client
from taskq.worker.registry import Registry
from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import grpc_key, grpc_refusal, stored_tasks
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish, running_worker, task_row

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub


def _at(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_enqueue_answers_with_the_task_and_stores_exactly_it(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    payload = {"order": 42, "price": 1.5, "big": 12345678901234567890, "lines": [None, "x"]}
    response = await grpc_stub.Enqueue(pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name, task=pb.TaskSubmission(
            task_name="send_receipt", payload_json=json.dumps(payload), priority_level="high",
            idempotency_key="receipt-42", correlation_id="checkout-7", max_attempts=7,
            timeout_seconds=12.5,
        )), metadata=key)

    task = response.task
    assert response.created
    assert (task.queue, task.state, task.priority) == (
        queue.full_name, pb.TASK_STATE_READY, 75)
    assert json.loads(task.payload_json) == payload
    assert (task.result_json, task.error_json, task.payload_hidden) == ("null", "null", False)
    assert list(task.attempt_history) == []
    assert task.HasField("created_at") and not task.HasField("started_at")
    assert await stored_tasks(pool, queue) == [{
        "id": task.id, "task_name": "send_receipt", "payload": payload,
        "priority": 75, "idempotency_key": "receipt-42", "correlation_id": "checkout-7",
        "max_attempts": 7, "timeout_s": 12.5, "state": "ready",
    }]


async def test_the_same_idempotency_key_answers_the_existing_task(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))

    def request(payload: str) -> pb.EnqueueRequest:
        return pb.EnqueueRequest(namespace=queue.namespace, name=queue.name, task=pb.TaskSubmission(
            task_name="t", payload_json=payload, idempotency_key="k"))

    first = await grpc_stub.Enqueue(request("1"), metadata=key)
    again = await grpc_stub.Enqueue(request("2"), metadata=key)

    assert (first.created, again.created) == (True, False)
    assert again.task.id == first.task.id
    assert again.task.payload_json == "1"  # the existing task, not the second request
    assert [t["payload"] for t in await stored_tasks(pool, queue)] == [1]


async def test_priorities_delays_and_start_times(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    later = datetime.now(UTC) + timedelta(hours=1)
    submissions = [
        pb.TaskSubmission(task_name="t", priority_number=10, delay_seconds=600),
        pb.TaskSubmission(task_name="t", priority_level="URGENT", run_at=_at(later)),
        pb.TaskSubmission(task_name="t", run_at=_at(datetime(2001, 1, 1, tzinfo=UTC))),
        pb.TaskSubmission(task_name="t"),
    ]
    tasks = [(await grpc_stub.Enqueue(pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name, task=s), metadata=key)).task
        for s in submissions]

    assert [t.priority for t in tasks] == [10, 100, 50, 50]
    assert [t.state for t in tasks] == [
        pb.TASK_STATE_SCHEDULED, pb.TASK_STATE_SCHEDULED, pb.TASK_STATE_READY,
        pb.TASK_STATE_READY]
    row = await task_row(pool, tasks[1].id)
    assert abs((row["run_at"] - later).total_seconds()) < 5
    row = await task_row(pool, tasks[0].id)
    assert 590 < (row["run_at"] - row["created_at"]).total_seconds() <= 600
    assert tasks[3].payload_json == "null"


async def test_a_batch_is_enqueued_whole_in_order_and_reports_existing_keys(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    keyed = await grpc_stub.Enqueue(pb.EnqueueRequest(
        namespace=queue.namespace, name=queue.name,
        task=pb.TaskSubmission(task_name="t", idempotency_key="a")), metadata=key)
    tasks = [pb.TaskSubmission(task_name="n", payload_json=json.dumps({"i": i}))
             for i in range(2000)]
    tasks[0] = pb.TaskSubmission(task_name="t", idempotency_key="a")

    response = await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
        namespace=queue.namespace, name=queue.name, tasks=tasks), metadata=key)

    assert response.created == 1999
    assert (response.tasks[0].id, response.tasks[0].created) == (keyed.task.id, False)
    assert all(item.created for item in response.tasks[1:])
    stored = await stored_tasks(pool, queue)
    assert [t["id"] for t in stored] == [keyed.task.id] + [item.id for item in response.tasks[1:]]
    assert [t["payload"] for t in stored[1:]] == [{"i": i} for i in range(1, 2000)]


async def test_a_batch_with_a_bad_item_stores_nothing_and_names_it(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    cases = [
        (3, pb.TaskSubmission(task_name="ok", priority_number=101), "tasks[3].priority_number",
         "0..100"),
        (57, pb.TaskSubmission(task_name=""), "tasks[57].task_name", "1..200"),
        (99, pb.TaskSubmission(task_name="ok", payload_json="{nope"), "tasks[99].payload_json",
         "not JSON"),
        (150, pb.TaskSubmission(task_name="ok", delay_seconds=-1), "tasks[150].delay_seconds",
         "0..315360000"),
    ]
    for index, bad, field, fix in cases:
        tasks = [pb.TaskSubmission(task_name="ok") for _ in range(200)]
        tasks[index] = bad
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
                namespace=queue.namespace, name=queue.name, tasks=tasks), metadata=key)
        details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
        assert details.startswith(f"invalid {field}: "), details
        assert fix in details
    for count in (0, 10_001):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_stub.EnqueueBatch(pb.EnqueueBatchRequest(
                namespace=queue.namespace, name=queue.name,
                tasks=[pb.TaskSubmission(task_name="t")] * count), metadata=key)
        assert grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT).startswith("invalid tasks:")
    assert await stored_tasks(pool, queue) == []


async def test_a_task_shows_its_history_and_a_viewer_sees_no_payload(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue(max_attempts=3)
    reader = grpc_key(await make_key("viewer", [queue.namespace], reads_payloads=True))
    viewer = grpc_key(await make_key("viewer", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t", {"card": "4111"})
    [first] = await claim(pool, queue)
    await finish(pool, first, "failed")
    await pool.execute("UPDATE taskq.tasks SET run_at = now() WHERE id = $1", created.id)
    [second] = await claim(pool, queue)
    await finish(pool, second, "succeeded", result={"sent": True})

    task = await grpc_stub.GetTask(pb.GetTaskRequest(task_id=created.id), metadata=reader)
    hidden = await grpc_stub.GetTask(pb.GetTaskRequest(task_id=created.id), metadata=viewer)

    assert task.state == pb.TASK_STATE_SUCCEEDED
    assert (json.loads(task.payload_json), json.loads(task.result_json)) == (
        {"card": "4111"}, {"sent": True})
    assert [(a.attempt, a.outcome) for a in task.attempt_history] == [
        (1, pb.ATTEMPT_OUTCOME_FAILED), (2, pb.ATTEMPT_OUTCOME_SUCCEEDED)]
    assert json.loads(task.attempt_history[0].error_json)["message"] == "failed on purpose"
    assert (hidden.payload_json, hidden.result_json, hidden.payload_hidden) == (
        "null", "null", True)
    assert b"4111" not in hidden.SerializeToString()
    assert hidden.state == pb.TASK_STATE_SUCCEEDED  # everything else is there


async def test_waiting_returns_once_the_task_finishes_or_the_wait_passes(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t")
    unfinished = await grpc_stub.GetTask(
        pb.GetTaskRequest(task_id=created.id, wait_seconds=0.15), metadata=key)
    waiting = asyncio.ensure_future(grpc_stub.GetTask(
        pb.GetTaskRequest(task_id=created.id, wait_seconds=5), metadata=key))
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "succeeded", result=[1, 2])

    finished = await waiting

    assert unfinished.state == pb.TASK_STATE_READY
    assert (finished.state, finished.result_json) == (pb.TASK_STATE_SUCCEEDED, "[1,2]")
    for wait in (6.0, -1.0, float("nan")):  # the server's limit is 5 s here
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_stub.GetTask(
                pb.GetTaskRequest(task_id=created.id, wait_seconds=wait), metadata=key)
        assert grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT).startswith("invalid wait:")


async def test_list_filters_and_pages_with_the_cursor(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("viewer", [queue.namespace], reads_payloads=True))
    ids = [(await client.enqueue(queue.full_name, "a" if n % 2 else "b", {"n": n},
                                 correlation_id=f"c{n % 3}")).id for n in range(9)]
    [claimed] = await claim(pool, queue, limit=1)
    await finish(pool, claimed, "succeeded")
    [failing] = await claim(pool, queue, limit=1)
    await finish(pool, failing, "failed", error={"type": "Timeout", "message": "bank 100% slow"})

    pages: list[list[int]] = []
    cursor = ""
    while True:
        page = await grpc_stub.ListTasks(pb.ListTasksRequest(
            queue=queue.full_name, limit=4, cursor=cursor), metadata=key)
        pages.append([t.id for t in page.items])
        cursor = page.next_cursor
        if not cursor:
            break
    named = await grpc_stub.ListTasks(pb.ListTasksRequest(
        queue=queue.full_name, task_name="a", correlation_id="c1"), metadata=key)
    done = await grpc_stub.ListTasks(pb.ListTasksRequest(
        queue=queue.full_name, state=pb.TASK_STATE_SUCCEEDED), metadata=key)
    window = await grpc_stub.ListTasks(pb.ListTasksRequest(
        queue=queue.full_name, created_after=_at(datetime.now(UTC) - timedelta(hours=1)),
        created_before=_at(datetime.now(UTC) + timedelta(hours=1))), metadata=key)

    errors = await grpc_stub.ListTasks(pb.ListTasksRequest(
        queue=queue.full_name, error_contains="TIMEOUT: bank 100%"), metadata=key)
    assert ([t.id for t in errors.items], errors.next_cursor, errors.partial) == (
        [failing.id], "", False)
    assert pages == [ids[::-1][:4], ids[::-1][4:8], ids[::-1][8:]]
    assert [t.id for t in named.items] == [ids[7], ids[1]]
    assert [t.id for t in done.items] == [claimed.id]
    assert len(window.items) == 9
    assert named.items[0].payload_json == '{"n":7}'
    assert list(named.items[0].attempt_history) == []


async def test_cancel_waiting_running_and_finished_tasks(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    waiting = await client.enqueue(queue.full_name, "t")
    canceled = await grpc_stub.CancelTask(pb.CancelTaskRequest(task_id=waiting.id), metadata=key)
    again = await grpc_stub.CancelTask(pb.CancelTaskRequest(task_id=waiting.id), metadata=key)
    running = await client.enqueue(queue.full_name, "t")
    [claimed] = await claim(pool, queue)
    asked = await grpc_stub.CancelTask(pb.CancelTaskRequest(task_id=running.id), metadata=key)
    await finish(pool, claimed, "succeeded")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.CancelTask(pb.CancelTaskRequest(task_id=running.id), metadata=key)

    assert (canceled.state, again.state) == (pb.TASK_STATE_CANCELED, pb.TASK_STATE_CANCELED)
    assert (asked.state, asked.cancel_requested) == (pb.TASK_STATE_RUNNING, True)
    assert "succeeded" in grpc_refusal(raised, grpc.StatusCode.FAILED_PRECONDITION)
    assert (await task_row(pool, waiting.id))["state"] == "canceled"


async def test_retry_runs_a_dead_task_again_once(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue(max_attempts=1)
    key = grpc_key(await make_key("operator", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t")
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")

    retried = await grpc_stub.RetryTask(pb.RetryTaskRequest(task_id=created.id), metadata=key)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.RetryTask(pb.RetryTaskRequest(task_id=created.id), metadata=key)

    assert retried.state == pb.TASK_STATE_READY
    assert [a.outcome for a in retried.attempt_history] == [pb.ATTEMPT_OUTCOME_FAILED]
    assert "only a dead task" in grpc_refusal(raised, grpc.StatusCode.FAILED_PRECONDITION)
    assert (await task_row(pool, created.id))["state"] == "ready"


async def test_watch_streams_each_change_until_the_task_finishes(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    """Each change is made only once the watcher has seen the one before: no timing."""
    queue = await make_queue(max_attempts=2)
    key = grpc_key(await make_key("viewer", [queue.namespace], reads_payloads=True))
    created = await client.enqueue(queue.full_name, "t")
    call = grpc_stub.WatchTask(pb.WatchTaskRequest(task_id=created.id), metadata=key)
    seen: list[tuple[int, int, bool]] = []

    async def next_change() -> pb.Task:
        message = await call.read()
        assert isinstance(message, pb.Task), message
        seen.append((message.state, message.attempts, message.cancel_requested))
        return message

    await next_change()
    [first] = await claim(pool, queue)
    await next_change()
    await finish(pool, first, "failed")
    await next_change()
    await pool.execute("UPDATE taskq.tasks SET run_at = now() WHERE id = $1", created.id)
    [second] = await claim(pool, queue)
    await next_change()
    await client.cancel(created.id)
    await next_change()
    await finish(pool, second, "succeeded", result="done")
    last = await next_change()

    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert seen == [
        (pb.TASK_STATE_READY, 0, False),
        (pb.TASK_STATE_RUNNING, 1, False),
        (pb.TASK_STATE_RETRYING, 1, False),
        (pb.TASK_STATE_RUNNING, 2, False),
        (pb.TASK_STATE_RUNNING, 2, True),
        # a handler that finishes although asked to stop has its result recorded
        (pb.TASK_STATE_SUCCEEDED, 2, True),
    ]
    assert last.result_json == '"done"'
    assert [a.outcome for a in last.attempt_history] == [
        pb.ATTEMPT_OUTCOME_FAILED, pb.ATTEMPT_OUTCOME_SUCCEEDED]


async def test_watch_a_task_that_a_real_worker_runs(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, dsn: str,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    registry = Registry()
    release = asyncio.Event()

    @registry.task("double")
    async def double(ctx: TaskContext) -> int:
        await release.wait()
        return 2 * int(ctx.payload["n"])

    async with running_worker(dsn, registry, [queue.full_name]):
        created = await grpc_stub.Enqueue(pb.EnqueueRequest(
            namespace=queue.namespace, name=queue.name,
            task=pb.TaskSubmission(task_name="double", payload_json='{"n": 21}')), metadata=key)
        states = []
        async for task in grpc_stub.WatchTask(
                pb.WatchTaskRequest(task_id=created.task.id), metadata=key, timeout=60):
            states.append(task.state)
            if task.state == pb.TASK_STATE_RUNNING:
                release.set()  # the handler returns only once the watcher saw it run

    assert states[-2:] == [pb.TASK_STATE_RUNNING, pb.TASK_STATE_SUCCEEDED]
    assert task.result_json == "42"


async def test_watching_a_finished_task_answers_it_once(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t")
    await client.cancel(created.id)

    messages = [t async for t in grpc_stub.WatchTask(
        pb.WatchTaskRequest(task_id=created.id), metadata=key)]

    assert [m.state for m in messages] == [pb.TASK_STATE_CANCELED]


async def test_a_watch_ends_at_the_callers_deadline(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("viewer", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t")
    # long enough for the first message on a loaded machine (0.5 s was not, in a full run)
    call = grpc_stub.WatchTask(pb.WatchTaskRequest(task_id=created.id), metadata=key,
                               timeout=3.0)

    first = await call.read()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()  # the task never changes: only the deadline ends the watch

    assert isinstance(first, pb.Task) and first.state == pb.TASK_STATE_READY
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_unknown_tasks_are_not_found(
    grpc_stub: GrpcStub, make_key: MakeKey,
) -> None:
    key = grpc_key(await make_key("admin", None))
    calls: list[Awaitable[pb.Task]] = [
        grpc_stub.GetTask(pb.GetTaskRequest(task_id=999_999_999), metadata=key),
        grpc_stub.CancelTask(pb.CancelTaskRequest(task_id=999_999_999), metadata=key),
        grpc_stub.RetryTask(pb.RetryTaskRequest(task_id=999_999_999), metadata=key),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert grpc_refusal(raised, grpc.StatusCode.NOT_FOUND) == "no task with id 999999999"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in grpc_stub.WatchTask(pb.WatchTaskRequest(task_id=999_999_999),
                                           metadata=key):
            pass
    grpc_refusal(raised, grpc.StatusCode.NOT_FOUND)
