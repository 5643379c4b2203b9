"""The worker loop: claim in batches, run handlers concurrently, acknowledge in batches, keep
leases alive, and shut down gracefully.

Concurrent pieces, each an asyncio task on one event loop:
  claim loop      claims up to the free capacity when woken (notification, poll, freed slots)
  attempts        one asyncio task per running attempt (sync handlers run in threads)
  ack loop        records finished attempts in batches; keeps them until the database has them
  heartbeat loop  renews leases of long attempts, learns of cancellations and lost leases
  maintenance     rescues expired leases and applies retention for the served queues
  listener        LISTEN connection that wakes the claim loop (optional: polling also works)
Every database call survives the database going away: it is retried, and a finished attempt
is kept in memory until its outcome is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from taskq.errors import UnknownQueueError
from taskq.names import QueueName
from taskq.store import execution as store
from taskq.store import queues as queue_store
from taskq.store.dberrors import CONNECTION_ERRORS, describe_connection_error
from taskq.store.notifications import Listener
from taskq.worker.attempt import Attempt, StopReason, run_attempt
from taskq.worker.context import TaskContext
from taskq.worker.metrics import WorkerMetrics
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings

log = logging.getLogger("taskq.worker")
T = TypeVar("T")

WATCHDOG_TICK = 0.1  # seconds
# A claim also makes due delayed and retrying tasks ready when one is known to be due, or when
# this worker's last such claim on the queue is this old (planning that step was a third of
# a small claim's time, and it usually finds nothing).
PROMOTE_INTERVAL = 0.1  # seconds
MAX_PARALLEL_CLAIMS = 2  # claims in flight at once, each on a different queue


@dataclass(slots=True)
class _ClaimState:
    queue_id: int
    backlog: bool = False  # the last claim came back full
    drained: bool = False  # the last claim came back short: wait for a wake-up or wake_at
    wake_at: float = 0.0  # monotonic: when a drained queue is claimed from again
    due_at: float = float("inf")  # monotonic: when a delayed task is known to be due
    promoted_at: float = float("-inf")  # monotonic: the last claim that promoted due tasks
    in_flight: int = 0


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        settings: WorkerSettings,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id
        self.metrics = metrics or WorkerMetrics()
        self.metrics.in_flight = lambda: len(self.attempts)
        self.queue_ids: dict[str, int] = {}
        self.attempts: dict[int, Attempt] = {}
        self._acks: list[store.Completion] = []
        self._acks_pending = asyncio.Event()
        self._progress = asyncio.Event()  # a slot freed, a claim returned, or a wake-up
        self._claims: set[asyncio.Task[None]] = set()
        self._claim_states: dict[str, _ClaimState] = {}
        self._reserved = 0  # capacity promised to claims in flight
        self._stopping = False
        self._acks_closing = False
        self._worthwhile = max(1, min(settings.batch_size, settings.concurrency) // 2)
        self._threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="taskq-task")
        self.last_loop_at = time.monotonic()
        self.last_db_ok_at = 0.0

    # -- health ------------------------------------------------------------------------------

    def is_live(self) -> bool:
        return time.monotonic() - self.last_loop_at < max(30.0, 3 * self.settings.poll_interval)

    def is_ready(self) -> bool:
        return time.monotonic() - self.last_db_ok_at < max(30.0, 2 * self.settings.lease_seconds)

    # -- running -----------------------------------------------------------------------------

    async def resolve_queues(self) -> None:
        """Map queue names to ids; an unknown queue is an error the user must fix."""
        for name in self.settings.queues:
            info = await queue_store.get_queue(self.pool, QueueName.parse(name))
            if info is None:
                raise UnknownQueueError(name)
            self.queue_ids[name] = info.id
        self.last_db_ok_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        await self.resolve_queues()
        log.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "queues": self.settings.queues,
                "concurrency": self.settings.concurrency,
            },
        )
        ack_task = asyncio.create_task(self._ack_loop(), name="taskq-ack")
        background = [
            ack_task,
            asyncio.create_task(self._heartbeat_loop(), name="taskq-heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="taskq-maintenance"),
            asyncio.create_task(self._watchdog_loop(), name="taskq-watchdog"),
        ]
        if self.settings.listen:
            listener = Listener(
                self.settings.dsn.get_secret_value(), self._on_ready, self._on_cancel
            )
            background.append(asyncio.create_task(listener.run(), name="taskq-listen"))
        claimer = asyncio.create_task(self._claim_loop(), name="taskq-claim")
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([claimer, stopper], return_when=asyncio.FIRST_COMPLETED)
        if claimer.done():
            claimer.result()  # a bug in the claim loop: surface it
        try:
            await self._shutdown(claimer, ack_task)
        finally:
            stopper.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._threads.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _shutdown(self, claimer: asyncio.Task[None], ack_task: asyncio.Task[None]) -> None:
        self._stopping = True
        claimer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claimer
        # claims in flight may already hold tasks: let them land, then treat them as running
        await asyncio.gather(*self._claims, return_exceptions=True)
        running = [a.task for a in self.attempts.values() if a.task is not None]
        if running:
            log.info(
                "stopping: waiting up to %ss for %d running tasks",
                self.settings.shutdown_grace,
                len(running),
            )
            await asyncio.wait(running, timeout=self.settings.shutdown_grace)
        leftovers = list(self.attempts.values())
        for attempt in leftovers:
            attempt.stop(StopReason.SHUTDOWN)
        await asyncio.gather(*(a.task for a in leftovers if a.task), return_exceptions=True)
        await self._drain_acks(ack_task)
        if leftovers:
            await self._release(leftovers)

    async def _release(self, leftovers: list[Attempt]) -> None:
        by_queue: dict[int, list[tuple[int, object]]] = {}
        for a in leftovers:
            by_queue.setdefault(a.claimed.queue_id, []).append((a.claimed.id, a.claimed.attempt_id))
        for queue_id, held in by_queue.items():
            released = await self._retrying(
                "release",
                lambda q=queue_id, h=held: store.release(self.pool, q, self.worker_id, h),  # type: ignore[misc]
                give_up_after=10.0,
            )
            log.info("gave back %s unfinished tasks", released)

    # -- claiming ----------------------------------------------------------------------------

    def _on_ready(self, queue_id: int) -> None:
        for claim_state in self._claim_states.values():
            if queue_id < 0 or claim_state.queue_id == queue_id:
                claim_state.drained = False
        self._progress.set()

    def _free(self) -> int:
        return self.settings.concurrency - len(self.attempts) - self._reserved

    async def _claim_loop(self) -> None:
        """Launches claims while there is capacity, one claim in flight per queue (two claims
        on one queue fight over the same index entries with SKIP LOCKED). A queue with a backlog
        (its last claim came back full) waits for a worthwhile batch of free slots; a drained
        queue is claimed from again when notified, when its next delayed task is due, or after
        poll_interval."""
        names = list(self.queue_ids)
        self._claim_states = {n: _ClaimState(self.queue_ids[n]) for n in names}
        turn = 0
        while True:
            self.last_loop_at = time.monotonic()
            self._progress.clear()
            for i in range(len(names)):
                name = names[(turn + i) % len(names)]
                if not self._claim_more(name, self._claim_states[name]):
                    break
            turn += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), self._until_next_wake())

    def _claim_more(self, name: str, state: _ClaimState) -> bool:
        """Launch a claim on this queue if it is due and there is room; False when there is
        no room for any claim."""
        if self._stopping or len(self._claims) >= MAX_PARALLEL_CLAIMS:
            return False
        if state.in_flight or (state.drained and time.monotonic() < state.wake_at):
            return True
        free = self._free()
        if free < (self._worthwhile if state.backlog else 1):
            return False
        self._launch_claim(name, state, min(free, self.settings.batch_size))
        return True

    def _launch_claim(self, name: str, state: _ClaimState, want: int) -> None:
        self._reserved += want
        state.in_flight += 1
        task = asyncio.create_task(self._claim_batch(name, state, want))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claim_batch(self, name: str, state: _ClaimState, want: int) -> None:
        try:
            claimed = await self._claim(name, state, want)
        finally:
            self._reserved -= want
            state.in_flight -= 1
        state.backlog = len(claimed) == want
        if not state.backlog:
            state.drained, state.wake_at = True, time.monotonic() + self.settings.poll_interval
        attempts = [self._admit(task) for task in claimed]
        if state.backlog and self._claim_more(name, state):
            # Let the next claim's query leave before this batch's handlers take the event
            # loop: the database claims the next batch while this one runs.
            await asyncio.sleep(0)
        for attempt in attempts:
            self._begin(attempt)
        self._progress.set()
        if state.drained:
            await self._wake_when_due(state)

    async def _wake_when_due(self, state: _ClaimState) -> None:
        """A drained queue is claimed from again when its next delayed task is due, if that
        comes before the next poll."""
        try:
            due_in = await store.next_run_in(self.pool, state.queue_id)
        except CONNECTION_ERRORS:
            return  # the poll still comes
        if due_in is None:
            return
        # a little late rather than early: the claim compares run_at with the database's now
        due_at = time.monotonic() + max(due_in, 0.0) + 0.002
        state.due_at = min(state.due_at, due_at)
        if state.drained:
            state.wake_at = min(state.wake_at, due_at)
            self._progress.set()

    def _until_next_wake(self) -> float:
        """How long the claim loop may sleep: until the next drained queue's wake_at. A queue
        already due but waiting for free slots is woken by a slot freeing, not by a timer."""
        now = time.monotonic()
        wakes = [s.wake_at - now for s in self._claim_states.values() if s.drained]
        return min([self.settings.poll_interval, *(w for w in wakes if w > 0)])

    async def _claim(self, name: str, state: _ClaimState, want: int) -> list[store.ClaimedTask]:
        now = time.monotonic()
        promote = now >= state.due_at or now - state.promoted_at >= PROMOTE_INTERVAL
        if promote:
            state.due_at, state.promoted_at = float("inf"), now
        try:
            claimed = await store.claim(
                self.pool,
                self.queue_ids[name],
                name,
                self.worker_id,
                want,
                self.settings.lease_seconds,
                promote,
            )
        except CONNECTION_ERRORS as error:
            self.metrics.db_error("claim")
            log.warning("claim failed: %s", describe_connection_error(error))
            await asyncio.sleep(min(1.0, self.settings.poll_interval))
            return []
        self.last_db_ok_at = time.monotonic()
        return claimed

    def _admit(self, claimed: store.ClaimedTask) -> Attempt:
        """Take a claimed task into this worker's capacity; _begin runs it."""
        ctx = TaskContext(claimed, self.worker_id)
        handler = self.registry.handlers.get(claimed.task_name)
        timeout = (handler.timeout if handler else None) or claimed.timeout_s
        now = time.monotonic()
        attempt = Attempt(claimed, ctx, now, now + timeout, timeout)
        self.attempts[claimed.id] = attempt
        return attempt

    def _begin(self, attempt: Attempt) -> None:
        claimed = attempt.claimed
        self.metrics.started(claimed.queue, claimed.task_name)
        if attempt.stop_reason is StopReason.CANCELED:
            # canceled between its claim and its start: nothing runs, nothing is left to stop
            self._settle(
                attempt,
                store.Completion(claimed.queue_id, claimed.id, claimed.attempt_id, "canceled"),
            )
            return
        attempt.task = asyncio.create_task(self._attempt(attempt))

    async def _attempt(self, attempt: Attempt) -> None:
        """The attempt's asyncio task: run it, then settle it (in the task itself: a done
        callback would cost one more event-loop turn per task)."""
        completion = None
        try:
            completion = await run_attempt(attempt, self.registry, self._threads)
        except Exception:  # a bug in taskq, not in the handler (handler errors are outcomes)
            log.exception("attempt of task %s crashed", attempt.claimed.id)
        finally:  # also when the worker itself is torn down (cancelled): nothing to record
            self._settle(attempt, completion)

    def _settle(self, attempt: Attempt, completion: store.Completion | None) -> None:
        """The attempt is over: free its slot and queue its outcome for recording."""
        claimed = attempt.claimed
        if self.attempts.get(claimed.id) is attempt:
            del self.attempts[claimed.id]
        outcome = (
            completion.outcome
            if completion
            else (attempt.stop_reason.value if attempt.stop_reason else "aborted")
        )
        self.metrics.finished(
            claimed.queue, claimed.task_name, outcome, time.monotonic() - attempt.started
        )
        if completion is not None:
            self._acks.append(completion)
            self._acks_pending.set()
        if not self._stopping:
            self._progress.set()

    # -- acknowledging -----------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        """Records outcomes until shutdown has nothing more to record."""
        while True:
            if not self._acks:
                if self._acks_closing:
                    return
                await self._acks_pending.wait()
                continue
            if (
                len(self._acks) < self.settings.batch_size
                and self.settings.ack_interval
                and not self._acks_closing
            ):
                await asyncio.sleep(self.settings.ack_interval)
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        batch, self._acks = self._acks, []
        self._acks_pending.clear()
        if not batch:
            return
        try:
            states = await store.complete(self.pool, self.worker_id, batch)
        except CONNECTION_ERRORS as error:
            # Keep them: recording an outcome twice is harmless (guarded by attempt id).
            self._acks[:0] = batch
            self._acks_pending.set()
            self.metrics.db_error("complete")
            log.warning(
                "recording %d outcomes failed (%s); retrying",
                len(batch),
                describe_connection_error(error),
            )
            await asyncio.sleep(0.5)
            return
        except asyncio.CancelledError:
            self._acks[:0] = batch
            raise
        self.last_db_ok_at = time.monotonic()
        counts: dict[tuple[int, str], int] = {}
        for item in batch:
            state = states.get(item.id)
            if state is not None:
                key = (item.queue_id, state)
                counts[key] = counts.get(key, 0) + 1
        for (queue_id, state), count in counts.items():
            self.metrics.settled(self._queue_name(queue_id), state, count)
            if state == "retrying":  # our own failures may be due before the next poll
                for claim_state in self._claim_states.values():
                    if claim_state.queue_id == queue_id and claim_state.drained:
                        await self._wake_when_due(claim_state)

    async def _drain_acks(self, ack_task: asyncio.Task[None], give_up_after: float = 30.0) -> None:
        self._acks_closing = True
        self._acks_pending.set()
        try:
            await asyncio.wait_for(ack_task, give_up_after)
        except TimeoutError:
            log.error(
                "could not record %d outcomes before exiting; their leases will expire "
                "and the tasks run again",
                len(self._acks),
            )

    def _queue_name(self, queue_id: int) -> str:
        for name, qid in self.queue_ids.items():
            if qid == queue_id:
                return name
        return str(queue_id)

    # -- leases and cancellation -------------------------------------------------------------

    def _on_cancel(self, task_id: int) -> None:
        attempt = self.attempts.get(task_id)
        if attempt is not None:
            log.info("task %s canceled while running", task_id)
            attempt.stop(StopReason.CANCELED)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self.last_loop_at = time.monotonic()
            # Attempts younger than an interval still hold the lease their claim gave them.
            due = [
                a
                for a in self.attempts.values()
                if time.monotonic() - a.started >= interval and a.stop_reason is None
            ]
            by_queue: dict[int, list[Attempt]] = {}
            for a in due:
                by_queue.setdefault(a.claimed.queue_id, []).append(a)
            for queue_id, attempts in by_queue.items():
                held = [
                    (a.claimed.id, a.claimed.attempt_id, a.ctx.take_progress()) for a in attempts
                ]
                try:
                    alive = await store.heartbeat(
                        self.pool, queue_id, held, self.settings.lease_seconds
                    )
                except CONNECTION_ERRORS as error:
                    self.metrics.db_error("heartbeat")
                    log.warning("lease renewal failed: %s", describe_connection_error(error))
                    continue
                self.last_db_ok_at = time.monotonic()
                for a in attempts:
                    if a.claimed.id not in alive:
                        self.metrics.lost_leases += 1
                        log.warning("lease of task %s lost; stopping it", a.claimed.id)
                        a.stop(StopReason.LEASE_LOST)
                    elif alive[a.claimed.id]:
                        a.stop(StopReason.CANCELED)

    async def _watchdog_loop(self) -> None:
        """Stops attempts past their deadline. One sweep a tick instead of a timer per task:
        timers cost more than the tasks they guard at high throughput; a timeout fires up to
        one tick late."""
        while True:
            await asyncio.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            for attempt in list(self.attempts.values()):
                if attempt.deadline <= now and attempt.stop_reason is None:
                    attempt.stop(StopReason.TIMEOUT)

    # -- maintenance -------------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        while True:
            # jitter spreads the work of many workers over the interval
            await asyncio.sleep(self.settings.maintenance_interval * random.uniform(0.5, 1.5))  # noqa: S311
            try:
                await self._refresh_queue_ids()
                for name, queue_id in self.queue_ids.items():
                    rescued = await store.rescue_expired(self.pool, queue_id)
                    purged = await store.purge_finished(self.pool, queue_id)
                    if rescued:
                        log.info("rescued %d tasks with expired leases in %s", rescued, name)
                        self._on_ready(queue_id)
                    if purged:
                        log.info("deleted %d finished tasks past retention in %s", purged, name)
            except CONNECTION_ERRORS as error:
                self.metrics.db_error("maintenance")
                log.warning("maintenance failed: %s", describe_connection_error(error))

    async def _refresh_queue_ids(self) -> None:
        """A queue dropped and provisioned again gets a new id: follow it by name."""
        for name, queue_id in list(self.queue_ids.items()):
            info = await queue_store.get_queue(self.pool, QueueName.parse(name))
            if info is None:
                log.error("queue %s no longer exists; waiting for it to be created again", name)
            elif info.id != queue_id:
                log.info("queue %s was provisioned again; following it", name)
                self.queue_ids[name] = info.id
                if name in self._claim_states:
                    self._claim_states[name].queue_id = info.id
                self._on_ready(info.id)

    async def _retrying(
        self, operation: str, call: Callable[[], Awaitable[T]], give_up_after: float
    ) -> T | None:
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                return await call()
            except CONNECTION_ERRORS as error:
                self.metrics.db_error(operation)
                if time.monotonic() > deadline:
                    log.error("%s failed: %s", operation, describe_connection_error(error))
                    return None
                await asyncio.sleep(0.5)
