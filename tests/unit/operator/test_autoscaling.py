"""The Builtin autoscaler as a table: depth, spec, replicas and history in; a decision out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskq.models import QueueStats
from taskq_operator import autoscaling
from taskq_operator.api import AutoscalingSpec
from taskq_operator.api.common import REASON_PATTERN
from taskq_operator.autoscaling import Decision, Recommendation, decide, decide_external

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def depth(ready: int, running: int = 0, scheduled: int = 0) -> QueueStats:
    return QueueStats(
        ready=ready,
        scheduled=scheduled,
        running=running,
        dead=0,
        oldest_ready_at=None,
        succeeded_last_minute=0,
        dead_last_minute=0,
        observed_at=NOW,
        count_cap=1_000_000,
    )


@dataclass(frozen=True)
class Case:
    name: str
    stats: list[QueueStats] | None
    current: int
    desired: int
    direction: str
    reason: str
    spec: dict[str, Any] = field(default_factory=dict)
    # (replicas, seconds before now)
    history: list[tuple[int, int]] = field(default_factory=list)


CASES = [
    # Demand is ready + running, over target 10 per replica.
    Case("steady", [depth(20)], 2, 2, "hold", "Steady"),
    Case("scale up at once", [depth(50)], 2, 5, "up", "ScaleUp"),
    Case("running tasks count", [depth(0, running=30)], 3, 3, "hold", "Steady"),
    Case("queues add up", [depth(5, running=5), depth(10)], 1, 2, "up", "ScaleUp"),
    Case("scheduled tasks do not count", [depth(0, scheduled=500)], 1, 1, "hold", "Steady"),
    Case("rounds up", [depth(11)], 1, 2, "up", "ScaleUp"),
    Case("capped at max", [depth(1000)], 2, 10, "up", "ScaleUp"),
    Case("kept at min", [depth(0)], 1, 1, "hold", "Steady", history=[(1, 30)]),
    Case("custom target", [depth(100)], 1, 4, "up", "ScaleUp", {"targetBacklogPerReplica": 25}),
    # From zero.
    Case("wakes on one task", [depth(1)], 0, 1, "up", "WakeFromZero", {"minReplicas": 0}),
    Case(
        "wakes to full demand, ignoring the scale-up window",
        [depth(35)],
        0,
        4,
        "up",
        "WakeFromZero",
        {"minReplicas": 0, "scaleUpStabilizationSeconds": 300},
        [(0, 10), (0, 100)],
    ),
    Case("stays at zero when idle", [depth(0)], 0, 0, "hold", "Steady", {"minReplicas": 0}),
    Case(
        "stays at zero below the activation threshold",
        [depth(4)],
        0,
        0,
        "hold",
        "Steady",
        {"minReplicas": 0, "activationThreshold": 5},
    ),
    Case(
        "wakes at the activation threshold",
        [depth(5)],
        0,
        1,
        "up",
        "WakeFromZero",
        {"minReplicas": 0, "activationThreshold": 5},
    ),
    Case("a new pool starts at minReplicas", [depth(0)], 0, 1, "up", "WakeFromZero"),
    # Scale down waits for the window (60 s by default).
    Case(
        "scale down waits within the window",
        [depth(10)],
        5,
        5,
        "hold",
        "ScaleDownStabilizing",
        history=[(5, 30)],
    ),
    Case(
        "scale down after the window",
        [depth(10)],
        5,
        1,
        "down",
        "ScaleDown",
        history=[(5, 61), (1, 30)],
    ),
    Case(
        "scale down to the highest recommendation in the window",
        [depth(10)],
        5,
        3,
        "down",
        "ScaleDown",
        history=[(5, 90), (3, 50), (1, 10)],
    ),
    Case(
        "no scale to zero while the window saw work",
        [depth(0)],
        2,
        2,
        "hold",
        "ScaleDownStabilizing",
        {"minReplicas": 0},
        [(2, 30), (0, 10)],
    ),
    Case(
        "scale to zero once the whole window was idle",
        [depth(0)],
        2,
        0,
        "down",
        "ScaleDown",
        {"minReplicas": 0},
        [(2, 70), (0, 50), (0, 10)],
    ),
    Case(
        "below the activation threshold counts as idle",
        [depth(3)],
        1,
        0,
        "down",
        "ScaleDown",
        {"minReplicas": 0, "activationThreshold": 5, "scaleDownStabilizationSeconds": 0},
    ),
    Case(
        "no scale-down window",
        [depth(0)],
        4,
        1,
        "down",
        "ScaleDown",
        {"scaleDownStabilizationSeconds": 0},
        [(4, 1)],
    ),
    Case(
        "after a restart (no history) the current replicas hold for the window",
        [depth(0)],
        5,
        5,
        "hold",
        "ScaleDownStabilizing",
    ),
    Case(
        "after a restart without a window the pool scales down at once",
        [depth(0)],
        5,
        1,
        "down",
        "ScaleDown",
        {"scaleDownStabilizationSeconds": 0},
    ),
    # Scale up waits for its window when one is set.
    Case(
        "scale up waits within its window",
        [depth(50)],
        2,
        2,
        "hold",
        "ScaleUpStabilizing",
        {"scaleUpStabilizationSeconds": 60},
        [(2, 30)],
    ),
    Case(
        "scale up to the lowest recommendation in its window",
        [depth(50)],
        2,
        4,
        "up",
        "ScaleUp",
        {"scaleUpStabilizationSeconds": 60},
        [(2, 90), (4, 30)],
    ),
    # Depth unreadable: hold, never zero.
    Case("unreadable depth holds", None, 3, 3, "hold", "DepthUnavailable", history=[(0, 10)]),
    Case(
        "unreadable depth at zero stays", None, 0, 0, "hold", "DepthUnavailable", {"minReplicas": 0}
    ),
    Case("unreadable depth still honours min", None, 0, 1, "up", "BelowMinReplicas"),
    Case("unreadable depth still honours max", None, 12, 10, "down", "AboveMaxReplicas"),
    # Bounds changed in the spec apply at once.
    Case("raised min", [depth(0)], 1, 3, "up", "ScaleUp", {"minReplicas": 3}),
    Case(
        "lowered max beats the scale-down window",
        [depth(100)],
        10,
        4,
        "down",
        "AboveMaxReplicas",
        {"maxReplicas": 4},
        [(10, 10)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    history = [Recommendation(r, NOW - timedelta(seconds=ago)) for r, ago in case.history]
    decision = decide(
        case.stats, AutoscalingSpec.model_validate(case.spec), case.current, history, NOW
    )
    assert (decision.desired, decision.direction, decision.reason) == (
        case.desired,
        case.direction,
        case.reason,
    ), decision.message


def test_the_message_says_the_numbers() -> None:
    decision = decide([depth(42, running=8)], AutoscalingSpec(), 2, [], NOW)
    assert decision.message == (
        "50 tasks (ready 42 + running 8) at 10 per replica need 5; scaling 2 -> 5"
    )
    assert decision.demand == 50


@pytest.mark.parametrize(
    ("spec", "cap"),
    [
        ({}, 100),  # 10 replicas x 10 tasks
        ({"maxReplicas": 1000, "targetBacklogPerReplica": 1_000_000}, 1_000_000_000),
        ({"maxReplicas": 2, "targetBacklogPerReplica": 1, "activationThreshold": 50}, 50),
    ],
)
def test_a_reading_capped_where_the_pool_counts_still_scales_to_max(
    spec: dict[str, Any], cap: int
) -> None:
    autoscaling_spec = AutoscalingSpec.model_validate({"minReplicas": 0, **spec})
    assert autoscaling.count_cap(autoscaling_spec) == cap
    capped = depth(cap).model_copy(update={"count_cap": cap})
    for current in (0, 1):
        decision = decide([capped], autoscaling_spec, current, [], NOW)
        assert decision.desired == autoscaling_spec.max_replicas, decision.message
        assert decision.message.startswith(f"at least {cap} tasks")
    # one below the cap is an exact count, and said so
    exact = depth(cap - 1).model_copy(update={"count_cap": cap})
    assert not decide([exact], autoscaling_spec, 1, [], NOW).message.startswith("at least")


def test_unreadable_depth_is_said_and_recommends_the_current_replicas() -> None:
    decision = decide(None, AutoscalingSpec(), 3, [], NOW)
    assert "could not be read" in decision.message
    assert decision.recommendation == Recommendation(3, NOW)
    assert decision.demand is None


def test_history_keeps_the_raw_recommendation_and_forgets_what_no_window_covers() -> None:
    spec = AutoscalingSpec(scale_down_stabilization_seconds=60, scale_up_stabilization_seconds=0)
    old = Recommendation(9, NOW - timedelta(seconds=60))
    recent = Recommendation(4, NOW - timedelta(seconds=59))
    decision = decide([depth(10)], spec, 4, [old, recent], NOW)
    assert decision.recommendation == Recommendation(1, NOW)
    assert decision.history == (recent, Recommendation(1, NOW))


def test_a_restart_seeds_the_history_with_the_current_replicas() -> None:
    decision = decide([depth(0)], AutoscalingSpec(), 5, [], NOW)
    assert decision.history == (Recommendation(5, NOW), Recommendation(1, NOW))


def test_a_burst_that_drains_between_polls_does_not_empty_the_pool() -> None:
    """Polls every 10 s: a burst, then a queue that looks empty while tasks run, then idle.
    The pool grows at once, keeps its workers while tasks run, and reaches zero only after
    a whole idle scale-down window."""
    spec = AutoscalingSpec(min_replicas=0, scale_down_stabilization_seconds=60)
    timeline = [depth(0)] * 2 + [depth(40)] + [depth(0, running=40)] * 3 + [depth(0)] * 8
    replicas, seen = 0, []
    history: tuple[Recommendation, ...] = ()
    for tick, stats in enumerate(timeline):
        decision = decide([stats], spec, replicas, history, NOW + timedelta(seconds=10 * tick))
        replicas, history = decision.desired, decision.history
        seen.append(replicas)
    # Tasks last ran at tick 5 (50 s); the 60 s window has passed at tick 11 (110 s).
    assert seen == [0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0]


def test_one_failed_reading_does_not_reset_the_windows() -> None:
    spec = AutoscalingSpec(scale_down_stabilization_seconds=60)
    history = [Recommendation(6, NOW - timedelta(seconds=20))]
    failed = decide(None, spec, 6, history, NOW)
    after = decide([depth(0)], spec, 6, failed.history, NOW + timedelta(seconds=10))
    assert (after.desired, after.reason) == (6, "ScaleDownStabilizing")


@pytest.mark.parametrize(
    ("spec_replicas", "desired", "source"), [(None, 2, "autoscaling.minReplicas"), (7, 7, "spec")]
)
def test_external_mode_follows_spec_replicas(
    spec_replicas: int | None, desired: int, source: str
) -> None:
    decision = decide_external(
        spec_replicas, AutoscalingSpec(mode="External", min_replicas=2), 3, NOW
    )
    assert (decision.desired, decision.reason) == (desired, "External")
    assert decision.message.startswith(source)


def test_reasons_are_valid_condition_reasons_and_label_values() -> None:
    reasons = [
        value
        for name, value in vars(autoscaling).items()
        if name.isupper() and isinstance(value, str)
    ]
    assert len(reasons) == 10
    for reason in reasons:
        assert re.fullmatch(REASON_PATTERN, reason)
        assert re.fullmatch(r"[A-Za-z]+", reason)


def test_decisions_are_values() -> None:
    first = decide([depth(5)], AutoscalingSpec(), 1, [], NOW)
    second = decide([depth(5)], AutoscalingSpec(), 1, [], NOW)
    assert first == second
    assert isinstance(first, Decision)
