"""The worker's side of the store: claim, complete, heartbeat, release, and its beat.
Maintenance (expired leases, retention) is in store/maintenance.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from taskq import tracing
from taskq.claim_order import ResumePoint
from taskq.store.sqlfiles import query
from taskq.store.types import Executor

Outcome = Literal["succeeded", "failed", "fatal", "timed_out", "canceled"]


# Not frozen: one of each is made per task, and a frozen dataclass's __init__ sets every field
# through object.__setattr__ (it was a tenth of the worker's CPU).
@dataclass(slots=True)
class ClaimedTask:
    queue_id: int
    queue: str
    id: int
    task_name: str
    payload_json: str
    priority: int
    attempt: int
    attempt_id: uuid.UUID
    max_attempts: int
    timeout_s: float
    correlation_id: str | None
    idempotency_key: str | None
    created_at: datetime
    run_at: datetime
    traceparent: str | None = None  # read only when the worker traces (taskq.tracing)


@dataclass(slots=True)
class Completion:
    """The outcome of one attempt; result and error are JSON text (or None)."""

    queue_id: int
    id: int
    attempt_id: uuid.UUID
    outcome: Outcome
    result_json: str | None = None
    error_json: str | None = None


async def claim(
    db: Executor,
    queue_id: int,
    queue: str,
    worker_id: str,
    limit: int,
    lease_s: float,
    promote: bool = True,
    resume: ResumePoint | None = None,
) -> list[ClaimedTask]:
    """Claim up to `limit` tasks in claim order, after `resume` if given; `promote` first makes
    due delayed and retrying tasks ready (and the claim starts no later than they)."""
    if tracing.active():
        with tracing.batch_span("receive", queue, limit, worker_id):
            claimed = await _claim(db, queue_id, queue, worker_id, limit, lease_s, promote, resume)
            await _read_traceparents(db, queue_id, claimed)
            return claimed
    return await _claim(db, queue_id, queue, worker_id, limit, lease_s, promote, resume)


async def _claim(
    db: Executor,
    queue_id: int,
    queue: str,
    worker_id: str,
    limit: int,
    lease_s: float,
    promote: bool,
    resume: ResumePoint | None,
) -> list[ClaimedTask]:
    rows = await db.fetch(
        query("claim"),
        queue_id,
        worker_id,
        limit,
        lease_s,
        promote,
        None if resume is None else resume.priority,
        None if resume is None else resume.run_at,
        0 if resume is None else resume.id,
    )
    return [ClaimedTask(queue_id, queue, *row) for row in rows]


async def _read_traceparents(db: Executor, queue_id: int, claimed: list[ClaimedTask]) -> None:
    """A second query, only when tracing: the claim itself stays as it is without it."""
    if not claimed:
        return
    rows = await db.fetch(query("task_traceparents"), queue_id, [t.id for t in claimed])
    found = {row["id"]: row["traceparent"] for row in rows}
    for task in claimed:
        task.traceparent = found.get(task.id)


# Most outcomes recorded per statement: bounds statement size and lock time.
COMPLETE_CHUNK = 1_000


def _details(items: Sequence[Completion]) -> str | None:
    """{"<task id>": {"result": ..., "error": ...}} for the tasks that have either; None if none.
    Built from JSON text already encoded, so results are not decoded and encoded again."""
    parts = []
    for c in items:
        if c.result_json is not None or c.error_json is not None:
            fields = []
            if c.result_json is not None:
                fields.append(f'"result":{c.result_json}')
            if c.error_json is not None:
                fields.append(f'"error":{c.error_json}')
            parts.append(f'"{c.id}":{{{",".join(fields)}}}')
    return "{" + ",".join(parts) + "}" if parts else None


async def complete(db: Executor, worker_id: str, done: Sequence[Completion]) -> dict[int, str]:
    """Record outcomes (any mix of queues and outcomes); returns the new state of each task
    still held by that attempt. A task missing from the result had lost its lease."""
    states: dict[int, str] = {}
    groups: dict[tuple[int, Outcome], list[Completion]] = {}
    for item in done:
        groups.setdefault((item.queue_id, item.outcome), []).append(item)
    with tracing.batch_span("settle", "", len(done), worker_id):
        for (queue_id, outcome), items in groups.items():
            for start in range(0, len(items), COMPLETE_CHUNK):
                chunk = items[start : start + COMPLETE_CHUNK]
                rows = await db.fetch(
                    query("complete"),
                    queue_id,
                    worker_id,
                    outcome,
                    [c.id for c in chunk],
                    [c.attempt_id for c in chunk],
                    _details(chunk),
                )
                states.update((row["id"], row["state"]) for row in rows)
    return states


async def heartbeat(
    db: Executor, queue_id: int, held: Sequence[tuple[int, uuid.UUID, str | None]], lease_s: float
) -> dict[int, bool]:
    """Renew leases of (task id, attempt id, progress JSON or None); returns task id -> cancel
    requested, for the attempts still held."""
    progress = [f'"{task_id}":{p}' for task_id, _, p in held if p is not None]
    rows = await db.fetch(
        query("heartbeat"),
        queue_id,
        [h[0] for h in held],
        [h[1] for h in held],
        "{" + ",".join(progress) + "}" if progress else None,
        lease_s,
    )
    return {row["id"]: row["cancel_requested"] for row in rows}


async def release(
    db: Executor, queue_id: int, worker_id: str, held: Sequence[tuple[int, uuid.UUID]]
) -> int:
    released: int = await db.fetchval(
        query("release"), queue_id, worker_id, [h[0] for h in held], [h[1] for h in held]
    )
    return released


async def next_run_in(db: Executor, queue_id: int) -> float | None:
    """Seconds until the queue's earliest delayed or retrying task is due; None: none waits."""
    seconds: float | None = await db.fetchval(query("next_run_in"), queue_id)
    return seconds


async def release_orphans(
    db: Executor, queue_id: int, worker_id: str, known: Sequence[int]
) -> int:
    """Give back the queue's tasks held under `worker_id` other than `known` (claimed by a
    call whose reply was lost); returns how many."""
    released: int = await db.fetchval(query("release_orphans"), queue_id, worker_id, list(known))
    return released


@dataclass(frozen=True, slots=True)
class Beaten:
    rescued: int  # tasks of dead workers given back (when this period's rescue turn was its own)
    pollers: int | None  # workers polling the least served of its queues; None: not counted yet
    gone_queue_ids: list[int]  # of the queues it named, those that no longer exist


async def worker_beat(
    db: Executor,
    worker_id: str,
    dead_after_s: float,
    rescue_every_s: float,
    queue_ids: Sequence[int],
    beat_every_s: float = 1.0,
) -> Beaten:
    """Renew this worker's sign of life and the queues it claims from (where its tasks are
    looked for once it is dead); a beat later than `beat_every_s` after its last grants the
    others as much more silence before they count as dead, when this beat rescues."""
    row = await db.fetchrow(
        query("worker_beat"),
        worker_id,
        dead_after_s,
        rescue_every_s,
        list(queue_ids),
        beat_every_s,
    )
    assert row is not None
    return Beaten(row["rescued"], row["pollers"], list(row["gone_queue_ids"]))


async def worker_gone(db: Executor, worker_id: str) -> None:
    await db.execute(query("worker_gone"), worker_id)
