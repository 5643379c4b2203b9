"""A claimed task waits a moment between its claim and its start (the next claim goes out
first); a cancellation arriving then is recorded without running the handler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

import asyncpg

from taskq.store.execution import ClaimedTask, Completion
from taskq.worker.attempt import StopReason
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings


def _claimed(task_id: int) -> ClaimedTask:
    return ClaimedTask(
        queue_id=7, queue="default/emails", id=task_id, task_name="send", payload_json="{}",
        priority=50, attempt=1, attempt_id=uuid.uuid4(), max_attempts=3, timeout_s=30.0,
        correlation_id=None, idempotency_key=None, created_at=datetime.now(UTC),
            run_at=datetime.now(UTC),
    )


def test_a_task_canceled_before_it_began_is_recorded_canceled_without_running() -> None:
    registry = Registry()
    ran: list[int] = []

    @registry.task("send")
    async def send(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    settings = WorkerSettings(dsn="postgresql://127.0.0.1/db", queues=["default/emails"],
                              app="unused", metrics_port=0)
    # The database is never reached on this path.
    worker = Worker(cast(asyncpg.Pool, None), registry, settings, "w-1")
    claimed = _claimed(41)
    attempt = worker.admit(claimed)
    assert worker.attempts == {41: attempt}  # admitted: it holds a slot

    attempt.stop(StopReason.CANCELED)  # a cancellation notice arrives before it begins
    worker.begin(attempt)

    assert ran == []
    assert attempt.task is None
    assert worker.attempts == {}
    assert worker.unrecorded_outcomes() == [Completion(7, 41, claimed.attempt_id, "canceled")]
    assert worker.metrics.finished_count == {("default/emails", "send", "canceled"): 1}
