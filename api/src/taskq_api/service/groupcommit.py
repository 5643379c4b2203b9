"""Group commit of single enqueues: concurrent enqueues to one queue are written together, in
one transaction, so that PostgreSQL makes one commit (one WAL flush) and one notification for
the group instead of one per request (docs/api.md, "How a single enqueue is served").

No timer: an enqueue to a queue with nothing in flight is written at once, alone (one round
trip, as without grouping); those that arrive while a write to their queue is in flight wait
for it and go together in the next one. So a group grows with the load, and an idle server adds
no latency.

Each caller still gets its own answer:
- a bad task (the store or the database refuses it) fails the group's transaction, which wrote
  nothing: each of its tasks is then written alone, in order, and gets its own outcome;
- enqueue_many settles idempotency keys in input order, so a key repeated within a group
  answers as sequential requests would (the first creates, the others get its task);
- any other error (the database unavailable, say) fails the group's callers, and only them;
- an answer is given only once the transaction has committed;
- a caller cancelled while it waits is left out of its group; once its group is being written
  its task may still be committed, as with any enqueue whose caller went away mid-call;
- a task keeps every field its caller gave (callback URL, correlation id, idempotency key,
  priority, delay...): enqueue_many takes them per task. What it takes once per call, the
  traceparent, is part of the lane's key, so tasks with different ones never share a group.
  A correlation id a task would inherit from its caller's context (taskq.correlation) is
  resolved in that context, before the task joins a lane, and the writer runs in a context of
  its own: no task takes another caller's.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field, replace
from typing import Final

from taskq import tracing
from taskq.client import Client
from taskq.correlation import current_correlation_id
from taskq.errors import InvalidArgumentError, PayloadTooLargeError
from taskq.models import TaskInfo, TaskRequest

# Most tasks in one group; more waiting go in the next.
MAX_GROUP: Final = 500

Outcome = tuple[bool, TaskInfo]  # created (else its idempotency key was held), the task
# What fails a group's transaction because of one task: its tasks are then written alone.
_ONE_TASK_ERRORS: Final = (InvalidArgumentError, PayloadTooLargeError)


@dataclass(slots=True)
class _Waiting:
    task: TaskRequest
    outcome: asyncio.Future[Outcome]


@dataclass(slots=True)
class _Lane:
    """The enqueues waiting for one queue (and trace context), and its writer while any do."""

    waiting: list[_Waiting] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommit:
    def __init__(self, client: Client, *, max_group: int = MAX_GROUP) -> None:
        self._client = client
        self._max_group = max_group
        # by queue and the traceparent its tasks keep: one value per enqueue_many call
        self._lanes: dict[tuple[str, str | None], _Lane] = {}

    async def enqueue(self, queue: str, task: TaskRequest, traceparent: str | None) -> Outcome:
        """Whether this call created the task (else its idempotency key was held), and the
        task; the errors of Client.enqueue_and_get. `traceparent`: the caller's, valid."""
        if tracing.active():
            # each enqueue has a send span of its own, and its tasks keep that span's context:
            # no two share a traceparent, so none could be grouped
            return await self._client.enqueue_and_get(queue, task, traceparent=traceparent)
        if task.correlation_id is None:
            inherited = current_correlation_id.get()
            if inherited is not None:
                task = replace(task, correlation_id=inherited)
        lane_key = (queue, traceparent)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        waiting = _Waiting(task, asyncio.get_running_loop().create_future())
        lane.waiting.append(waiting)
        if lane.writer is None:
            # not in this caller's context: the writer serves every caller of the lane
            lane.writer = asyncio.create_task(
                self._write(lane_key, lane), context=contextvars.Context()
            )
        try:
            return await waiting.outcome
        except asyncio.CancelledError:
            if waiting in lane.waiting:  # not yet in a group: leave it out
                lane.waiting.remove(waiting)
            raise

    async def _write(self, lane_key: tuple[str, str | None], lane: _Lane) -> None:
        """Write the lane's groups, one at a time, until none waits."""
        group: list[_Waiting] = []
        try:
            while lane.waiting:
                group = lane.waiting[: self._max_group]
                del lane.waiting[: self._max_group]
                await self._write_group(*lane_key, group)
        finally:
            del self._lanes[lane_key]
            for waiting in (*group, *lane.waiting):  # only if this writer was cancelled
                waiting.outcome.cancel()

    async def _write_group(
        self, queue: str, traceparent: str | None, group: list[_Waiting]
    ) -> None:
        if len(group) > 1:
            try:
                outcomes = await self._client.enqueue_and_get_many(
                    queue, [waiting.task for waiting in group], traceparent=traceparent
                )
            except _ONE_TASK_ERRORS:
                pass  # nothing was written: each task alone, below
            except Exception as error:  # the group's callers' to raise
                for waiting in group:
                    _settle(waiting, error=error)
                return
            else:
                for waiting, outcome in zip(group, outcomes, strict=True):
                    _settle(waiting, outcome)
                return
        for waiting in group:
            if waiting.outcome.done():  # its caller was cancelled before its turn came
                continue
            try:
                outcome = await self._client.enqueue_and_get(
                    queue, waiting.task, traceparent=traceparent
                )
            except Exception as error:  # this caller's to raise
                _settle(waiting, error=error)
            else:
                _settle(waiting, outcome)


def _settle(
    waiting: _Waiting, outcome: Outcome | None = None, *, error: Exception | None = None
) -> None:
    if waiting.outcome.done():  # its caller was cancelled meanwhile
        return
    if error is not None:
        waiting.outcome.set_exception(error)
    else:
        assert outcome is not None
        waiting.outcome.set_result(outcome)
