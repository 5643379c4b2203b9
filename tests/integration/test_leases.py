"""Leases: expiry and rescue, heartbeats, stale attempts, and giving tasks back."""

from __future__ import annotations

import json

import asyncpg
import pytest

from taskq import BackoffPolicy
from taskq.client import Client
from taskq.store import execution as store
from taskq.store import maintenance
from tests.conftest import MakeQueue
from tests.integration.helpers import (
    attempt_rows,
    claim,
    expire_lease,
    finish,
    make_due,
    task_row,
)


async def test_expired_lease_is_rescued_for_a_retry(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(backoff=BackoffPolicy(kind="fixed", base_seconds=5, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue, worker="crashed-worker")
    assert await maintenance.rescue_expired(pool, queue.id) == 0  # lease still good
    await expire_lease(pool, task.id)
    assert await maintenance.rescue_expired(pool, queue.id) == 1
    row = await task_row(pool, enqueued.id)
    assert row["state"] == "retrying"
    assert row["worker_id"] is None
    assert json.loads(row["error"])["type"] == "LeaseExpired"
    assert "crashed-worker" in json.loads(row["error"])["message"]
    now = await pool.fetchval("SELECT now()")
    assert (row["run_at"] - now).total_seconds() == pytest.approx(5, abs=2)
    (history,) = await attempt_rows(pool, enqueued.id)
    assert (history["outcome"], history["worker_id"], history["attempt"]) == (
        "lost", "crashed-worker", 1)
    assert history["attempt_id"] == task.attempt_id
    assert await maintenance.rescue_expired(pool, queue.id) == 0


async def test_expired_lease_out_of_attempts_is_dead(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1)
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await expire_lease(pool, task.id)
    assert await maintenance.rescue_expired(pool, queue.id) == 1
    info = await client.get_task(enqueued.id)
    assert (info.state, info.error["type"]) == ("dead", "LeaseExpired")
    assert info.finished_at is not None
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["lost"]


async def test_heartbeat_extends_the_lease_and_stores_progress(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue, lease=2)
    before = (await task_row(pool, task.id))["lease_expires_at"]
    alive = await store.heartbeat(pool, queue.id, [(task.id, task.attempt_id, '{"done": 3}')], 60)
    assert alive == {task.id: False}
    row = await task_row(pool, task.id)
    assert (row["lease_expires_at"] - before).total_seconds() > 50
    assert json.loads(row["progress"]) == {"done": 3}
    # no new progress: the last one stays
    await store.heartbeat(pool, queue.id, [(task.id, task.attempt_id, None)], 60)
    assert json.loads((await task_row(pool, task.id))["progress"]) == {"done": 3}
    # a renewed lease is not rescued
    await pool.execute("SELECT pg_sleep(0.01)")
    assert await maintenance.rescue_expired(pool, queue.id) == 0


async def test_heartbeat_reports_cancellation_and_lost_leases(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t")
    await client.enqueue(queue.full_name, "t")
    first, second = await claim(pool, queue)
    await client.cancel(first.id)
    await expire_lease(pool, second.id)
    await maintenance.rescue_expired(pool, queue.id)
    alive = await store.heartbeat(pool, queue.id, [(first.id, first.attempt_id, None),
                                                   (second.id, second.attempt_id, None)], 30)
    assert alive == {first.id: True}


async def test_a_stale_attempt_cannot_finish_the_task(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(backoff=BackoffPolicy(base_seconds=0, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    (stale,) = await claim(pool, queue, worker="slow")
    await expire_lease(pool, stale.id)
    assert await maintenance.rescue_expired(pool, queue.id) == 1
    (current,) = await claim(pool, queue, worker="fresh")
    assert current.attempt_id != stale.attempt_id
    assert current.attempt == 2

    assert await finish(pool, stale, "succeeded", worker="slow") is None
    assert await finish(pool, stale, "failed", worker="slow") is None
    assert await store.heartbeat(pool, queue.id, [(stale.id, stale.attempt_id, None)], 30) == {}
    assert await store.release(pool, queue.id, "slow", [(stale.id, stale.attempt_id)]) == 0
    row = await task_row(pool, enqueued.id)
    assert (row["state"], row["worker_id"], row["attempt_id"]) == (
        "running", "fresh", current.attempt_id)

    assert await finish(pool, current, "succeeded", worker="fresh") == "succeeded"
    history = await attempt_rows(pool, enqueued.id)
    assert [(h["attempt"], h["outcome"], h["worker_id"]) for h in history] == [
        (1, "lost", "slow"), (2, "succeeded", "fresh")]
    # completing twice (an ack retried after a lost reply) is harmless
    assert await finish(pool, current, "succeeded", worker="fresh") is None
    assert len(await attempt_rows(pool, enqueued.id)) == 2


async def test_release_gives_the_task_back_without_charging_an_attempt(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1)
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    assert await store.release(pool, queue.id, "test-worker", [(task.id, task.attempt_id)]) == 1
    info = await client.get_task(enqueued.id)
    assert (info.state, info.attempts, info.total_attempts) == ("ready", 0, 1)
    assert info.worker_id is None
    assert info.lease_expires_at is None
    (history,) = await client.task_attempts(enqueued.id)
    assert (history.outcome, history.error) == ("released", None)
    # with max_attempts=1 the task still gets its one real try
    (again,) = await claim(pool, queue)
    assert again.attempt == 2
    assert await finish(pool, again, "failed") == "dead"


async def test_released_task_keeps_its_place_in_line(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue, limit=1)
    await client.enqueue(queue.full_name, "t")
    await store.release(pool, queue.id, "test-worker", [(task.id, task.attempt_id)])
    assert (await claim(pool, queue, limit=1))[0].id == first.id


async def test_rescued_task_that_was_asked_to_cancel_is_canceled(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await client.cancel(task.id)
    await expire_lease(pool, task.id)
    assert await maintenance.rescue_expired(pool, queue.id) == 1
    assert (await client.get_task(enqueued.id)).state == "canceled"


async def test_rescued_task_comes_back_after_its_backoff(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    await expire_lease(pool, task.id)
    await maintenance.rescue_expired(pool, queue.id)
    await make_due(pool, enqueued.id)
    (again,) = await claim(pool, queue)
    assert again.id == enqueued.id
    assert again.attempt == 2
