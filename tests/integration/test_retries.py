"""Failures: retries with backoff, dead letters, fatal errors, and replaying the dead."""

from __future__ import annotations

import asyncpg
import pytest

from taskq import BackoffPolicy, TaskRequest
from taskq.client import Client
from taskq.store import execution as store
from taskq.store.execution import Completion
from tests.conftest import MakeQueue
from tests.integration.helpers import attempt_rows, claim, finish, make_due, task_row


async def test_a_failed_attempt_is_retried_after_the_backoff(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(backoff=BackoffPolicy(kind="fixed", base_seconds=30, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    assert await finish(pool, task, "failed", error={"type": "E", "message": "m"}) == "retrying"
    row = await task_row(pool, enqueued.id)
    assert row["state"] == "retrying"
    assert row["finished_at"] is None
    assert row["worker_id"] is None
    assert row["lease_expires_at"] is None
    now = await pool.fetchval("SELECT now()")
    assert (row["run_at"] - now).total_seconds() == pytest.approx(30, abs=2)
    assert await claim(pool, queue) == []  # not before its time
    stats = await client.queue_stats(queue.full_name)
    assert (stats.scheduled, stats.ready, stats.running) == (1, 0, 0)
    (history,) = await client.task_attempts(enqueued.id)
    assert (history.attempt, history.outcome, history.error) == (1, "failed", {"type": "E",
                                                                             "message": "m"})
    assert history.attempt_id == str(task.attempt_id)

    await make_due(pool, enqueued.id)
    (again,) = await claim(pool, queue, worker="w-2")
    assert again.id == enqueued.id
    assert again.attempt == 2
    assert again.attempt_id != task.attempt_id

    # the success is recorded in the task row, and the history shows every attempt
    assert await finish(pool, again, "succeeded", worker="w-2") == "succeeded"
    row = await task_row(pool, enqueued.id)
    assert (row["worker_id"], row["attempt_id"]) == ("w-2", again.attempt_id)
    failed, succeeded = await client.task_attempts(enqueued.id)
    assert (failed.attempt, failed.outcome) == (1, "failed")
    assert failed.attempt_id == str(task.attempt_id)
    assert (succeeded.attempt, succeeded.outcome, succeeded.attempt_id, succeeded.worker_id,
            succeeded.error) == (2, "succeeded", str(again.attempt_id), "w-2", None)
    assert succeeded.started_at <= succeeded.finished_at == row["finished_at"]


async def test_out_of_attempts_the_task_is_dead_with_its_error(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=2, backoff=BackoffPolicy(base_seconds=0, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    (first,) = await claim(pool, queue)
    assert await finish(pool, first, "failed") == "retrying"
    (second,) = await claim(pool, queue)  # zero backoff: due at once
    assert await finish(pool, second, "timed_out",
                        error={"type": "Timeout", "message": "too slow"}) == "dead"
    task = await client.get_task(enqueued.id)
    assert (task.state, task.attempts, task.total_attempts) == ("dead", 2, 2)
    assert task.error == {"type": "Timeout", "message": "too slow"}
    assert task.finished_at is not None
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["failed", "timed_out"]
    stats = await client.queue_stats(queue.full_name)
    assert (stats.dead, stats.dead_last_minute) == (1, 1)
    assert await claim(pool, queue) == []


async def test_per_task_max_attempts_overrides_the_queue(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=5)
    await client.enqueue(queue.full_name, "t", max_attempts=1)
    (task,) = await claim(pool, queue)
    assert task.max_attempts == 1
    assert await finish(pool, task, "failed") == "dead"


async def test_fatal_is_dead_at_once(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=10)
    enqueued = await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    assert await finish(pool, task, "fatal", error={"type": "Bad", "message": "no"}) == "dead"
    info = await client.get_task(enqueued.id)
    assert (info.state, info.attempts, info.error["type"]) == ("dead", 1, "Bad")
    (history,) = await client.task_attempts(enqueued.id)
    assert history.outcome == "failed"


async def test_unknown_outcome_is_refused(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await client.enqueue(queue.full_name, "t")
    (task,) = await claim(pool, queue)
    with pytest.raises(asyncpg.PostgresError, match="unknown outcome"):
        await finish(pool, task, "exploded")  # type: ignore[arg-type]
    assert (await task_row(pool, task.id))["state"] == "running"


async def _delay(
    pool: asyncpg.Pool, kind: str, base: float, cap: float, jitter: float, attempt: int
) -> float:
    value: float = await pool.fetchval(
        "SELECT taskq.retry_delay($1, $2, $3, $4, $5)", kind, base, cap, jitter, attempt)
    return value


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("exponential", [2, 4, 8, 16, 32, 64, 100, 100]),
        ("linear", [2, 4, 6, 8, 10, 12, 14, 16]),
        ("fixed", [2, 2, 2, 2, 2, 2, 2, 2]),
    ],
)
async def test_retry_delay_without_jitter(pool: asyncpg.Pool, kind: str,
                                          expected: list[float]) -> None:
    got = [await _delay(pool, kind, 2, 100, 0, attempt) for attempt in range(1, 9)]
    assert got == pytest.approx(expected)


async def test_retry_delay_exponential_never_overflows(pool: asyncpg.Pool) -> None:
    assert await _delay(pool, "exponential", 1, 3600, 0, 1000) == 3600
    assert await _delay(pool, "exponential", 1, 3600, 0, 0) == 1  # attempt 0 reads as 1


@pytest.mark.parametrize("kind", ["exponential", "linear", "fixed"])
async def test_retry_delay_jitter_stays_within_bounds(pool: asyncpg.Pool, kind: str) -> None:
    base = {"exponential": 10 * 2**2, "linear": 10 * 3, "fixed": 10}[kind]
    values = [await _delay(pool, kind, 10, 1000, 0.25, 3) for _ in range(60)]
    assert all(base * 0.75 <= v <= base * 1.25 for v in values), values
    assert len(set(values)) > 1  # jitter actually spreads retries


async def test_retry_delay_with_jitter_is_capped_at_max(pool: asyncpg.Pool) -> None:
    values = [await _delay(pool, "exponential", 10, 50, 1.0, 10) for _ in range(40)]
    assert all(0 <= v <= 50 for v in values)


async def test_linear_backoff_schedules_retries(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(
        max_attempts=4, backoff=BackoffPolicy(kind="linear", base_seconds=10, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "t")
    for expected in (10, 20, 30):
        (task,) = await claim(pool, queue)
        assert await finish(pool, task, "failed") == "retrying"
        row = await task_row(pool, enqueued.id)
        delay = (row["run_at"] - await pool.fetchval("SELECT now()")).total_seconds()
        assert delay == pytest.approx(expected, abs=2)
        await make_due(pool, enqueued.id)


async def _kill(client: Client, pool: asyncpg.Pool, queue_name: str, **kwargs: object) -> int:
    """Enqueue one task and let it die (max_attempts=1)."""
    result = await client.enqueue(queue_name, "t", max_attempts=1, **kwargs)  # type: ignore[arg-type]
    queue = await client.get_queue(queue_name)
    (task,) = await claim(pool, queue)
    assert task.id == result.id
    assert await finish(pool, task, "failed") == "dead"
    return result.id


async def test_list_dead_and_replay_keeps_history(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await _kill(client, pool, queue.full_name)
    second = await _kill(client, pool, queue.full_name)
    await client.enqueue(queue.full_name, "t")  # alive: never listed
    dead = await client.list_dead(queue.full_name)
    assert [t.id for t in dead] == [second, first]  # newest first
    assert all(t.state == "dead" and t.error["type"] == "Boom" for t in dead)
    assert [t.id for t in await client.list_dead(queue.full_name, limit=1)] == [second]

    result = await client.replay_dead(queue.full_name, [first])
    assert (result.replayed, result.skipped) == (1, 0)
    task = await client.get_task(first)
    assert (task.state, task.attempts, task.total_attempts) == ("ready", 0, 1)
    assert task.finished_at is None
    assert [t.id for t in await client.list_dead(queue.full_name)] == [second]

    (again,) = [t for t in await claim(pool, queue, limit=10) if t.id == first]
    assert again.attempt == 2  # total attempts keep counting: history rows never collide
    assert await finish(pool, again, "succeeded") == "succeeded"
    history = await attempt_rows(pool, first)
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "failed"), (2, "succeeded")]


async def test_replay_all(client: Client, pool: asyncpg.Pool, make_queue: MakeQueue) -> None:
    queue = await make_queue()
    ids = [await _kill(client, pool, queue.full_name) for _ in range(3)]
    result = await client.replay_dead(queue.full_name)
    assert (result.replayed, result.skipped) == (3, 0)
    assert {(await client.get_task(i)).state for i in ids} == {"ready"}
    assert (await client.replay_dead(queue.full_name)).replayed == 0


async def test_replay_skips_a_key_held_by_a_newer_unfinished_task(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    dead = await _kill(client, pool, queue.full_name, idempotency_key="order-7")
    newer = await client.enqueue(queue.full_name, "t", idempotency_key="order-7")
    assert newer.created
    result = await client.replay_dead(queue.full_name, [dead])
    assert (result.replayed, result.skipped) == (0, 1)
    assert (await client.get_task(dead)).state == "dead"


async def test_replay_of_two_dead_tasks_sharing_a_key_revives_one(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Both died, so the key is free; replaying both would make two unfinished tasks hold it."""
    queue = await make_queue()
    older = await _kill(client, pool, queue.full_name, idempotency_key="k")
    newer = await _kill(client, pool, queue.full_name, idempotency_key="k")
    result = await client.replay_dead(queue.full_name)
    assert (result.replayed, result.skipped) == (1, 1)
    assert (await client.get_task(newer)).state == "ready"
    assert (await client.get_task(older)).state == "dead"


async def test_one_batch_of_mixed_outcomes(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Outcomes recorded in one batch each take their own path."""
    queue = await make_queue(max_attempts=2, backoff=BackoffPolicy(base_seconds=60, jitter=0))
    await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 4)
    tasks = await claim(pool, queue, limit=4)
    outcomes = ["succeeded", "failed", "fatal", "canceled"]
    states = await store.complete(pool, "test-worker", [
        Completion(t.queue_id, t.id, t.attempt_id, o, None,  # type: ignore[arg-type]
                   None if o in ("succeeded", "canceled") else '{"type": "E"}')
        for t, o in zip(tasks, outcomes, strict=True)])
    assert [states[t.id] for t in tasks] == ["succeeded", "retrying", "dead", "canceled"]
