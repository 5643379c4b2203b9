"""Where the claim policy's claims start reading a queue (its ResumePoint): after the last task
the worker claimed there, moved back by notifications, and from the front whenever
notifications may have been missed or RESUME_REFRESH has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskq.claim_order import ResumePoint
from taskq.store.notifications import parse_ready
from taskq.worker.claim_policy import RESUME_REFRESH, ClaimOrder, ClaimPolicy

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def at(seconds: float, priority: int = 50) -> ResumePoint:
    return ResumePoint(priority, T0 + timedelta(seconds=seconds))


def listening_policy() -> ClaimPolicy:
    policy = ClaimPolicy(concurrency=10, batch_size=4, poll_interval=1.0)
    policy.follow("a", 1)
    policy.listen(True)
    return policy


def send(policy: ClaimPolicy, now: float) -> ClaimOrder:
    policy.ready(1)  # wake the queue up, telling nothing of where tasks became ready
    (order,) = policy.plan(now, 0, 0)
    return order


def test_the_first_claim_starts_at_the_front_and_the_next_after_its_last_task() -> None:
    policy = listening_policy()
    first = send(policy, 0.0)
    assert first.resume is None
    policy.landed(first, 4, 0.0, at(4))
    assert send(policy, 0.1).resume == at(4)


def test_a_claim_that_finds_nothing_keeps_the_resume_point() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.landed(send(policy, 0.1), 0, 0.1, None)
    assert send(policy, 0.2).resume == at(4)


def test_tasks_ready_before_the_resume_point_move_it_back() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.ready(1, at(2))  # an enqueue that committed after a later one
    policy.ready(1, at(9))  # after the point: nothing to move
    policy.ready(2, at(0))  # another queue
    assert send(policy, 0.1).resume == at(2)


def test_a_higher_priority_comes_first_in_claim_order_whatever_its_run_at() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.ready(1, at(30, priority=90))
    order = send(policy, 0.1)
    assert order.resume == at(30, priority=90)
    policy.landed(order, 0, 0.1)
    policy.ready(1, at(0, priority=10))  # a lower priority is read after this one's anyway
    assert send(policy, 0.2).resume == at(30, priority=90)


def test_what_is_told_while_a_claim_is_in_flight_applies_once_it_lands() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    order = send(policy, 0.1)
    policy.ready(1, at(5))  # committed before the claim's last task, told before it landed
    policy.landed(order, 4, 0.1, at(8))
    assert send(policy, 0.2).resume == at(5)


def test_a_failed_claim_keeps_where_it_would_have_started() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.ready(1, at(3))
    order = send(policy, 0.1)
    assert order.resume == at(3)
    policy.failed(order, 0.1, 0.0)
    assert send(policy, 0.2).resume == at(3)


def test_after_a_gap_in_notifications_claims_start_at_the_front() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.ready(-1)  # the listener reconnected: what happened meanwhile is unknown
    assert send(policy, 0.1).resume is None


def test_a_gap_told_while_a_claim_is_in_flight_still_forgets() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    order = send(policy, 0.1)
    policy.ready(-1)
    policy.landed(order, 4, 0.1, at(8))
    assert send(policy, 0.2).resume is None


def test_without_notifications_every_claim_starts_at_the_front() -> None:
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.listen(False)
    order = send(policy, 0.1)
    assert order.resume is None
    policy.landed(order, 0, 0.1)
    policy.listen(True)  # back, but what was missed is not known
    first = send(policy, 0.2)
    assert first.resume is None
    policy.landed(first, 4, 0.2, at(6))
    assert send(policy, 0.3).resume == at(6)


def test_a_claim_starts_at_the_front_again_every_refresh_period() -> None:
    """A claim another worker rolled back leaves its tasks ready before everyone's resume
    point, and no notification says so."""
    policy = listening_policy()
    policy.landed(send(policy, 0.0), 4, 0.0, at(4))
    policy.landed(send(policy, RESUME_REFRESH - 0.1), 4, RESUME_REFRESH - 0.1, at(8))
    refresh = send(policy, RESUME_REFRESH)
    assert refresh.resume is None
    policy.landed(refresh, 4, RESUME_REFRESH, at(1))
    assert send(policy, RESUME_REFRESH + 0.1).resume == at(1)


def test_ready_payloads() -> None:
    assert parse_ready("12") == (12, None)
    assert parse_ready("12 50 1796527391793404") == (
        12,
        ResumePoint(50, datetime(2026, 12, 6, 3, 23, 11, 793404, tzinfo=UTC)),
    )
    for bad in ("", "x", "12 50", "12  1796527391793404", "-1", "12 50 1e9"):
        assert parse_ready(bad) is None, bad
