"""The worker's claim policy as a table: what happened to the queues, then which claims it
sends (queue, tasks wanted, promote, give back orphans first) and how long the claim loop may
sleep. Concurrency 10 and batch 4 unless a case says otherwise: a worthwhile batch is 2 free
slots, claims stop at 20 unrecorded outcomes, the poll interval is 1 s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from taskq.worker.claim_policy import (
    DUE_MARGIN,
    LONGEST_POLL,
    POLLS_PER_SECOND,
    ClaimPolicy,
    poll_every,
)

Step = Callable[[ClaimPolicy], None]
QUEUE_IDS = {"a": 1, "b": 2, "c": 3}


def claims(at: float, running: int = 0, **outcome: int | None) -> Step:
    """Plan at `at`; each claim on a queue named here lands with that many tasks (None: it
    fails, retried 0.5 s later); others stay in flight."""

    def step(policy: ClaimPolicy) -> None:
        for order in policy.plan(at, running, 0):
            if order.queue not in outcome:
                continue
            got = outcome[order.queue]
            if got is None:
                policy.failed(order, at, 0.5)
            else:
                policy.landed(order, got, at)

    return step


def ready(queue_id: int) -> Step:
    return lambda policy: policy.ready(queue_id)


def due(queue: str, seconds: float, at: float) -> Step:
    def step(policy: ClaimPolicy) -> None:
        policy.due_in(queue, seconds, at)

    return step


def listen(policy: ClaimPolicy) -> None:
    """Notifications arrive from now on."""
    policy.listen(True)


def follow(queue: str, queue_id: int) -> Step:
    return lambda policy: policy.follow(queue, queue_id)


@dataclass(frozen=True)
class Case:
    why: str
    steps: list[Step]
    at: float
    sends: list[tuple[str, int, bool, bool]]  # queue, want, promote, release_orphans
    running: int = 0
    unrecorded: int = 0
    queues: tuple[str, ...] = ("a",)
    concurrency: int = 10
    batch: int = 4
    queue_ids: dict[str, int] = field(default_factory=dict)  # expected ids, if not QUEUE_IDS


CASES = [
    Case("an idle worker claims a batch, promoting due tasks", [], 100.0, [("a", 4, True, False)]),
    Case("fewer free slots than a batch: as many as are free", [], 100.0, [("a", 3, True, False)],
         running=7),
    Case("no free slot: nothing", [], 100.0, [], running=10),
    Case("one below the outcome bound: claims", [], 100.0, [("a", 4, True, False)],
         unrecorded=19),
    Case("at the outcome bound (2 x max(batch, concurrency)): nothing", [], 100.0, [],
         unrecorded=20),
    Case("the bound follows the batch when it is the larger", [], 100.0,
         [("a", 10, True, False)], unrecorded=199, batch=100),
    Case("a backlog waits for a worthwhile batch (half a batch)", [claims(100.0, a=4)], 100.0,
         [], running=9),
    Case("a backlog claims once half a batch is free", [claims(100.0, a=4)], 100.0,
         [("a", 2, False, False)], running=8),
    Case("an empty claim drains the queue: it waits for its poll", [claims(100.0, a=0)],
         100.99, []),
    Case("a drained queue is claimed from after the poll interval", [claims(100.0, a=0)],
         101.0, [("a", 4, True, False)]),
    Case("while notifications arrive, a short claim drains the queue",
         [listen, claims(100.0, a=1)], 100.99, []),
    Case("without notifications, a short claim that took tasks is followed at once",
         [claims(100.0, a=1)], 100.0, [("a", 4, False, False)], running=1),
    Case("a full claim after a poll: the next one when half a batch is free, not a poll later",
         [claims(100.0, a=0), claims(101.0, a=4)], 101.01, [("a", 2, False, False)],
         running=8),
    Case("a notification wakes a drained queue at once", [claims(100.0, a=0), ready(1)],
         100.01, [("a", 4, False, False)]),
    Case("a notification for another queue does not", [claims(100.0, a=0), ready(2)],
         100.5, []),
    Case("a reconnected listener (-1) wakes every queue", [claims(100.0, a=0), ready(-1)],
         100.5, [("a", 4, True, False)]),
    Case("a delayed task due before the poll wakes the queue, not before it is due",
         [claims(100.0, a=0), due("a", 0.3, 100.0)], 100.3, []),
    Case("a delayed task due before the poll wakes the queue, promoting it",
         [claims(100.0, a=0), due("a", 0.3, 100.0)], 100.3 + DUE_MARGIN,
         [("a", 4, True, False)]),
    Case("promotion at most every 0.1 s while nothing is known to be due",
         [claims(100.0, a=4)], 100.05, [("a", 4, False, False)]),
    Case("promotion again after 0.1 s", [claims(100.0, a=4)], 100.125, [("a", 4, True, False)]),
    Case("promotion at once when a task is known to be due",
         [claims(100.0, a=4), due("a", 0.01, 100.0)], 100.05, [("a", 4, True, False)]),
    Case("one claim in flight per queue", [claims(100.0)], 100.0, []),
    Case("a failed claim waits for its backoff", [claims(100.0, a=None)], 100.49, []),
    Case("after its backoff, gives back what the failed claim took, and promotes again",
         [claims(100.0, a=None)], 100.5, [("a", 4, True, True)]),
    Case("orphans are given back once, not on every claim",
         [claims(100.0, a=None), claims(100.5, a=4)], 100.7, [("a", 4, True, False)]),
    Case("at most two claims in flight, each on its own queue", [], 100.0,
         [("a", 4, True, False), ("b", 4, True, False)], queues=("a", "b", "c")),
    Case("free slots are promised to claims in flight", [], 100.0,
         [("a", 4, True, False), ("b", 2, True, False)], running=4, queues=("a", "b")),
    Case("each round starts one queue further: no queue waits behind the others",
         [claims(100.0, a=1, b=1), ready(-1)], 100.01, [("b", 1, False, False)],
         running=9, queues=("a", "b")),
    Case("a queue provisioned again is claimed from under its new id", [follow("a", 77)],
         100.0, [("a", 4, True, False)], queue_ids={"a": 77}),
]


def _policy(case: Case) -> ClaimPolicy:
    policy = ClaimPolicy(concurrency=case.concurrency, batch_size=case.batch, poll_interval=1.0)
    for queue in case.queues:
        policy.follow(queue, QUEUE_IDS[queue])
    return policy


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_which_claims_go_out(case: Case) -> None:
    policy = _policy(case)
    for step in case.steps:
        step(policy)
    orders = policy.plan(case.at, case.running, case.unrecorded)
    assert [(o.queue, o.want, o.promote, o.release_orphans) for o in orders] == case.sends
    ids = {**QUEUE_IDS, **case.queue_ids}
    assert [o.queue_id for o in orders] == [ids[o.queue] for o in orders]


@dataclass(frozen=True)
class Sleep:
    why: str
    steps: list[Step]
    at: float
    seconds: float


SLEEPS = [
    Sleep("nothing to wait for: the poll interval", [], 100.0, 1.0),
    Sleep("a drained queue: until its poll", [claims(100.0, a=0)], 100.25, 0.75),
    Sleep("a drained queue with a task due sooner: until it is due",
          [claims(100.0, a=0), due("a", 0.3, 100.0)], 100.0, 0.3 + DUE_MARGIN),
    Sleep("a failed claim: until its retry", [claims(100.0, a=None)], 100.0, 0.5),
    Sleep("a queue with a backlog waits for slots, not a timer", [claims(100.0, a=4)], 100.0,
          1.0),
]


@pytest.mark.parametrize("case", SLEEPS, ids=[c.why for c in SLEEPS])
def test_how_long_the_claim_loop_may_sleep(case: Sleep) -> None:
    policy = _policy(Case(case.why, [], case.at, []))
    for step in case.steps:
        step(policy)
    assert policy.sleep_for(case.at) == pytest.approx(case.seconds)


def test_the_next_claim_follows_a_full_batch_at_once_but_not_a_short_one() -> None:
    policy = _policy(Case("", [], 0.0, [], queues=("a", "b")))
    policy.listen(True)
    first, _ = policy.plan(100.0, 0, 0)
    policy.landed(first, 4, 100.0)
    again = policy.plan_next("a", 100.0, 4, 0)
    assert again is not None and (again.queue, again.want) == ("a", 2)  # b holds 4 slots
    policy.landed(again, 1, 100.0)
    assert policy.plan_next("a", 100.0, 5, 0) is None
    assert policy.drained("a") and policy.drained_queues(1) == ["a"]


def test_a_due_time_only_wakes_a_drained_queue() -> None:
    policy = _policy(Case("", [], 0.0, []))
    assert policy.due_in("a", 0.5, 100.0) is False  # not drained: its claims go on anyway
    (order,) = policy.plan(100.0, 0, 0)
    policy.landed(order, 0, 100.0)
    assert policy.due_in("a", 0.5, 100.0) is True


def test_without_notifications_only_an_empty_claim_drains_a_queue() -> None:
    """A polling worker's queue stays claimable while its claims return tasks; before, a
    drained flag set once was cleared only by a notification, so a worker without them asked
    when the next delayed task was due after every claim, and a short claim cost a poll."""
    policy = _policy(Case("", [], 0.0, []))
    (order,) = policy.plan(100.0, 0, 0)
    policy.landed(order, 0, 100.0)
    assert policy.drained("a")
    (order,) = policy.plan(101.0, 0, 0)  # the poll
    policy.landed(order, 4, 101.0)
    assert not policy.drained("a") and policy.drained_queues(1) == []
    (order,) = policy.plan(101.0, 4, 0)
    policy.landed(order, 3, 101.0)
    assert not policy.drained("a")
    assert [o.want for o in policy.plan(101.0, 7, 0)] == [3]


def test_each_of_many_pollers_polls_less_often_and_together_they_poll_as_needed() -> None:
    assert poll_every(1.0, None) == 1.0  # not counted yet: the interval
    assert poll_every(1.0, 10) == 1.0  # few: the interval
    assert poll_every(1.0, 100) == pytest.approx(100 / POLLS_PER_SECOND)
    assert poll_every(1.0, 100_000) == LONGEST_POLL  # at most LONGEST_POLL intervals
    assert poll_every(5.0, 100) == 5.0  # never more often than asked


def test_an_idle_queue_is_polled_again_after_a_spread_poll_of_its_many_workers() -> None:
    draws = iter([0.0, 1.0])
    policy = ClaimPolicy(concurrency=10, batch_size=10, poll_interval=1.0,
                         rng=lambda: next(draws))
    policy.follow("a", 1)
    policy.pollers = 500  # 10 s apart each: 50 polls a second together
    (order,) = policy.plan(100.0, 0, 0)
    policy.landed(order, 0, 100.0)
    assert policy.plan(104.0, 0, 0) == []
    (order,) = policy.plan(105.0, 0, 0)  # 10 s x 0.5
    assert order.queue == "a"
    policy.landed(order, 0, 105.0)
    assert policy.plan(119.0, 0, 0) == []
    assert [o.queue for o in policy.plan(120.0, 0, 0)] == ["a"]  # 10 s x 1.5
