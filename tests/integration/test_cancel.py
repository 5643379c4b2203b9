"""Cancellation: waiting tasks at once, running ones cooperatively through their worker."""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import pytest

from taskq import TaskContext, TaskRequest, UnknownTaskError
from taskq.client import Client
from taskq.store import execution as store
from taskq.worker.registry import Registry
from tests.conftest import MakeQueue
from tests.integration.helpers import (
    claim,
    finish,
    running_worker,
    task_row,
    wait_for,
    wait_for_state,
)


async def test_cancel_waiting_tasks_at_once(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    ready = await client.enqueue(queue.full_name, "t")
    scheduled = await client.enqueue(queue.full_name, "t", delay=600)
    for task_id in (ready.id, scheduled.id):
        result = await client.cancel(task_id)
        assert (result.state, result.cancel_requested) == ("canceled", False)
        task = await client.get_task(task_id)
        assert task.state == "canceled"
        assert task.finished_at is not None
    assert await claim(pool, queue) == []
    stats = await client.queue_stats(queue.full_name)
    assert (stats.ready, stats.scheduled) == (0, 0)


async def test_cancel_a_retrying_task(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    assert await finish(pool, task, "failed") == "retrying"
    assert (await client.cancel(enqueued.id)).state == "canceled"


async def test_cancel_of_a_finished_task_changes_nothing(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await finish(pool, task, "succeeded")
    result = await client.cancel(enqueued.id)
    assert (result.state, result.cancel_requested) == ("succeeded", False)
    assert (await client.get_task(enqueued.id)).state == "succeeded"


async def test_cancel_unknown_task(client: Client) -> None:
    with pytest.raises(UnknownTaskError, match="no task with id 987654321"):
        await client.cancel(987_654_321)


async def test_cancel_running_asks_its_worker(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    result = await client.cancel(enqueued.id)
    assert (result.state, result.cancel_requested) == ("running", True)
    assert (await client.get_task(enqueued.id)).cancel_requested
    # the worker acknowledges by recording the attempt as canceled
    assert await finish(pool, task, "canceled") == "canceled"
    (history,) = await client.task_attempts(enqueued.id)
    assert history.outcome == "canceled"


async def test_a_failure_after_cancellation_was_asked_does_not_retry(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """The user canceled it: a handler that fails while stopping must not earn a retry."""
    queue = await make_queue(max_attempts=5)
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await client.cancel(enqueued.id)
    assert await finish(pool, task, "failed") == "canceled"
    info = await client.get_task(enqueued.id)
    assert info.state == "canceled"
    assert info.finished_at is not None
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["failed"]


async def test_a_released_task_that_was_asked_to_cancel_is_canceled(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await client.cancel(enqueued.id)
    assert await store.release(pool, queue.id, "test-worker", [(task.id, task.attempt_id)]) == 1
    assert (await client.get_task(enqueued.id)).state == "canceled"
    assert await claim(pool, queue) == []


async def test_worker_stops_an_async_handler_on_cancel(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    started = asyncio.Event()
    interrupted: list[bool] = []

    @registry.task("sleepy")
    async def sleepy(ctx: TaskContext) -> None:
        started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            interrupted.append(True)
            raise

    # a 30 s lease renews every 10 s: a stop within a few seconds came from the notification
    async with running_worker(dsn, registry, [queue.full_name], lease_seconds=30):
        enqueued = await client.enqueue(queue.full_name, "sleepy")
        await asyncio.wait_for(started.wait(), 15)
        assert (await client.cancel(enqueued.id)).cancel_requested
        row = await wait_for_state(pool, enqueued.id, "canceled", limit=5)
    assert interrupted == [True]
    assert row["finished_at"] is not None
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["canceled"]


async def test_worker_stops_a_sync_handler_that_polls_for_cancellation(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    started = threading.Event()
    stopped = threading.Event()

    @registry.task("polling")
    def polling(ctx: TaskContext) -> str:
        started.set()
        deadline = time.monotonic() + 60
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped.set()
        return "stopped"

    async with running_worker(dsn, registry, [queue.full_name], lease_seconds=30):
        enqueued = await client.enqueue(queue.full_name, "polling")
        await wait_for(lambda: asyncio.sleep(0, started.is_set()), bool, what="handler start")
        await client.cancel(enqueued.id)
        await wait_for_state(pool, enqueued.id, "canceled", limit=5)
        await wait_for(lambda: asyncio.sleep(0, stopped.is_set()), bool, limit=5,
                       what="the sync handler to see ctx.cancel_requested")
    row = await task_row(pool, enqueued.id)
    assert row["result"] is None  # its late return is not recorded over the cancellation


async def test_cancel_one_of_many_running(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    release = asyncio.Event()
    running = 0

    @registry.task("wait")
    async def wait(ctx: TaskContext) -> int:
        nonlocal running
        running += 1
        await release.wait()
        return int(ctx.task_id)

    async with running_worker(dsn, registry, [queue.full_name], lease_seconds=30):
        results = await client.enqueue_many(queue.full_name, [TaskRequest("wait")] * 3)
        await wait_for(lambda: asyncio.sleep(0, running), lambda n: n == 3, what="3 running")
        await client.cancel(results[1].id)
        await wait_for_state(pool, results[1].id, "canceled", limit=5)
        release.set()
        for r in (results[0], results[2]):
            assert (await wait_for_state(pool, r.id, "succeeded"))["result"] == str(r.id)
