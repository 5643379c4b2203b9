"""The worker's claim policy, without I/O: when to claim from which queue, how many tasks, and
whether the claim first promotes due delayed and retrying tasks.

The claim loop (loop.py) tells it what happened (a claim landed or failed, a wake-up, when a
delayed task is due, how many attempts run and how many outcomes wait) and asks it which
claims to send; every time comes in as an argument, so a table of cases tests it
(tests/unit/test_claim_policy.py). Rules, each measured or learned the hard way:

- one claim in flight per queue (two fight over the same index entries with SKIP LOCKED), and
  at most MAX_PARALLEL_CLAIMS at once;
- nothing is claimed while more than `2 * max(batch_size, concurrency)` outcomes wait to be
  recorded (one concurrency's worth paused claims in normal operation: -10% throughput);
- a queue with a backlog (its last claim came back full) waits for a worthwhile batch of free
  slots (half a batch); a drained one is claimed from again when notified, when its next
  delayed task is due, or after the poll interval. Drained means the last claim came back
  short while notifications arrive, and empty without them: a worker that only polls claims
  again as soon as a slot frees while its claims return tasks (else it took one claim per poll
  interval through a backlog);
- after a failed claim, the next one on the queue waits for its backoff, and first gives back
  what the failed one may have taken in this worker's name;
- a claim resumes where the last one on the queue left off (a ResumePoint: the priority and
  run_at of the last task it took), moved back when a notification says tasks became ready
  behind it; under a long-lived snapshot a claim from the queue's front visits every task
  claimed since (docs/design.md, "Claims resume where they left off"). Only while notifications
  arrive: without the listener, or once it was lost, claims start at the front, and every
  RESUME_REFRESH one does anyway (a claim another worker rolled back leaves its tasks ready
  behind everyone's resume point, and no notification says so).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from taskq.claim_order import ResumePoint

# A claim also makes due delayed and retrying tasks ready when one is known to be due, or when
# this worker's last such claim on the queue is this old (planning that step was a third of
# a small claim's time, and it usually finds nothing).
PROMOTE_INTERVAL = 0.1  # seconds
MAX_PARALLEL_CLAIMS = 2  # claims in flight at once, each on a different queue
# A drained queue is woken this long after its next task's due time: a little late rather than
# early, since the claim compares run_at with the database's clock.
DUE_MARGIN = 0.002  # seconds
# How long a queue's claims may resume before one starts at the front again: the bound on how
# late a task left behind without a notification is claimed.
RESUME_REFRESH = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class ClaimOrder:
    """A claim to send: counted in flight until `landed` or `failed` is told of it."""

    queue: str
    queue_id: int
    want: int
    promote: bool
    release_orphans: bool  # first give back what a failed claim may have taken in our name
    resume: ResumePoint | None = None  # None: from the queue's front


@dataclass(slots=True)
class _Queue:
    queue_id: int
    claiming: bool = False  # a claim is in flight
    backlog: bool = False  # the last claim came back full
    drained: bool = False  # nothing more to claim: wait for a wake-up or wake_at
    wake_at: float = 0.0  # when a drained queue is claimed from again
    retry_at: float = 0.0  # after a failed claim, the next waits for its backoff
    orphans: bool = False  # a failed claim may have taken tasks in our name
    due_at: float = float("inf")  # when a delayed task is known to be due
    promoted_at: float = float("-inf")  # the last claim that promoted due tasks
    resume: ResumePoint | None = None  # where the next claim starts within its priority
    resume_until: float = float("-inf")  # then the next claim starts at the front
    # told while a claim was in flight, applied once it lands: tasks became ready from this
    # point on, or (forget) notifications may have been missed
    rewind: ResumePoint | None = None
    forget: bool = False

    def resume_from(self, point: ResumePoint | None) -> None:
        """Resume at `point`, moved back by what notifications told since."""
        if self.forget or point is None:
            self.resume = None
        elif self.rewind is not None and self.rewind.before(point):
            self.resume = self.rewind
        else:
            self.resume = point
        self.rewind, self.forget = None, False


# Polls of one queue a second, all its workers together, that an idle queue needs: each worker
# of many polls that much less often (poll_every). Fifty a second take a new task within about
# 20 ms at the median and 100 ms at the 99th percentile, when nothing notifies the workers.
POLLS_PER_SECOND = 50.0
# ... but at most this many times its own poll interval apart.
LONGEST_POLL = 10.0


def poll_every(base: float, pollers: int | None) -> float:
    """Seconds between one worker's polls of an idle queue: its interval, or longer when
    `pollers` workers poll the queue, so that they poll it POLLS_PER_SECOND times a second
    together; at most LONGEST_POLL times its interval."""
    if not pollers:
        return base
    return max(base, min(pollers / POLLS_PER_SECOND, LONGEST_POLL * base))


class ClaimPolicy:
    def __init__(
        self,
        *,
        concurrency: int,
        batch_size: int,
        poll_interval: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # workers polling the least served of its queues, from the beats (None: unknown)
        self.pollers: int | None = None
        self._rng = rng
        self.max_pending_outcomes = 2 * max(batch_size, concurrency)
        self._worthwhile = max(1, min(batch_size, concurrency) // 2)
        self._queues: dict[str, _Queue] = {}
        self._names: list[str] = []
        self._turn = 0  # the queue a round starts from, one further each round
        self._reserved = 0  # slots promised to claims in flight
        self._claims = 0  # claims in flight
        self.listening = False  # notifications arrive: claims may resume

    # -- what to claim -----------------------------------------------------------------------

    def free(self, running: int, unrecorded: int) -> int:
        """Slots a claim may fill: none while too many outcomes wait to be recorded."""
        if unrecorded >= self.max_pending_outcomes:
            return 0
        return self.concurrency - running - self._reserved

    def plan(self, now: float, running: int, unrecorded: int) -> list[ClaimOrder]:
        """The claims to send now: one round over the queues until there is no room, each
        round starting one queue further so that no queue waits behind the others."""
        orders = []
        for i in range(len(self._names)):
            name = self._names[(self._turn + i) % len(self._names)]
            room, order = self._consider(name, now, running, unrecorded)
            if order is not None:
                orders.append(order)
            if not room:
                break
        self._turn += 1
        return orders

    def plan_next(self, queue: str, now: float, running: int, unrecorded: int) -> ClaimOrder | None:
        """After a claim on `queue` landed: the next one, if the queue has a backlog and there
        is room (sent before the landed batch's handlers start, so the database claims the
        next batch while this one runs)."""
        if not self._queues[queue].backlog:
            return None
        return self._consider(queue, now, running, unrecorded)[1]

    def _consider(
        self, name: str, now: float, running: int, unrecorded: int
    ) -> tuple[bool, ClaimOrder | None]:
        """(room for more claims on other queues, the claim to send on this one)."""
        if self._claims >= MAX_PARALLEL_CLAIMS:
            return False, None
        q = self._queues[name]
        if q.claiming or now < q.retry_at or (q.drained and now < q.wake_at):
            return True, None
        free = self.free(running, unrecorded)
        if free < (self._worthwhile if q.backlog else 1):
            return False, None
        want = min(free, self.batch_size)
        promote = now >= q.due_at or now - q.promoted_at >= PROMOTE_INTERVAL
        if promote:
            q.due_at, q.promoted_at = float("inf"), now
        q.resume_from(q.resume)
        if not self.listening or now >= q.resume_until:
            q.resume = None
        order = ClaimOrder(name, q.queue_id, want, promote, q.orphans, q.resume)
        q.orphans = False
        q.claiming = True
        self._reserved += want
        self._claims += 1
        return True, order

    # -- what happened -----------------------------------------------------------------------

    def landed(
        self, order: ClaimOrder, got: int, now: float, last: ResumePoint | None = None
    ) -> None:
        """The claim took `got` tasks, the last of them in claim order at `last`."""
        self._settle(order)
        q = self._queues[order.queue]
        if order.resume is None and last is not None:
            q.resume_until = now + RESUME_REFRESH
        q.resume_from(last or order.resume)
        q.backlog = got == order.want
        # A short claim drains the queue only while notifications arrive (the next task's
        # wakes it). Without them only an empty claim does: any tasks mean claim again as
        # soon as a slot frees, or a backlog drains at one claim per poll interval.
        q.drained = got == 0 or (self.listening and not q.backlog)
        if q.drained:
            q.wake_at = now + self.next_poll()

    def failed(self, order: ClaimOrder, now: float, retry_in: float) -> None:
        """The claim failed; it may have committed without a word back, so the next claim on
        the queue first looks for its tasks."""
        self._settle(order)
        q = self._queues[order.queue]
        q.retry_at = now + retry_in
        q.orphans = True
        if order.promote:
            q.promoted_at = float("-inf")

    def _settle(self, order: ClaimOrder) -> None:
        self._reserved -= order.want
        self._claims -= 1
        self._queues[order.queue].claiming = False

    def ready(self, queue_id: int, since: ResumePoint | None = None) -> None:
        """Tasks became ready in the queue, none before `since` in claim order (None: only a
        wake-up, nothing became ready before a resume point). A negative id: maybe in any
        queue; notifications may have been missed."""
        for q in self._queues.values():
            if queue_id < 0:
                q.drained, q.forget = False, True
            elif q.queue_id == queue_id:
                q.drained = False
                if since is not None and (q.rewind is None or since.before(q.rewind)):
                    q.rewind = since

    def listen(self, listening: bool) -> None:
        """Whether notifications arrive; when they start again, what was missed is not known."""
        if listening and not self.listening:
            for q in self._queues.values():
                q.forget = True
        self.listening = listening

    def due_in(self, queue: str, seconds: float, now: float) -> bool:
        """The queue's next delayed task is due in `seconds`; True when that wakes a drained
        queue sooner than its poll."""
        q = self._queues[queue]
        q.due_at = min(q.due_at, now + max(seconds, 0.0) + DUE_MARGIN)
        if not q.drained:
            return False
        q.wake_at = min(q.wake_at, q.due_at)
        return True

    def follow(self, queue: str, queue_id: int) -> None:
        """Claim from `queue`, known by `queue_id` (a queue dropped and provisioned again gets
        a new id)."""
        if queue in self._queues:
            self._queues[queue].queue_id = queue_id
        else:
            self._queues[queue] = _Queue(queue_id)
            self._names.append(queue)

    # -- questions ---------------------------------------------------------------------------

    def queue_id(self, queue: str) -> int:
        return self._queues[queue].queue_id

    def drained(self, queue: str) -> bool:
        return self._queues[queue].drained

    def drained_queues(self, queue_id: int) -> list[str]:
        return [n for n, q in self._queues.items() if q.queue_id == queue_id and q.drained]

    def next_poll(self) -> float:
        """Seconds until a drained queue is polled: poll_every, spread by ±50% once it is
        longer than the interval, so that the workers' polls do not fall together."""
        every = poll_every(self.poll_interval, self.pollers)
        if every <= self.poll_interval:
            return every
        return every * (0.5 + self._rng())

    def sleep_for(self, now: float) -> float:
        """How long the claim loop may sleep: until the next drained queue's wake-up or a
        failed claim's retry, at most the poll interval. A queue already due but waiting for
        free slots is woken by a slot freeing, not by a timer."""
        wakes = [q.wake_at - now for q in self._queues.values() if q.drained]
        wakes += [q.retry_at - now for q in self._queues.values()]
        return min([self.poll_interval, *(w for w in wakes if w > 0)])
