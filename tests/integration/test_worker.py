"""The real Worker loop, in-process: draining, results, failures, timeouts, hooks, progress,
unknown tasks, graceful shutdown, polling-only mode and the task context."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import asyncpg

from taskq import BackoffPolicy, TaskCanceledError, TaskContext, TaskRequest
from taskq.claim_order import ResumePoint
from taskq.client import Client
from taskq.models import QueueSettings
from taskq.store.execution import ClaimedTask
from taskq.store.worker_store import WorkerStore
from taskq.worker.context import current_task
from taskq.worker.http import HealthServer
from taskq.worker.metrics import WorkerMetrics
from taskq.worker.registry import Registry
from tests.conftest import MakeQueue
from tests.integration.helpers import (
    attempt_rows,
    running_worker,
    task_row,
    task_state,
    wait_for,
    wait_for_state,
    worker_stop,
)


async def _states(pool: asyncpg.Pool, ids: list[int]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) GROUP BY state", ids)
    return {row["state"]: row["n"] for row in rows}


def _registry() -> Registry:
    registry = Registry()

    @registry.task("add")
    async def add(ctx: TaskContext) -> int:
        await asyncio.sleep(0)
        return int(ctx.payload["a"]) + int(ctx.payload["b"])

    @registry.task("upper")
    def upper(ctx: TaskContext) -> dict[str, str]:
        time.sleep(0.001)
        return {"text": str(ctx.payload["text"]).upper(),
                "thread": threading.current_thread().name}

    @registry.task("nothing")
    async def nothing(ctx: TaskContext) -> None:
        return None

    return registry


async def test_worker_drains_async_and_sync_tasks_and_stores_results(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    requests = [TaskRequest("add", {"a": n, "b": 1}) for n in range(150)]
    requests += [TaskRequest("upper", {"text": f"t{n}"}) for n in range(50)]
    requests += [TaskRequest("nothing")]
    results = await client.enqueue_many(queue.full_name, requests)
    ids = [r.id for r in results]
    async with running_worker(dsn, _registry(), [queue.full_name], concurrency=20):
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": len(ids)},
                       limit=30, what="every task to succeed")
    assert (await client.get_task(ids[7])).result == 8
    upper = await client.get_task(ids[150])
    assert upper.result["text"] == "T0"
    assert upper.result["thread"].startswith("taskq-task")  # sync handlers run in threads
    assert (await client.get_task(ids[-1])).result is None
    history = await client.task_attempts(ids[0])
    assert [(h.attempt, h.outcome) for h in history] == [(1, "succeeded")]
    stats = await client.queue_stats(queue.full_name)
    assert (stats.ready, stats.running, stats.succeeded_last_minute) == (0, 0, len(ids))


async def test_worker_serves_several_queues(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    first, second = await make_queue(), await make_queue()
    a = await client.enqueue(first.full_name, "add", {"a": 1, "b": 2})
    b = await client.enqueue(second.full_name, "add", {"a": 3, "b": 4})
    async with running_worker(dsn, _registry(), [first.full_name, second.full_name]):
        assert (await wait_for_state(pool, a.id, "succeeded"))["result"] == "3"
        assert (await wait_for_state(pool, b.id, "succeeded"))["result"] == "7"


async def test_handler_exception_is_retried_then_dead(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=3, backoff=BackoffPolicy(base_seconds=0, jitter=0))
    registry = Registry()
    calls: list[int] = []

    @registry.task("flaky")
    async def flaky(ctx: TaskContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt} broke")

    enqueued = await client.enqueue(queue.full_name, "flaky")
    async with running_worker(dsn, registry, [queue.full_name]):
        await wait_for_state(pool, enqueued.id, "dead", limit=20)
    assert calls == [1, 2, 3]
    task = await client.get_task(enqueued.id)
    assert task.error["type"] == "ValueError"
    assert task.error["message"] == "attempt 3 broke"
    assert "Traceback" in task.error["traceback"]
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["failed"] * 3


async def test_a_handler_that_recovers_succeeds_on_retry(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=3, backoff=BackoffPolicy(base_seconds=0, jitter=0))
    registry = Registry()

    @registry.task("second_time_lucky")
    def lucky(ctx: TaskContext) -> int:
        if ctx.attempt < 2:
            raise RuntimeError("not yet")
        return ctx.attempt

    enqueued = await client.enqueue(queue.full_name, "second_time_lucky")
    async with running_worker(dsn, registry, [queue.full_name]):
        row = await wait_for_state(pool, enqueued.id, "succeeded")
    assert json.loads(row["result"]) == 2
    assert row["error"] is None


async def test_timeouts_end_the_attempt_as_timed_out(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1, timeout_seconds=60)
    registry = Registry()
    sync_saw_cancel = threading.Event()

    @registry.task("slow_handler_timeout", timeout=0.3)
    async def slow(ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    @registry.task("slow_task_timeout")
    async def slow_task(ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    @registry.task("slow_sync")
    def slow_sync(ctx: TaskContext) -> None:
        if ctx.wait_canceled(60):
            sync_saw_cancel.set()

    by_handler = await client.enqueue(queue.full_name, "slow_handler_timeout")
    by_task = await client.enqueue(queue.full_name, "slow_task_timeout", timeout=0.3)
    sync = await client.enqueue(queue.full_name, "slow_sync", timeout=0.3)
    async with running_worker(dsn, registry, [queue.full_name]):
        for task_id in (by_handler.id, by_task.id, sync.id):
            row = await wait_for_state(pool, task_id, "dead", limit=20)
            assert "timeout of 0.3s" in json.loads(row["error"])["message"]
            (attempt,) = await attempt_rows(pool, task_id)
            assert attempt["outcome"] == "timed_out"
        await wait_for(lambda: asyncio.sleep(0, sync_saw_cancel.is_set()), bool, limit=5,
                       what="the timed-out sync handler to see ctx.cancel_requested")


async def test_hooks_run_around_handlers(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1)
    registry = Registry()
    events: list[tuple[str, str, Any]] = []

    @registry.before_task
    def before(ctx: TaskContext) -> None:
        events.append(("before", ctx.task_name, ctx.attempt))

    @registry.after_task
    async def after(ctx: TaskContext, value: Any) -> None:
        events.append(("after", ctx.task_name, value))

    @registry.on_task_error
    def on_error(ctx: TaskContext, error: BaseException) -> None:
        events.append(("error", ctx.task_name, type(error).__name__))

    @registry.task("ok")
    async def ok(ctx: TaskContext) -> str:
        return "fine"

    @registry.task("bad")
    def bad(ctx: TaskContext) -> None:
        raise KeyError("missing")

    good = await client.enqueue(queue.full_name, "ok")
    failing = await client.enqueue(queue.full_name, "bad")
    async with running_worker(dsn, registry, [queue.full_name]):
        await wait_for_state(pool, good.id, "succeeded")
        await wait_for_state(pool, failing.id, "dead")
    assert sorted(events) == sorted([
        ("before", "ok", 1), ("after", "ok", "fine"),
        ("before", "bad", 1), ("error", "bad", "KeyError"),
    ])
    assert events.index(("before", "ok", 1)) < events.index(("after", "ok", "fine"))


async def test_progress_is_stored_with_the_heartbeat(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    finish = asyncio.Event()

    @registry.task("long")
    async def long(ctx: TaskContext) -> str:
        ctx.report_progress({"done": 1, "of": 3})
        await finish.wait()
        return "done"

    enqueued = await client.enqueue(queue.full_name, "long")
    async with running_worker(dsn, registry, [queue.full_name], lease_seconds=1.5,
                              poll_interval=0.2):
        first_lease = (await wait_for_state(pool, enqueued.id, "running"))["lease_expires_at"]
        row = await wait_for(lambda: task_row(pool, enqueued.id),
                             lambda r: r["progress"] is not None, limit=10,
                             what="progress to be stored")
        assert json.loads(row["progress"]) == {"done": 1, "of": 3}
        # the heartbeat keeps the lease ahead of expiry while the handler runs
        later = await wait_for(lambda: task_row(pool, enqueued.id),
                               lambda r: r["lease_expires_at"] > first_lease, limit=10,
                               what="the lease to be renewed")
        assert later["state"] == "running"
        finish.set()
        await wait_for_state(pool, enqueued.id, "succeeded")


async def test_unknown_task_name_is_dead_with_a_clear_error(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=5)
    enqueued = await client.enqueue(queue.full_name, "nobody_handles_this")
    async with running_worker(dsn, _registry(), [queue.full_name]):
        row = await wait_for_state(pool, enqueued.id, "dead")
    error = json.loads(row["error"])
    assert error["type"] == "UnknownTask"
    assert "'nobody_handles_this'" in error["message"]
    assert "add, nothing, upper" in error["message"]
    assert row["attempts"] == 1  # not retried: this worker cannot run it


async def test_graceful_shutdown_lets_a_short_task_finish(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    started = asyncio.Event()

    @registry.task("short")
    async def short(ctx: TaskContext) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "finished"

    enqueued = await client.enqueue(queue.full_name, "short")
    async with running_worker(dsn, registry, [queue.full_name], shutdown_grace=10) as worker:
        await asyncio.wait_for(started.wait(), 15)
        worker_stop(worker).set()
    row = await task_row(pool, enqueued.id)  # the worker has exited: no waiting needed
    assert (row["state"], json.loads(row["result"])) == ("succeeded", "finished")


async def test_graceful_shutdown_gives_back_a_task_past_the_grace(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1)
    registry = Registry()
    started = asyncio.Event()
    sync_started = threading.Event()

    @registry.task("endless")
    async def endless(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(120)

    @registry.task("endless_sync")
    def endless_sync(ctx: TaskContext) -> None:
        sync_started.set()
        ctx.wait_canceled(120)

    a = await client.enqueue(queue.full_name, "endless")
    s = await client.enqueue(queue.full_name, "endless_sync")
    async with running_worker(dsn, registry, [queue.full_name], shutdown_grace=0.3) as worker:
        await asyncio.wait_for(started.wait(), 15)
        await wait_for(lambda: asyncio.sleep(0, sync_started.is_set()), bool)
        worker_stop(worker).set()
    for task_id in (a.id, s.id):
        task = await client.get_task(task_id)
        assert (task.state, task.attempts, task.total_attempts) == ("ready", 0, 1)
        assert task.worker_id is None
        assert [h.outcome for h in await client.task_attempts(task_id)] == ["released"]


async def test_polling_only_worker_drains(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    async with running_worker(dsn, _registry(), [queue.full_name], listen=False,
                              poll_interval=0.2):
        await asyncio.sleep(0.3)  # let the worker go idle first: only polling can wake it
        results = await client.enqueue_many(
            queue.full_name, [TaskRequest("add", {"a": n, "b": n}) for n in range(30)])
        ids = [r.id for r in results]
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 30},
                       what="every task to succeed")


class _ShortClaims(WorkerStore):
    """Each claim takes one task fewer than asked, as when other workers' claims hold part of
    the batch (SKIP LOCKED): claims come back short while the backlog lasts."""

    async def claim(
        self, queue_id: int, queue: str, worker_id: str, limit: int, lease_s: float,
        promote: bool, resume: ResumePoint | None = None,
    ) -> list[ClaimedTask]:
        return await super().claim(
            queue_id, queue, worker_id, max(1, limit - 1), lease_s, promote, resume)


async def test_polling_only_worker_drains_a_backlog_without_waiting_for_its_poll(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Without notifications, claims that return tasks are followed as soon as slots free:
    only an empty claim waits for the poll. Before, every short claim waited a poll interval
    (here 10 s), so these 60 tasks took about a minute instead of well under a second."""
    queue = await make_queue()
    results = await client.enqueue_many(
        queue.full_name, [TaskRequest("nothing", {}) for _ in range(60)])
    ids = [r.id for r in results]
    async with running_worker(dsn, _registry(), [queue.full_name], store=_ShortClaims,
                              listen=False, poll_interval=10.0, batch_size=10):
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 60},
                       limit=5.0, what="the backlog to drain within half a poll interval")


async def test_task_context_is_visible_inside_handlers(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    seen: dict[str, Any] = {}

    @registry.task("async_ctx")
    async def async_ctx(ctx: TaskContext) -> None:
        current = current_task.get()
        assert current is ctx
        seen["async"] = (current.correlation_id, current.task_id, current.queue)

    @registry.task("sync_ctx")
    def sync_ctx(ctx: TaskContext) -> None:
        current = current_task.get()
        assert current is ctx
        seen["sync"] = (current.correlation_id, current.idempotency_key, current.max_attempts)

    a = await client.enqueue(queue.full_name, "async_ctx", correlation_id="req-1")
    s = await client.enqueue(queue.full_name, "sync_ctx", correlation_id="req-2",
                             idempotency_key="key-2", max_attempts=4)
    async with running_worker(dsn, registry, [queue.full_name]):
        await wait_for_state(pool, a.id, "succeeded")
        await wait_for_state(pool, s.id, "succeeded")
    assert seen == {"async": ("req-1", a.id, queue.full_name), "sync": ("req-2", "key-2", 4)}
    assert current_task.get() is None


async def test_tasks_enqueued_by_a_handler_inherit_its_correlation_id(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    children: list[int] = []

    @registry.task("parent")
    async def parent(ctx: TaskContext) -> None:
        children.append((await client.enqueue(queue.full_name, "child")).id)
        children.append(
            (await client.enqueue(queue.full_name, "child", correlation_id="own")).id)

    @registry.task("child")
    async def child(ctx: TaskContext) -> None:
        return None

    enqueued = await client.enqueue(queue.full_name, "parent", correlation_id="req-9")
    async with running_worker(dsn, registry, [queue.full_name]):
        await wait_for_state(pool, enqueued.id, "succeeded")
    inherited, explicit = [await client.get_task(c) for c in children]
    assert inherited.correlation_id == "req-9"
    assert explicit.correlation_id == "own"


async def test_a_lost_lease_stops_the_handler_and_records_nothing(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    started = asyncio.Event()
    stopped: list[str] = []

    @registry.task("held")
    async def held(ctx: TaskContext) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(str(ctx.attempt_id))
            raise
        return "late"

    enqueued = await client.enqueue(queue.full_name, "held")
    async with running_worker(dsn, registry, [queue.full_name], lease_seconds=1.5):
        await asyncio.wait_for(started.wait(), 15)
        first = await task_row(pool, enqueued.id)
        # another party takes the task over (as if this worker had been cut off)
        await pool.execute(
            "UPDATE taskq.tasks SET attempt_id = gen_random_uuid(), worker_id = 'other' "
            "WHERE id = $1", enqueued.id)
        await wait_for(lambda: asyncio.sleep(0, stopped), bool, limit=10,
                       what="the heartbeat to notice the lost lease")
    assert stopped == [str(first["attempt_id"])]
    row = await task_row(pool, enqueued.id)
    assert (row["state"], row["worker_id"], row["result"]) == ("running", "other", None)
    assert await attempt_rows(pool, enqueued.id) == []


async def test_maintenance_rescues_a_crashed_workers_task_and_runs_it(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(backoff=BackoffPolicy(base_seconds=0, jitter=0))
    enqueued = await client.enqueue(queue.full_name, "add", {"a": 2, "b": 2})
    # a worker that claims and then vanishes, leaving a lease that runs out in a second
    await pool.fetch("SELECT * FROM taskq.claim($1, 'vanished', 1, 1.0)", queue.id)
    async with running_worker(dsn, _registry(), [queue.full_name], maintenance_interval=0.3):
        row = await wait_for_state(pool, enqueued.id, "succeeded", limit=20)
    assert json.loads(row["result"]) == 4
    history = await attempt_rows(pool, enqueued.id)
    assert (history[0]["outcome"], history[0]["worker_id"]) == ("lost", "vanished")
    assert [h["outcome"] for h in history] == ["lost", "succeeded"]


async def test_a_handler_result_that_is_not_json_fails_the_attempt(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=1)
    registry = Registry()

    @registry.task("sets")
    async def sets(ctx: TaskContext) -> set[int]:
        return {1, 2}

    enqueued = await client.enqueue(queue.full_name, "sets")
    async with running_worker(dsn, registry, [queue.full_name]):
        row = await wait_for_state(pool, enqueued.id, "dead")
    error = json.loads(row["error"])
    assert "invalid result" in error["message"]
    assert "not JSON-serialisable" in error["message"]


async def test_a_handler_may_end_its_attempt_as_canceled(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(max_attempts=3)
    registry = Registry()

    @registry.task("gives_up")
    def gives_up(ctx: TaskContext) -> None:
        raise TaskCanceledError

    enqueued = await client.enqueue(queue.full_name, "gives_up")
    async with running_worker(dsn, registry, [queue.full_name]):
        await wait_for_state(pool, enqueued.id, "canceled")
    assert [a.outcome for a in await client.task_attempts(enqueued.id)] == ["canceled"]


async def test_worker_runs_at_most_its_concurrency(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    registry = Registry()
    running = 0
    most = 0

    @registry.task("busy")
    async def busy(ctx: TaskContext) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1

    results = await client.enqueue_many(queue.full_name, [TaskRequest("busy")] * 40)
    ids = [r.id for r in results]
    async with running_worker(dsn, registry, [queue.full_name], concurrency=3, batch_size=2):
        await wait_for(lambda: _states(pool, ids), lambda s: s == {"succeeded": 40},
                       what="every task to succeed")
    assert most == 3


async def test_a_paused_queue_is_served_once_resumed(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue(paused=True)
    enqueued = await client.enqueue(queue.full_name, "add", {"a": 1, "b": 1})
    async with running_worker(dsn, _registry(), [queue.full_name]):
        await asyncio.sleep(0.5)  # several polls: a paused queue hands out nothing
        assert await task_state(pool, enqueued.id) == "ready"
        await client.ensure_queue(queue.full_name, QueueSettings(paused=False))
        await wait_for_state(pool, enqueued.id, "succeeded")


async def _http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return response


async def test_health_server_answers_over_http() -> None:
    metrics = WorkerMetrics()
    metrics.started("a/b", "t")
    server = HealthServer(metrics.registry, lambda: None, lambda: False)
    port = await server.start("127.0.0.1", 0)
    try:
        healthz = await _http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        readyz = await _http(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        scraped = await _http(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        post = await _http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        missing = await _http(port, b"GET /nope HTTP/1.1\r\n\r\n")
    finally:
        await server.stop()
    assert healthz.startswith(b"HTTP/1.1 200 OK\r\n")
    assert healthz.endswith(b"\r\n\r\nok\n")
    assert b"Content-Length: 3\r\n" in healthz
    assert readyz.startswith(b"HTTP/1.1 503 ")
    assert b'taskq_tasks_started_total{queue="a/b",task="t"} 1.0' in scraped
    assert post.startswith(b"HTTP/1.1 405 ")
    assert missing.startswith(b"HTTP/1.1 404 ")


async def test_a_stubborn_timed_out_sync_handler_does_not_time_out_the_next_task(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """A thread cannot be killed: a timed-out sync handler that ignores ctx.cancel_requested
    keeps its thread, and the next sync task waits for one. That wait is not its run time."""
    queue = await make_queue(max_attempts=1)
    registry = Registry()

    @registry.task("stubborn", timeout=0.3)
    def stubborn(ctx: TaskContext) -> None:
        time.sleep(1.5)  # ignores ctx.cancel_requested

    @registry.task("quick", timeout=0.5)
    def quick(ctx: TaskContext) -> str:
        return "ran"

    first = await client.enqueue(queue.full_name, "stubborn")
    async with running_worker(dsn, registry, [queue.full_name], concurrency=1):
        assert json.loads((await wait_for_state(pool, first.id, "dead"))["error"])["message"] \
            == "handler ran longer than its timeout of 0.3s"
        second = await client.enqueue(queue.full_name, "quick")
        row = await wait_for_state(pool, second.id, "succeeded", "dead")
    assert (row["state"], json.loads(row["result"])) == ("succeeded", "ran")


async def test_delayed_tasks_and_retries_start_when_due_not_a_poll_later(
    dsn: str, client: Client, make_queue: MakeQueue
) -> None:
    """An idle worker sleeps until the next delayed task is due: with a 30 s poll, a task
    delayed 1 s, and its retry 1 s after failing, start within seconds."""
    queue = await make_queue(backoff=BackoffPolicy(kind="fixed", base_seconds=1, jitter=0))
    registry = Registry()
    started: list[float] = []
    done = asyncio.Event()

    @registry.task("flaky")
    async def flaky(ctx: TaskContext) -> None:
        started.append(time.monotonic())
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        done.set()

    async with running_worker(dsn, registry, [queue.full_name], poll_interval=30.0,
                              lease_seconds=90.0):
        await asyncio.sleep(0.3)  # idle: it has claimed once and found nothing
        enqueued_at = time.monotonic()
        await client.enqueue(queue.full_name, "flaky", delay=1.0)
        await asyncio.wait_for(done.wait(), 15)
    first, second = started
    assert 0.9 <= first - enqueued_at < 5
    assert 0.9 <= second - first < 5
