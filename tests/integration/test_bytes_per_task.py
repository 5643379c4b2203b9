"""Fewer bytes per task (migration 0025): a key-less batch is a plain INSERT, and a queue that
keeps no succeeded task deletes it as its success is recorded, unless something reads it later
(a callback URL, a webhook endpoint for the succeeded event)."""

from __future__ import annotations

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.models import QueueInfo
from taskq.webhooks import Event, WebhookSpec, new_secret
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish


async def _rows(pool: asyncpg.Pool, queue: QueueInfo) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT task_name, state FROM taskq.tasks WHERE queue_id = $1", queue.id)
    return {row["task_name"]: row["state"] for row in rows}


async def _attempt_rows(pool: asyncpg.Pool, queue: QueueInfo) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE queue_id = $1", queue.id)
    return count


async def test_a_key_less_batch_is_created_in_input_order(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(default_priority=40)
    requests = [
        TaskRequest("a", {"n": 1}),
        TaskRequest("b", {"n": 2}, priority=90, delay=60, max_attempts=5, timeout=7.5,
                    correlation_id="c-1", callback_url="https://example.com/hook"),
        TaskRequest("c", {"n": 3}),
    ]
    results = await client.enqueue_many(queue.full_name, requests)
    assert [r.created for r in results] == [True, True, True]
    assert len({r.id for r in results}) == 3
    tasks = [await client.get_task(r.id) for r in results]
    assert [t.task_name for t in tasks] == ["a", "b", "c"]
    assert [t.payload for t in tasks] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [(t.state, t.priority) for t in tasks] == [
        ("ready", 40), ("scheduled", 90), ("ready", 40)]
    row = await pool.fetchrow(
        "SELECT max_attempts, timeout_s, correlation_id, callback_url, idempotency_key"
        "  FROM taskq.tasks WHERE queue_id = $1 AND id = $2", queue.id, results[1].id)
    assert row is not None
    assert dict(row) == {"max_attempts": 5, "timeout_s": 7.5, "correlation_id": "c-1",
                         "callback_url": "https://example.com/hook", "idempotency_key": None}


async def test_sql_callers_without_key_arrays_take_the_plain_insert(
    pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    rows = await pool.fetch(
        "SELECT * FROM taskq.enqueue_many($1, ARRAY['x', 'y'], ARRAY['{}', '[1]']::json[])",
        queue.full_name)
    assert [(r["ord"], r["created"]) for r in rows] == [(1, True), (2, True)]
    assert await _rows(pool, queue) == {"x": "ready", "y": "ready"}


async def test_a_batch_with_one_key_still_settles_every_key(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await client.enqueue(queue.full_name, "t", idempotency_key="k")
    again = await client.enqueue_many(
        queue.full_name, [TaskRequest("t"), TaskRequest("t", idempotency_key="k")])
    assert again[0].created and not again[1].created
    assert again[1].id == first.id


async def test_zero_retention_deletes_a_success_as_it_is_recorded(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=0)
    ids = {r.id for r in await client.enqueue_many(
        queue.full_name, [TaskRequest("flaky", max_attempts=3), TaskRequest("ok"),
                          TaskRequest("bad", max_attempts=1)])}
    claimed = {t.task_name: t for t in await claim(pool, queue)}
    assert await finish(pool, claimed["flaky"], "failed") == "retrying"
    await pool.execute(
        "UPDATE taskq.tasks SET state = 'ready', run_at = now() WHERE queue_id = $1"
        " AND state = 'retrying'", queue.id)
    (retried,) = await claim(pool, queue)
    assert await _attempt_rows(pool, queue) == 1
    assert await finish(pool, retried, "succeeded", result={"r": 1}) == "succeeded"
    assert await finish(pool, claimed["ok"], "succeeded") == "succeeded"
    assert await finish(pool, claimed["bad"], "failed") == "dead"
    # the successes and the failed attempt before one of them are gone; the dead task stays
    assert await _rows(pool, queue) == {"bad": "dead"}
    assert await _attempt_rows(pool, queue) == 1  # the dead task's attempt
    assert len(ids) == 3
    # a repeated record of the same outcome finds nothing, as before
    assert await finish(pool, claimed["ok"], "succeeded") is None


async def test_a_stale_attempt_deletes_nothing(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(retention_succeeded_seconds=0)
    await client.enqueue(queue.full_name, "t")
    (first,) = await claim(pool, queue, lease=30)
    await pool.execute(
        "UPDATE taskq.tasks SET attempt_id = gen_random_uuid() WHERE queue_id = $1", queue.id)
    assert await finish(pool, first, "succeeded") is None
    assert await _rows(pool, queue) == {"t": "running"}


async def test_what_something_still_reads_is_kept(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    kept = await make_queue(retention_succeeded_seconds=86_400)
    hooked = await make_queue(retention_succeeded_seconds=0)
    other_events = await make_queue(retention_succeeded_seconds=0)
    secret = new_secret()
    await client.put_webhook(
        hooked.full_name, "all", WebhookSpec("https://example.com/a", secret))
    await client.put_webhook(
        other_events.full_name, "dead", WebhookSpec("https://example.com/d", secret,
                                                    events=(Event.DEAD,)))
    callbacks = await make_queue(retention_succeeded_seconds=0)
    for queue in (kept, hooked, other_events):
        await client.enqueue(queue.full_name, "t")
    await client.enqueue_many(callbacks.full_name, [
        TaskRequest("called", callback_url="https://example.com/cb"), TaskRequest("plain")])
    for queue in (kept, hooked, other_events, callbacks):
        for task in await claim(pool, queue):
            assert await finish(pool, task, "succeeded") == "succeeded"
    assert await _rows(pool, kept) == {"t": "succeeded"}
    assert await _rows(pool, hooked) == {"t": "succeeded"}
    assert await _rows(pool, other_events) == {}  # its endpoint hears only dead tasks
    assert await _rows(pool, callbacks) == {"called": "succeeded"}
