"""Group commit of single enqueues (service/groupcommit.py), on a real server over sockets and
a real PostgreSQL. A group is made to form for certain: a test transaction locks the queue's
partition, so the first enqueue's write waits in the database while the next requests wait
for it in the server; then the lock goes and they are written together. Each caller must get
its own outcome, and the database must hold exactly what was acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest

from taskq.models import QueueInfo
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc
from taskq_api.server.process import open_service
from taskq_api.server.settings import ApiSettings
from taskq_api.service import ApiService
from tests.api.conftest import MakeKey, RunningApi, running_api
from tests.api.helpers import bearer, grpc_key, problem, queue_path, stored_tasks
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

if TYPE_CHECKING:
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub


@pytest.fixture(scope="module")
async def served(dsn: str) -> AsyncIterator[tuple[RunningApi, ApiService]]:
    """A server of this module's own, whose service the tests can look into."""
    settings = ApiSettings(dsn=dsn, host="127.0.0.1", port=1, pool_size=10)
    async with open_service(settings) as service, running_api(dsn, service) as running:
        yield running, service


@pytest.fixture
async def http(served: tuple[RunningApi, ApiService]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served[0].url, timeout=30) as client:
        yield client


def _waiting(service: ApiService, queue: QueueInfo, traceparent: str | None = None) -> int:
    """How many enqueues to the queue (with that traceparent) wait for the write in flight
    (private state, read only to know when a group has formed)."""
    lane = service._groups._lanes.get((queue.full_name, traceparent))
    return 0 if lane is None else len(lane.waiting)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never came: {what}")


async def _blocked_writes(pool: asyncpg.Pool) -> list[int]:
    """The backends of the server waiting for a lock: its writes held by the test's lock."""
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'taskq-api' "
        "AND wait_event_type = 'Lock'"
    )
    return [row["pid"] for row in rows]


@asynccontextmanager
async def _partition_locked(dsn: str, queue: QueueInfo) -> AsyncIterator[None]:
    """Inserts into the queue wait until the block ends."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE taskq.tasks_q{queue.id} IN SHARE MODE")
            yield
    finally:
        await conn.close()


def _post(
    http: httpx.AsyncClient, queue: QueueInfo, secret: str, body: dict[str, Any],
    traceparent: str | None = None,
) -> asyncio.Task[httpx.Response]:
    headers = bearer(secret) | ({"traceparent": traceparent} if traceparent else {})
    return asyncio.create_task(http.post(queue_path(queue, "/tasks"), json=body,
                                         headers=headers))


async def _group_formed(
    served: tuple[RunningApi, ApiService], pool: asyncpg.Pool, queue: QueueInfo, count: int,
    traceparent: str | None = None, held: int = 1,
) -> None:
    """Wait until at least `held` writes to the queue are held by the lock and `count`
    enqueues (with that traceparent) wait for one of them."""
    service = served[1]

    async def formed() -> bool:
        return (
            len(await _blocked_writes(pool)) >= held
            and _waiting(service, queue, traceparent) == count
        )

    await _until(formed, f"{count} enqueues waiting behind a held write")


async def test_a_refused_task_fails_only_itself(
    served: tuple[RunningApi, ApiService], http: httpx.AsyncClient, dsn: str,
    pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    """The database refuses one payload (over the queue's limit) and pydantic passes it: the
    group's transaction writes nothing, then each task goes alone and gets its own answer."""
    queue = await make_queue(payload_limit_bytes=100)
    secret = await make_key("operator", [queue.namespace])
    async with _partition_locked(dsn, queue):
        first = _post(http, queue, secret, {"task_name": "t", "payload": {"n": 0}})
        await _group_formed(served, pool, queue, 0)
        good = [_post(http, queue, secret, {"task_name": "t", "payload": {"n": n}})
                for n in (1, 2)]
        big = _post(http, queue, secret, {"task_name": "t", "payload": {"x": "y" * 200}})
        nul = _post(http, queue, secret, {"task_name": "t", "payload": {"x": "\u0000"}})
        more = _post(http, queue, secret, {"task_name": "t", "payload": {"n": 3}})
        await _group_formed(served, pool, queue, 5)
    answers = [openapi.check(await task) for task in (first, *good, more)]
    assert [a.status_code for a in answers] == [201, 201, 201, 201]
    assert [a.json()["payload"] for a in answers] == [{"n": n} for n in (0, 1, 2, 3)]
    assert "over the queue's limit" in problem(await big, 413)["detail"]
    assert problem(await nul, 422)["errors"][0]["pointer"] == "#/payload"
    stored = await stored_tasks(pool, queue)
    assert sorted(row["id"] for row in stored) == sorted(a.json()["id"] for a in answers)


async def test_a_key_repeated_in_one_group_answers_as_sequential_requests(
    served: tuple[RunningApi, ApiService], http: httpx.AsyncClient, dsn: str,
    pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    async with _partition_locked(dsn, queue):
        first = _post(http, queue, secret, {"task_name": "t"})
        await _group_formed(served, pool, queue, 0)
        keyed = [_post(http, queue, secret,
                       {"task_name": "t", "payload": {"try": n}, "idempotency_key": "order-7"})
                 for n in range(4)]
        plain = [_post(http, queue, secret, {"task_name": "t", "payload": {"n": n}})
                 for n in range(3)]
        await _group_formed(served, pool, queue, 7)
    answers = [openapi.check(await task) for task in keyed]
    created = [a for a in answers if a.status_code == 201]
    assert len(created) == 1
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    holder = created[0].json()
    assert all(a.json() == holder for a in answers)  # the others answer with the task held
    assert all(a.headers["location"] == f"/v1/tasks/{holder['id']}" for a in answers)
    others = [openapi.check(await task).json() for task in plain]
    # one transaction wrote the group: it gave every task of it the same created_at
    assert {task["created_at"] for task in others} == {holder["created_at"]}
    assert (await first).status_code == 201
    stored = await stored_tasks(pool, queue)
    assert len(stored) == 1 + 1 + 3
    assert [row["idempotency_key"] for row in stored].count("order-7") == 1


async def test_a_database_error_fails_only_its_group(
    served: tuple[RunningApi, ApiService], http: httpx.AsyncClient, dsn: str,
    pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    """The connection writing a group dies: that group's callers get 503 and nothing of it is
    stored; the group waiting behind it, and another queue's enqueues, go on."""
    queue, other = await make_queue(), await make_queue()
    secret = await make_key("operator", [queue.namespace, other.namespace])
    async with _partition_locked(dsn, queue):
        alone = _post(http, queue, secret, {"task_name": "t", "payload": {"n": 0}})
        await _group_formed(served, pool, queue, 0)
        doomed = [_post(http, queue, secret, {"task_name": "t", "payload": {"n": n}})
                  for n in (1, 2, 3)]
        await _group_formed(served, pool, queue, 3)
        (pid,) = await _blocked_writes(pool)
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        problem(await alone, 503)
        # the next group ([1, 2, 3]) is written on another connection, and held again
        await _until(lambda: _terminated_and_held(pool, pid), "the next group's write held")
        assert _waiting(served[1], queue) == 0
        later = [_post(http, queue, secret, {"task_name": "t", "payload": {"n": n}})
                 for n in (4, 5)]
        await _group_formed(served, pool, queue, 2)
        elsewhere = [await http.post(queue_path(other, "/tasks"), headers=bearer(secret),
                                     json={"task_name": "t"}) for _ in range(3)]
        assert [r.status_code for r in elsewhere] == [201, 201, 201]
        (pid,) = await _blocked_writes(pool)
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        for task in doomed:
            problem(await task, 503)
    answers = [await task for task in later]
    assert [a.status_code for a in answers] == [201, 201]
    stored = await stored_tasks(pool, queue)
    assert sorted(row["payload"]["n"] for row in stored) == [4, 5]


async def _terminated_and_held(pool: asyncpg.Pool, terminated: int) -> bool:
    return any(pid != terminated for pid in await _blocked_writes(pool))


async def test_a_caller_that_goes_away_while_waiting_is_left_out(
    served: tuple[RunningApi, ApiService], dsn: str, pool: asyncpg.Pool,
    make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    """gRPC cancels the call of a caller whose deadline passes: its enqueue leaves the group
    it waited in, and the others are written."""
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))

    def enqueue(stub: GrpcStub, n: int, timeout: float | None = None) -> Awaitable[Any]:
        task = pb.TaskSubmission(task_name="t", payload_json=json.dumps({"n": n}))
        request = pb.EnqueueRequest(namespace=queue.namespace, name=queue.name, task=task)
        return asyncio.ensure_future(stub.Enqueue(request, metadata=key, timeout=timeout))

    async with grpc.aio.insecure_channel(served[0].grpc_target) as channel:
        stub: GrpcStub = pb_grpc.TaskqServiceStub(channel)
        async with _partition_locked(dsn, queue):
            first = enqueue(stub, 0)
            await _group_formed(served, pool, queue, 0)
            impatient = enqueue(stub, 1, timeout=1.0)
            patient = enqueue(stub, 2)
            await _group_formed(served, pool, queue, 2)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await impatient
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

            async def left_out() -> bool:
                return _waiting(served[1], queue) == 1

            await _until(left_out, "the cancelled enqueue left its group")
        answers = [await first, await patient]
    assert [json.loads(a.task.payload_json) for a in answers] == [{"n": 0}, {"n": 2}]
    stored = await stored_tasks(pool, queue)
    assert sorted(row["payload"]["n"] for row in stored) == [0, 2]


async def _tasks_as_stored(pool: asyncpg.Pool, queue: QueueInfo) -> dict[int, dict[str, Any]]:
    """Every task of the queue by id, with the fields a submission gives."""
    rows = await pool.fetch(
        "SELECT id, payload::text AS payload, priority, idempotency_key, correlation_id, "
        "max_attempts, timeout_s, callback_url, traceparent, "
        "extract(epoch FROM run_at - created_at) AS delay_s, created_at "
        "FROM taskq.tasks WHERE queue_id = $1",
        queue.id,
    )
    return {row["id"]: {**dict(row), "payload": json.loads(row["payload"])} for row in rows}


async def test_each_task_keeps_its_own_fields_in_a_group(
    served: tuple[RunningApi, ApiService], http: httpx.AsyncClient, dsn: str,
    pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    """REST and gRPC enqueues written in one group: each task is stored with its own callback
    URL, correlation id, idempotency key, priority, delay, attempts and timeout, none with
    another's, and each caller is answered with its own task."""
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])

    def rest_body(n: int) -> dict[str, Any]:
        return {
            "task_name": "t", "payload": {"n": n}, "callback_url": f"https://hooks.example/{n}",
            "correlation_id": f"corr-{n}", "idempotency_key": f"key-{n}", "priority": 10 + n,
            "delay_seconds": 100 * n, "max_attempts": n, "timeout_seconds": 10 * n,
        }

    def grpc_task(n: int) -> pb.TaskSubmission:
        return pb.TaskSubmission(
            task_name="t", payload_json=json.dumps({"n": n}),
            callback_url=f"https://hooks.example/{n}", correlation_id=f"corr-{n}",
            idempotency_key=f"key-{n}", priority_number=10 + n, delay_seconds=100 * n,
            max_attempts=n, timeout_seconds=10 * n,
        )

    async with grpc.aio.insecure_channel(served[0].grpc_target) as channel:
        stub: GrpcStub = pb_grpc.TaskqServiceStub(channel)
        metadata = grpc_key(secret)
        async with _partition_locked(dsn, queue):
            first = _post(http, queue, secret, {"task_name": "t", "payload": {"n": 0}})
            await _group_formed(served, pool, queue, 0)
            rest = [_post(http, queue, secret, rest_body(n)) for n in (1, 2, 3, 4)]
            # a task leaving everything to the queue's defaults, between them
            plain = _post(http, queue, secret, {"task_name": "t", "payload": {"n": 5}})
            by_grpc = [
                asyncio.ensure_future(stub.Enqueue(pb.EnqueueRequest(
                    namespace=queue.namespace, name=queue.name, task=grpc_task(n)),
                    metadata=metadata))
                for n in (6, 7)
            ]
            await _group_formed(served, pool, queue, 7)
        rest_answers = [openapi.check(await task) for task in (*rest, plain)]
        grpc_answers = [await call for call in by_grpc]
    assert (await first).status_code == 201
    assert [a.status_code for a in rest_answers] == [201] * 5
    answered = {
        **{a.json()["payload"]["n"]: a.json()["id"] for a in rest_answers},
        **{json.loads(a.task.payload_json)["n"]: a.task.id for a in grpc_answers},
    }
    assert sorted(answered) == [1, 2, 3, 4, 5, 6, 7]
    stored = await _tasks_as_stored(pool, queue)
    assert len(stored) == 8
    # each caller's answer names the task stored with its own payload
    assert all(stored[task_id]["payload"] == {"n": n} for n, task_id in answered.items())
    group = [stored[answered[n]] for n in range(1, 8)]
    assert len({task["created_at"] for task in group}) == 1  # one transaction wrote them
    for task in group:
        n = task["payload"]["n"]
        own = {
            "callback_url": f"https://hooks.example/{n}", "correlation_id": f"corr-{n}",
            "idempotency_key": f"key-{n}", "priority": 10 + n, "max_attempts": n,
            "timeout_s": 10.0 * n, "delay_s": 100 * n, "traceparent": None,
        }
        if n == 5:
            assert (task["callback_url"], task["correlation_id"], task["idempotency_key"]) == (
                None, None, None)
            assert task["priority"] == queue.settings.default_priority
            assert task["max_attempts"] == queue.settings.max_attempts
            assert task["delay_s"] == 0
            continue
        assert {name: task[name] for name in own} == own, task


async def test_tasks_with_different_traceparents_are_not_grouped_together(
    served: tuple[RunningApi, ApiService], http: httpx.AsyncClient, dsn: str,
    pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    """The traceparent is one per enqueue_many call, so enqueues to one queue with different
    caller traceparents (or none) wait in lanes of their own: each lane's tasks go together,
    and every task keeps its own caller's traceparent."""
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    parents = [
        f"00-{'a' * 32}-{'1' * 16}-01",
        f"00-{'b' * 32}-{'2' * 16}-00",
        None,
    ]
    async with _partition_locked(dsn, queue):
        # one write held per traceparent: each lane's first enqueue
        firsts = []
        for held, parent in enumerate(parents, start=1):
            firsts.append(_post(http, queue, secret, {"task_name": "t", "payload": {
                "lane": held, "n": 0}}, traceparent=parent))
            await _group_formed(served, pool, queue, 0, parent, held=held)
        waiting = [
            (_post(http, queue, secret, {"task_name": "t", "payload": {"lane": lane, "n": n}},
                   traceparent=parent), parent)
            for n in (1, 2, 3)
            for lane, parent in enumerate(parents, start=1)
        ]
        for parent in parents:
            await _group_formed(served, pool, queue, 3, parent, held=3)
    answers = [(await task, parent) for task, parent in waiting]
    assert [answer.status_code for answer, _ in answers] == [201] * 9
    assert [(await task).status_code for task in firsts] == [201] * 3
    stored = await _tasks_as_stored(pool, queue)
    assert len(stored) == 12
    for answer, parent in answers:
        task = stored[answer.json()["id"]]
        assert task["traceparent"] == answer.json()["traceparent"] == parent
    for lane, parent in enumerate(parents, start=1):
        lane_tasks = [stored[a.json()["id"]] for a, p in answers if p == parent]
        assert {task["payload"]["lane"] for task in lane_tasks} == {lane}
        assert len({task["created_at"] for task in lane_tasks}) == 1  # one group each
