"""Queues over gRPC (taskq.v1): list, settings and counts, pause and resume, replaying dead
tasks; and that a queue's settings say over gRPC what they say in taskq's models."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest

from taskq import TaskRequest
from taskq.client import COUNT_CAP, Client
from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import grpc_key, grpc_refusal, stored_tasks
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub


async def test_the_list_holds_the_queues_of_the_keys_namespaces_with_their_settings(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, client: Client,
) -> None:
    mine = await make_queue(
        max_attempts=5, rate_limit_per_second=2.5, concurrency_limit=None, paused=True)
    sibling = await client.ensure_queue(f"{mine.namespace}/second")
    await make_queue()
    key = grpc_key(await make_key("viewer", [mine.namespace]))

    response = await grpc_stub.ListQueues(pb.ListQueuesRequest(), metadata=key)

    assert [(q.id, q.namespace, q.name) for q in response.queues] == [
        (mine.id, mine.namespace, mine.name), (sibling.id, sibling.namespace, sibling.name)]
    settings = response.queues[0].settings
    expected = mine.settings
    assert (settings.max_attempts, settings.rate_limit_per_second, settings.paused) == (
        5, 2.5, True)
    assert settings.HasField("rate_limit_per_second")
    assert not settings.HasField("concurrency_limit")  # unset: no limit, as null in REST
    assert settings.backoff.kind == pb.BACKOFF_KIND_EXPONENTIAL
    assert (settings.backoff.base_seconds, settings.timeout_seconds,
            settings.payload_limit_bytes, settings.retention_dead_seconds) == (
        expected.backoff.base_seconds, expected.timeout_seconds,
        expected.payload_limit_bytes, expected.retention_dead_seconds)
    assert response.queues[0].created_at.ToDatetime().year >= 2025


async def test_a_queue_shows_its_counts(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue(max_attempts=1, backoff={"kind": "fixed", "base_seconds": 2})
    for n in range(3):
        await client.enqueue(queue.full_name, "t", n)
    await client.enqueue(queue.full_name, "t", delay=3600)
    [_running, failing] = await claim(pool, queue, limit=2)
    await finish(pool, failing, "failed")
    key = grpc_key(await make_key("viewer", [queue.namespace]))

    details = await grpc_stub.GetQueue(
        pb.GetQueueRequest(namespace=queue.namespace, name=queue.name), metadata=key)

    assert (details.queue, details.settings.max_attempts) == (queue.full_name, 1)
    assert details.settings.backoff.kind == pb.BACKOFF_KIND_FIXED
    stats = details.stats
    assert (stats.ready, stats.scheduled, stats.running, stats.dead) == (1, 1, 1, 1)
    assert stats.dead_last_minute == 1
    assert stats.HasField("oldest_ready_at") and stats.HasField("observed_at")
    assert (stats.count_cap, list(stats.capped)) == (COUNT_CAP, [])


async def test_a_count_past_the_cap_is_named(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, client: Client
) -> None:
    queue = await make_queue()
    await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {}) for _ in range(COUNT_CAP + 1)]
    )
    key = grpc_key(await make_key("viewer", [queue.namespace]))
    details = await grpc_stub.GetQueue(
        pb.GetQueueRequest(namespace=queue.namespace, name=queue.name), metadata=key)
    assert (details.stats.ready, list(details.stats.capped)) == (COUNT_CAP, ["ready"])


async def test_pause_and_resume_change_only_paused(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=9, concurrency_limit=4)
    key = grpc_key(await make_key("operator", [queue.namespace]))

    paused = await grpc_stub.PauseQueue(
        pb.PauseQueueRequest(namespace=queue.namespace, name=queue.name), metadata=key)
    row = await pool.fetchrow("SELECT * FROM taskq.queues WHERE id = $1", queue.id)
    resumed = await grpc_stub.ResumeQueue(
        pb.ResumeQueueRequest(namespace=queue.namespace, name=queue.name), metadata=key)
    after = await pool.fetchrow("SELECT * FROM taskq.queues WHERE id = $1", queue.id)

    assert row is not None and after is not None
    assert (paused.settings.paused, row["paused"]) == (True, True)
    assert (resumed.settings.paused, after["paused"]) == (False, False)
    assert (after["max_attempts"], after["concurrency_limit"]) == (9, 4)
    assert paused.settings.concurrency_limit == 4


async def test_an_unknown_queue_is_not_found_and_not_created(
    grpc_stub: GrpcStub, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    key = grpc_key(await make_key("operator", ["nowhere"]))
    where: dict[str, Any] = {"namespace": "nowhere", "name": "none"}
    calls: list[Awaitable[object]] = [
        grpc_stub.GetQueue(pb.GetQueueRequest(**where), metadata=key),
        grpc_stub.PauseQueue(pb.PauseQueueRequest(**where), metadata=key),
        grpc_stub.ResumeQueue(pb.ResumeQueueRequest(**where), metadata=key),
        grpc_stub.ReplayDead(pb.ReplayDeadRequest(**where, all=True), metadata=key),
        grpc_stub.Enqueue(pb.EnqueueRequest(
            **where, task=pb.TaskSubmission(task_name="t")), metadata=key),
        grpc_stub.ListTasks(pb.ListTasksRequest(queue="nowhere/none"), metadata=key),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert "unknown queue 'nowhere/none'" in grpc_refusal(raised, grpc.StatusCode.NOT_FOUND)
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.queues WHERE namespace = 'nowhere'") == 0


async def test_dead_replay_by_ids_and_all(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client,
) -> None:
    queue = await make_queue(max_attempts=1)
    for n in range(3):
        await client.enqueue(queue.full_name, "t", n)
    claimed = await claim(pool, queue, limit=3)
    for task in claimed:
        await finish(pool, task, "failed")
    key = grpc_key(await make_key("operator", [queue.namespace]))
    where: dict[str, Any] = {"namespace": queue.namespace, "name": queue.name}

    one = await grpc_stub.ReplayDead(
        pb.ReplayDeadRequest(**where, ids=[claimed[0].id]), metadata=key)
    rest = await grpc_stub.ReplayDead(pb.ReplayDeadRequest(**where, all=True), metadata=key)

    assert (one.replayed, one.skipped, rest.replayed, rest.skipped) == (1, 0, 2, 0)
    assert [t["state"] for t in await stored_tasks(pool, queue)] == ["ready"] * 3


async def test_dead_replay_needs_ids_or_all(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    where: dict[str, Any] = {"namespace": queue.namespace, "name": queue.name}
    for request, field in [
        (pb.ReplayDeadRequest(**where), "ids"),
        (pb.ReplayDeadRequest(**where, ids=[1], all=True), "ids"),
        (pb.ReplayDeadRequest(**where, ids=[5, 0]), "ids[1]"),
        (pb.ReplayDeadRequest(**where, ids=[1] * 10_001), "ids"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_stub.ReplayDead(request, metadata=key)
        details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
        assert details.startswith(f"invalid {field}: "), details
