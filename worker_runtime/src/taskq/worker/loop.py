"""The worker loop: claim in batches, run handlers concurrently, acknowledge in batches, keep
leases alive, and shut down gracefully.

Concurrent pieces, each an asyncio task on one event loop:
  claim loop      claims up to the free capacity when woken (notification, poll, freed slots)
  attempts        one asyncio task per running attempt (sync handlers run in threads)
  ack loop        records finished attempts in batches; keeps them until the database has them
  heartbeat loop  renews leases of long attempts, learns of cancellations and lost leases
  maintenance     the database's maintenance services, each when this process has its turn
                  (taskq.maintenance: expired leases, retention, for every queue)
  queue refresh   follows a served queue dropped and provisioned again under a new id
  listener        LISTEN connection that wakes the claim loop (optional: polling also works;
                  not through transaction pooling)
  watchdog        stops attempts past their deadline

Every long-lived loop is supervised (supervision.py): an exception that escapes it is logged
with its traceback and the loop starts again. Every database call has a deadline and is
retried with jittered exponential backoff, one log line per outage (taskq.backoff). A finished
attempt's outcome stays in memory until the database has it; while more outcomes wait than
`2 * max(batch_size, concurrency)`, the worker claims nothing, and the liveness probe fails once
they have waited longer than two leases. When and what to claim is decided by ClaimPolicy
(claim_policy.py); this module does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from taskq.backoff import Outage
from taskq.claim_order import ResumePoint
from taskq.errors import TaskqError, UnknownQueueError
from taskq.maintenance.runner import MaintenanceRunner, default_services
from taskq.names import QueueName
from taskq.store import execution as store
from taskq.store.dberrors import describe_error, is_database_error, translated
from taskq.store.notifications import Listener
from taskq.store.worker_store import WorkerStore
from taskq.supervision import supervised
from taskq.worker.attempt import Attempt, StopReason, run_attempt
from taskq.worker.beat import Beat
from taskq.worker.claim_policy import ClaimOrder, ClaimPolicy
from taskq.worker.context import TaskContext
from taskq.worker.metrics import WorkerMetrics
from taskq.worker.registry import Registry
from taskq.worker.session import APPLICATION_NAME
from taskq.worker.settings import WorkerSettings
from taskq.worker.stopping import wait_or_cancel

log = logging.getLogger("taskq.worker")

WATCHDOG_TICK = 0.1  # seconds
# Most outcomes one flush records: after a long outage the backlog is recorded in several
# calls, each well within its deadline.
ACK_FLUSH_MAX = 5_000
BEAT_WAIT = 0.02  # seconds between looks for the first beat, before the first claim
DB_OPERATIONS = ("claim", "complete", "heartbeat", "queue refresh", "release")
# Deadlines a claim in flight gets to land at shutdown: it may first give back orphans, two
# calls with a deadline each, and a loaded machine adds some.
CLAIMS_LAND = 3


def shutdown_bound(settings: WorkerSettings) -> float:
    """The longest a graceful stop takes, from the stop signal to `Worker.run` returning: the
    claims in flight land (CLAIMS_LAND), running tasks get the grace and stopped ones a
    deadline to unwind; then two deadlines to record the last outcomes, two per queue to give
    tasks back, one for the other loops to end and two for the beat's goodbye."""
    deadlines = CLAIMS_LAND + 6 + 2 * len(settings.queues)
    return settings.shutdown_grace + deadlines * settings.db_deadline


class WorkerFailedError(TaskqError):
    """The worker stopped, but left outcomes unrecorded or tasks held, or one of its loops
    ended; the message says which."""


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        settings: WorkerSettings,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        *,
        db: WorkerStore | None = None,
        maintenance: MaintenanceRunner | None = None,
        beat_with: Worker | None = None,
    ) -> None:
        self.db = db or WorkerStore(pool, settings.db_deadline)
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id
        # Another Worker of the process whose beat covers this one (the delivery worker of
        # worker/main.py shares the main worker's id and beat): this one's queues join it.
        self._beat_with = beat_with
        self._beat_sharers: list[Worker] = []
        if beat_with is not None:
            beat_with._beat_sharers.append(self)
        self.metrics = metrics or WorkerMetrics()
        self.metrics.in_flight = lambda: len(self.attempts)
        self.metrics.outcomes_pending = lambda: len(self._acks)
        self.maintenance = maintenance or MaintenanceRunner(
            self.db, default_services(settings.maintenance_interval), self.metrics
        )
        self.queue_ids: dict[str, int] = {}
        self.attempts: dict[int, Attempt] = {}
        # Outcomes not yet recorded, oldest first. Only a successful flush removes them.
        self._acks: list[store.Completion] = []
        self._acks_pending = asyncio.Event()
        self._acks_progress_at = time.monotonic()  # last flush, or first outcome since
        self.claims = ClaimPolicy(
            concurrency=settings.concurrency,
            batch_size=settings.batch_size,
            poll_interval=settings.poll_interval,
        )
        self._progress = asyncio.Event()  # a slot freed, a claim returned, or a wake-up
        self._running = asyncio.Event()  # an attempt began: the watchdog has something to watch
        self._queues_gone = asyncio.Event()  # the beat found a queue of ours dropped
        self._beat: Beat | None = None
        self._claim_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._acks_closing = False
        self._threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="taskq-task")
        self._outages = {
            operation: Outage(operation, log, is_database_error, describe_error)
            for operation in DB_OPERATIONS
        }
        self._failure: str | None = None  # a loop ended that must run for the worker's life
        self._failed = asyncio.Event()
        self.last_loop_at = time.monotonic()
        self._renewals_at = time.monotonic()
        self.last_db_ok_at = 0.0
        self._resolved_at = 0.0  # monotonic: when queue_ids were last looked up

    @property
    def max_pending_outcomes(self) -> int:
        """Above this many unrecorded outcomes the worker claims nothing (ClaimPolicy)."""
        return self.claims.max_pending_outcomes

    def unrecorded_outcomes(self) -> list[store.Completion]:
        """Finished attempts whose outcome the database does not have yet, oldest first."""
        return list(self._acks)

    # -- health ------------------------------------------------------------------------------

    def health_problem(self) -> str | None:
        """Why the liveness probe fails, or None while the worker does its job."""
        if self._failure is not None:
            return self._failure
        now = time.monotonic()
        idle = now - self.last_loop_at
        if idle > max(30.0, 3 * self.settings.poll_interval):
            return f"the claim loop has not turned for {idle:.0f}s"
        waited = now - self._acks_progress_at
        if self._acks and waited > self.settings.outcome_stall_limit:
            return f"{len(self._acks)} outcomes not recorded for {waited:.0f}s"
        quiet = now - self._renewals_at
        if quiet > self.settings.lease_seconds:
            return f"the lease renewal loop has not turned for {quiet:.0f}s"
        return None

    def is_live(self) -> bool:
        return self.health_problem() is None

    def is_ready(self) -> bool:
        return time.monotonic() - self.last_db_ok_at < max(30.0, 2 * self.settings.lease_seconds)

    # -- running -----------------------------------------------------------------------------

    async def resolve_queues(self) -> None:
        """Map queue names to ids; an unknown queue is an error the user must fix."""
        for name in self.settings.queues:
            with translated(name):
                info = await self.db.get_queue(QueueName.parse(name))
            if info is None:
                raise UnknownQueueError(name)
            self.queue_ids[name] = info.id
            self.claims.follow(name, info.id)
        self.last_db_ok_at = self._resolved_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully. Raises WorkerFailedError when
        the worker could not leave everything recorded, or stopped because a loop ended."""
        await self.resolve_queues()
        beat = (
            Beat(
                self.settings.dsn.get_secret_value(),
                self.worker_id,
                self.settings.db_deadline,
                self.settings.db_pool_mode,
                lambda n: self.metrics.rescued("worker_died", n),
                self._beaten_queue_ids,
                self._on_queues_gone(asyncio.get_running_loop()),
            )
            if self._beat_with is None
            else None
        )
        if beat is not None:
            beat.start()
        self._beat = beat
        log.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "queues": self.settings.queues,
                "concurrency": self.settings.concurrency,
            },
        )
        ack_task = self._start("acknowledgement", self._ack_loop)
        background = [
            ack_task,
            self._start("lease renewal", self._heartbeat_loop),
            self._start("maintenance", self.maintenance.run),
            self._start("queue refresh", self._refresh_loop),
            self._start("watchdog", self._watchdog_loop),
        ]
        if self.settings.listen:
            listener = Listener(
                self.settings.dsn.get_secret_value(),
                self._on_ready,
                self._on_cancel,
                on_listening=self.claims.listen,
                application_name=APPLICATION_NAME,
            )
            background.append(self._start("listen", listener.run))
        claimer = self._start("claim", self._claim_loop)
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._failed.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        problems = []
        try:
            problems = await self._shutdown(claimer, ack_task)
        finally:
            for task in (*waiters, *background):
                task.cancel()
            await wait_or_cancel(background, self.settings.db_deadline)
            self._threads.shutdown(wait=False, cancel_futures=True)
            # beats last as long as tasks are held: until they are recorded or given back
            if beat is not None:
                await asyncio.to_thread(beat.stop, 2 * self.settings.db_deadline)
        if self._failure is not None:
            problems.insert(0, self._failure)
        if problems:
            raise WorkerFailedError("; ".join(problems))
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    def _beaten_queue_ids(self) -> list[int]:
        """The queues this process's beat names: a dead process's tasks are rescued only in
        those. Read from the beat's thread: copies of the values, never the dicts themselves."""
        ids = set(self.queue_ids.copy().values())
        for sharer in list(self._beat_sharers):
            ids.update(sharer.queue_ids.copy().values())
        return sorted(ids)

    def _on_queues_gone(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """What the beat's thread calls when a queue it named is gone: each worker sharing
        the beat looks its queues up again, on its own loop."""

        def gone() -> None:
            for worker in (self, *self._beat_sharers):
                # a loop already closed has no worker left to tell; the beat must go on
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(worker._queues_gone.set)

        return gone

    def _beat_covers_queues(self) -> bool:
        """Whether a beat naming this worker's queues is recorded. Claiming waits for it: a
        process that died holding tasks before its first beat left no row to be found dead
        by, and its tasks waited for their lease (seen under load in CI)."""
        beat = self._beat if self._beat_with is None else self._beat_with._beat
        return beat is not None and beat.covered_at >= self._resolved_at

    def _start(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.create_task(
            supervised(name, body, self.metrics.loop_restarted), name=f"taskq-{name}"
        )
        task.add_done_callback(lambda done: self._loop_ended(name, done))
        return task

    def _loop_ended(self, name: str, task: asyncio.Task[None]) -> None:
        """Only the acknowledgement loop may end, and only at shutdown: any other end stops
        the worker with an error (a live process with a dead loop is never an option)."""
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        self._failure = f"the {name} loop ended unexpectedly" + (f": {error!r}" if error else "")
        log.error("stopping: %s", self._failure, exc_info=error)
        self._failed.set()

    async def _shutdown(
        self, claimer: asyncio.Task[None], ack_task: asyncio.Task[None]
    ) -> list[str]:
        """Returns what could not be left in order. Every wait has a bound (shutdown_bound)."""
        self._stopping = True
        deadline = self.settings.db_deadline
        self._progress.set()
        claimer.cancel()
        # claims in flight may already hold tasks: let them land, then treat them as running
        problems = []
        if await wait_or_cancel([claimer, *self._claim_tasks], CLAIMS_LAND * deadline):
            problems.append(
                "a claim did not return in time; the tasks it took run again when their leases "
                "expire"
            )
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
        stubborn = await wait_or_cancel((a.task for a in leftovers if a.task), deadline)
        if stubborn:
            log.warning("%d handlers ignored their cancellation; giving their tasks back", stubborn)
        unrecorded = await self._drain_acks(ack_task)
        if unrecorded:
            problems.append(
                f"{unrecorded} outcomes could not be recorded; their tasks run again when "
                "their leases expire"
            )
        kept = await self._release(leftovers) if leftovers else 0
        if kept:
            problems.append(
                f"{kept} unfinished tasks could not be given back; they run again when their "
                "leases expire"
            )
        return problems

    async def _release(self, leftovers: list[Attempt]) -> int:
        """Give back the attempts stopped at shutdown; returns how many could not be."""
        by_queue: dict[int, list[tuple[int, uuid.UUID]]] = {}
        for a in leftovers:
            by_queue.setdefault(a.claimed.queue_id, []).append((a.claimed.id, a.claimed.attempt_id))
        outage = self._outages["release"]
        kept = 0
        for queue_id, held in by_queue.items():
            give_up_at = time.monotonic() + self.settings.db_deadline
            while True:
                try:
                    released = await self.db.release(queue_id, self.worker_id, held)
                except Exception as error:
                    self.metrics.db_error("release")
                    delay = outage.failed(error)
                    if time.monotonic() + delay > give_up_at:
                        log.error(
                            "could not give back %d tasks: %s", len(held), describe_error(error)
                        )
                        kept += len(held)
                        break
                    await asyncio.sleep(delay)
                    continue
                outage.succeeded()
                log.info("gave back %s unfinished tasks", released)
                break
        return kept

    # -- claiming ----------------------------------------------------------------------------

    def _on_ready(self, queue_id: int, since: ResumePoint | None = None) -> None:
        self.claims.ready(queue_id, since)
        self._progress.set()

    async def _claim_loop(self) -> None:
        """Sends the claims the policy asks for whenever something changed (a slot freed, a
        claim returned, a wake-up) or its next wake-up time came. Ends once the worker stops,
        not only when cancelled: Python 3.11's wait_for swallows a cancellation that arrives as
        the event it waits for is set, and the loop then ran on, holding up the shutdown."""
        while not self._stopping:
            self.last_loop_at = time.monotonic()
            self._progress.clear()
            if not self._beat_covers_queues():
                await asyncio.sleep(BEAT_WAIT)
                continue
            if self._beat is not None:
                self.claims.pollers = self._beat.pollers
            for order in self.claims.plan(time.monotonic(), len(self.attempts), len(self._acks)):
                self._launch_claim(order)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._progress.wait(), self.claims.sleep_for(time.monotonic())
                )

    def _launch_claim(self, order: ClaimOrder) -> None:
        task = asyncio.create_task(self._claim_batch(order))
        self._claim_tasks.add(task)
        task.add_done_callback(self._claim_done)

    def _claim_done(self, task: asyncio.Task[None]) -> None:
        self._claim_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a claim crashed", exc_info=task.exception())
            self._progress.set()

    async def _claim_batch(self, order: ClaimOrder) -> None:
        claimed = await self._claim(order)
        if claimed is None:  # failed; tried again once its backoff has passed
            self._progress.set()
            return
        last = claimed[-1] if claimed else None
        self.claims.landed(
            order,
            len(claimed),
            time.monotonic(),
            None if last is None else ResumePoint(last.priority, last.run_at, last.id),
        )
        attempts = [self.admit(task) for task in claimed]
        again = None
        if not self._stopping:
            again = self.claims.plan_next(
                order.queue, time.monotonic(), len(self.attempts), len(self._acks)
            )
        if again is not None:
            self._launch_claim(again)
            # Let the next claim's query leave before this batch's handlers take the event
            # loop: the database claims the next batch while this one runs.
            await asyncio.sleep(0)
        for attempt in attempts:
            self.begin(attempt)
        self._progress.set()
        if self.claims.drained(order.queue) and not self._stopping:
            await self._wake_when_due(order.queue)

    async def _wake_when_due(self, queue: str) -> None:
        """A drained queue is claimed from again when its next delayed task is due, if that
        comes before the next poll."""
        try:
            due_in = await self.db.next_run_in(self.claims.queue_id(queue))
        except Exception as error:
            if not is_database_error(error):
                log.exception("asking when the next delayed task is due failed")
            return  # a hint only: the poll still comes
        if due_in is not None and self.claims.due_in(queue, due_in, time.monotonic()):
            self._progress.set()

    async def _claim(self, order: ClaimOrder) -> list[store.ClaimedTask] | None:
        """The claimed tasks, or None if the claim failed (the policy is told)."""
        outage = self._outages["claim"]
        try:
            if order.release_orphans:
                await self._release_orphans(order)
            claimed = await self.db.claim(
                order.queue_id,
                order.queue,
                self.worker_id,
                order.want,
                self.settings.lease_seconds,
                order.promote,
                order.resume,
            )
        except Exception as error:
            self.metrics.db_error("claim")
            self.claims.failed(order, time.monotonic(), outage.failed(error))
            return None
        except BaseException:
            self.claims.failed(order, time.monotonic(), 0.0)  # torn down: only the books matter
            raise
        outage.succeeded()
        self.last_db_ok_at = time.monotonic()
        return claimed

    async def _release_orphans(self, order: ClaimOrder) -> None:
        queue_id = order.queue_id
        known = [task_id for task_id, a in self.attempts.items() if a.claimed.queue_id == queue_id]
        known += [c.id for c in self._acks if c.queue_id == queue_id]
        released = await self.db.release_orphans(queue_id, self.worker_id, known)
        if released:
            self.metrics.rescued("orphaned_claim", released)
            log.warning(
                "gave back %d tasks of %s that a failed claim had taken in this worker's name",
                released,
                order.queue,
            )

    def admit(self, claimed: store.ClaimedTask) -> Attempt:
        """Take a claimed task into this worker's capacity (it holds a slot from now on);
        `begin` runs it. Apart so that the next claim can leave between the two."""
        ctx = TaskContext(claimed, self.worker_id)
        handler = self.registry.handlers.get(claimed.task_name)
        timeout = (handler.timeout if handler else None) or claimed.timeout_s
        now = time.monotonic()
        attempt = Attempt(claimed, ctx, now, now + timeout, timeout, renewed=now)
        self.attempts[claimed.id] = attempt
        return attempt

    def begin(self, attempt: Attempt) -> None:
        """Start an admitted attempt, unless it was canceled meanwhile: then its outcome is
        recorded `canceled` without running the handler."""
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
        self._running.set()

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
            if not self._acks:
                self._acks_progress_at = time.monotonic()
            self._acks.append(completion)
            self._acks_pending.set()
        if not self._stopping:
            self._progress.set()

    # -- acknowledging -----------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        """Records outcomes until shutdown has nothing more to record."""
        outage = self._outages["complete"]
        while True:
            if not self._acks:
                if self._acks_closing:
                    return
                self._acks_pending.clear()
                await self._acks_pending.wait()
                continue
            if (
                len(self._acks) < self.settings.batch_size
                and self.settings.ack_interval
                and not self._acks_closing
                and not outage.ongoing
            ):
                await asyncio.sleep(self.settings.ack_interval)
            delay = await self._flush_acks()
            if delay:
                await asyncio.sleep(delay)

    async def _flush_acks(self) -> float:
        """Record the oldest outcomes; returns 0, or how long to wait before trying again."""
        batch = self._acks[:ACK_FLUSH_MAX]
        outage = self._outages["complete"]
        try:
            states = await self.db.complete(self.worker_id, batch)
        except Exception as error:
            # Kept: recording an outcome twice is harmless (guarded by attempt id).
            self.metrics.db_error("complete")
            return outage.failed(error)
        outage.succeeded()
        # Only appends happened meanwhile: the batch is still the head of the list.
        was_full = len(self._acks) >= self.max_pending_outcomes
        del self._acks[: len(batch)]
        self._acks_progress_at = self.last_db_ok_at = time.monotonic()
        if was_full and not self._stopping:
            self._progress.set()  # claims waited for room
        counts: dict[tuple[int, str], int] = {}
        for item in batch:
            state = states.get(item.id)
            if state is not None:
                key = (item.queue_id, state)
                counts[key] = counts.get(key, 0) + 1
        for (queue_id, state), count in counts.items():
            self.metrics.settled(self._queue_name(queue_id), state, count)
            if state == "retrying":  # our own failures may be due before the next poll
                for queue in self.claims.drained_queues(queue_id):
                    await self._wake_when_due(queue)
        return 0.0

    async def _drain_acks(self, ack_task: asyncio.Task[None]) -> int:
        """Let the acknowledgement loop record what is left; returns how many outcomes it
        could not record in time."""
        self._acks_closing = True
        self._acks_pending.set()
        # a few tries, each within the deadline, fit in a pod's termination grace period
        await wait_or_cancel([ack_task], 2 * self.settings.db_deadline)
        if self._acks:
            log.error(
                "could not record %d outcomes before exiting; their leases will expire "
                "and the tasks run again",
                len(self._acks),
            )
        return len(self._acks)

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
        """Renews each running attempt's lease once it is heartbeat_interval old (a third of
        the lease), looking twice an interval, so a lease is renewed with at least half of it
        left; after a failure, sooner (with backoff), so a short outage costs no lease."""
        tick = self.settings.heartbeat_interval / 2
        outage = self._outages["heartbeat"]
        delay = tick
        while True:
            await asyncio.sleep(delay)
            self._renewals_at = time.monotonic()
            try:
                await self._renew_leases(self.settings.heartbeat_interval)
            except Exception as error:
                self.metrics.db_error("heartbeat")
                delay = min(tick, outage.failed(error))
                continue
            outage.succeeded()
            delay = tick

    async def _renew_leases(self, interval: float) -> None:
        now = time.monotonic()
        by_queue: dict[int, list[Attempt]] = {}
        for a in self.attempts.values():
            if now - a.renewed >= interval and a.stop_reason is None:
                by_queue.setdefault(a.claimed.queue_id, []).append(a)
        # While outcomes cannot be recorded, their tasks keep their leases if the database
        # lets us renew them: no other worker runs a finished task again meanwhile.
        unrecorded: dict[int, list[store.Completion]] = {}
        if self._outages["complete"].ongoing:
            for c in self._acks:
                unrecorded.setdefault(c.queue_id, []).append(c)
        for queue_id in by_queue.keys() | unrecorded.keys():
            attempts = by_queue.get(queue_id, [])
            held = [(a.claimed.id, a.claimed.attempt_id, a.ctx.take_progress()) for a in attempts]
            held += [(c.id, c.attempt_id, None) for c in unrecorded.get(queue_id, [])]
            try:
                alive = await self.db.heartbeat(queue_id, held, self.settings.lease_seconds)
            except BaseException:
                for a, (_, _, progress) in zip(attempts, held, strict=False):
                    if progress is not None:
                        a.ctx.keep_progress()  # sent with the next renewal instead
                raise
            self.last_db_ok_at = time.monotonic()
            for a in attempts:
                a.renewed = now
                if a.claimed.id not in alive:
                    self.metrics.lost_leases += 1
                    log.warning("lease of task %s lost; stopping it", a.claimed.id)
                    a.stop(StopReason.LEASE_LOST)
                elif alive[a.claimed.id]:
                    a.stop(StopReason.CANCELED)

    async def _watchdog_loop(self) -> None:
        """Stops attempts past their deadline. One sweep a tick instead of a timer per task:
        timers cost more than the tasks they guard at high throughput; a timeout fires up to
        one tick late. An idle worker does not tick: it waits for an attempt to begin."""
        while True:
            if not self.attempts:
                self._running.clear()
                await self._running.wait()
            await asyncio.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            for attempt in list(self.attempts.values()):
                if attempt.deadline <= now and attempt.stop_reason is None:
                    attempt.stop(StopReason.TIMEOUT)

    # -- queue refresh -----------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        """Looks the queues up by name when the beat reports one of them gone; while it stays
        gone (the beat says so every second), at most once a maintenance interval."""
        outage = self._outages["queue refresh"]
        while True:
            await self._queues_gone.wait()
            self._queues_gone.clear()
            # jitter spreads the lookups of many workers of a dropped queue
            interval = self.settings.maintenance_interval * random.uniform(0.5, 1.5)  # noqa: S311
            try:
                await self._refresh_queue_ids()
            except Exception as error:
                self.metrics.db_error("queue refresh")
                self._queues_gone.set()  # not done: look again once the backoff has passed
                await asyncio.sleep(min(interval, outage.failed(error)))
                continue
            outage.succeeded()
            await asyncio.sleep(interval)

    async def _refresh_queue_ids(self) -> None:
        """A queue dropped and provisioned again gets a new id: follow it by name."""
        for name, queue_id in list(self.queue_ids.items()):
            info = await self.db.get_queue(QueueName.parse(name))
            if info is None:
                log.error("queue %s no longer exists; waiting for it to be created again", name)
            elif info.id != queue_id:
                log.info("queue %s was provisioned again; following it", name)
                self.queue_ids[name] = info.id
                self.claims.follow(name, info.id)
                self._on_ready(info.id)
