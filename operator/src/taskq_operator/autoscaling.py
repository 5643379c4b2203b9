"""The Builtin autoscaler: how many workers a pool needs, as a pure function of what was seen.

Like the HorizontalPodAutoscaler: each poll turns the queues' depth into a raw
recommendation; a scale up follows the lowest recommendation of the scale-up window and a
scale down the highest of the scale-down window, so one quiet poll does not remove workers
and one burst does not add them unless a window says so. Unlike the HPA, a pool at zero
wakes at once when work appears, and a failed depth reading never moves the pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from taskq.models import QueueStats
from taskq_operator.api import AutoscalingSpec

Direction = Literal["up", "down", "hold"]

# Reasons: stable CamelCase words, valid as condition and event reasons and as Prometheus
# label values; the message says the numbers.
WAKE_FROM_ZERO = "WakeFromZero"
SCALE_UP = "ScaleUp"
SCALE_DOWN = "ScaleDown"
SCALE_UP_STABILIZING = "ScaleUpStabilizing"
SCALE_DOWN_STABILIZING = "ScaleDownStabilizing"
STEADY = "Steady"
BELOW_MIN_REPLICAS = "BelowMinReplicas"
ABOVE_MAX_REPLICAS = "AboveMaxReplicas"
DEPTH_UNAVAILABLE = "DepthUnavailable"
EXTERNAL = "External"


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Replicas the depth called for at one poll, before stabilization."""

    replicas: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    direction: Direction
    reason: str
    message: str
    recommendation: Recommendation
    """This poll's recommendation (the current replicas when depth was unreadable)."""
    history: tuple[Recommendation, ...]
    """What to pass as `history` to the next decide(): this poll's recommendation added,
    those older than both windows dropped."""
    demand: int | None
    """Ready plus running tasks over the pool's queues; None when unreadable."""


def decide(
    stats: Sequence[QueueStats] | None,
    spec: AutoscalingSpec,
    current_replicas: int,
    history: Sequence[Recommendation],
    now: datetime,
) -> Decision:
    """The replicas a Builtin pool should run now.

    `stats` holds one reading per queue the pool serves, or is None when any could not be
    read. `history` is the previous Decision's history; empty after an operator (re)start,
    when the current replicas count as recommended now, as the HPA does, so a restart
    does not shrink a pool before a scale-down window has passed.
    """
    past = tuple(history) or (Recommendation(current_replicas, now),)
    if stats is None:
        desired, reason, message = _clamped(
            current_replicas,
            spec,
            DEPTH_UNAVAILABLE,
            f"queue depth could not be read; holding {current_replicas} replicas",
        )
        recommendation = Recommendation(current_replicas, now)
        return _decision(
            desired, current_replicas, reason, message, recommendation, past, spec, None
        )

    ready = sum(s.ready for s in stats)
    running = sum(s.running for s in stats)
    demand = ready + running
    raw = _recommend(demand, spec)
    recommendation = Recommendation(raw, now)
    # A capped count is a lower bound; read at count_cap(spec), it already calls for the most
    # this pool may run (or at least its activation threshold), so the decision is exact.
    at_least = "at least " if any({"ready", "running"} & set(s.capped) for s in stats) else ""
    why = (
        f"{at_least}{demand} tasks (ready {ready} + running {running}) at "
        f"{spec.target_backlog_per_replica} per replica need {raw}"
    )

    if current_replicas == 0 and raw > 0:
        # A pool at zero has nobody to run the work: no window applies on the way up.
        return _decision(
            raw, 0, WAKE_FROM_ZERO, f"{why}; waking from zero", recommendation, past, spec, demand
        )

    up_cutoff = now - timedelta(seconds=spec.scale_up_stabilization_seconds)
    down_cutoff = now - timedelta(seconds=spec.scale_down_stabilization_seconds)
    up_bound = min([raw, *(r.replicas for r in past if r.at > up_cutoff)])
    down_bound = max([raw, *(r.replicas for r in past if r.at > down_cutoff)])
    stabilized = min(max(current_replicas, up_bound), down_bound)

    if stabilized > current_replicas:
        reason, message = SCALE_UP, f"{why}; scaling {current_replicas} -> {stabilized}"
    elif stabilized < current_replicas:
        reason, message = SCALE_DOWN, f"{why}; scaling {current_replicas} -> {stabilized}"
    elif raw > current_replicas:
        reason = SCALE_UP_STABILIZING
        message = (
            f"{why}; holding {current_replicas} within the "
            f"{spec.scale_up_stabilization_seconds}s scale-up window"
        )
    elif raw < current_replicas:
        reason = SCALE_DOWN_STABILIZING
        message = (
            f"{why}; holding {current_replicas} within the "
            f"{spec.scale_down_stabilization_seconds}s scale-down window"
        )
    else:
        reason, message = STEADY, f"{why}; {current_replicas} running"
    desired, reason, message = _clamped(stabilized, spec, reason, message)
    return _decision(desired, current_replicas, reason, message, recommendation, past, spec, demand)


def count_cap(spec: AutoscalingSpec) -> int:
    """Where the pool's depth readings may stop counting: a queue with that many ready (or
    running) tasks alone calls for maxReplicas and passes the activation threshold, so more
    would change nothing. The spec's bounds keep it within taskq.queue_stats's (10^9)."""
    return max(spec.max_replicas * spec.target_backlog_per_replica, spec.activation_threshold)


def decide_external(
    spec_replicas: int | None, spec: AutoscalingSpec, current_replicas: int, now: datetime
) -> Decision:
    """External mode: spec.replicas, as HPA, KEDA or kubectl scale wrote it; minReplicas
    until one of them has (an HPA does not scale a target that is at zero)."""
    desired = spec.min_replicas if spec_replicas is None else spec_replicas
    source = "autoscaling.minReplicas" if spec_replicas is None else "spec.replicas"
    recommendation = Recommendation(desired, now)
    return _decision(
        desired,
        current_replicas,
        EXTERNAL,
        f"{source} is {desired}",
        recommendation,
        (),
        spec,
        None,
    )


def _recommend(demand: int, spec: AutoscalingSpec) -> int:
    # Below the activation threshold the pool may sit at minReplicas, zero included.
    needed = (
        math.ceil(demand / spec.target_backlog_per_replica)
        if demand >= spec.activation_threshold
        else 0
    )
    return min(max(needed, spec.min_replicas), spec.max_replicas)


def _clamped(
    replicas: int, spec: AutoscalingSpec, reason: str, message: str
) -> tuple[int, str, str]:
    """Bounds win over everything else: a changed min/max applies at once."""
    if replicas < spec.min_replicas:
        return (
            spec.min_replicas,
            BELOW_MIN_REPLICAS,
            f"{message}; raised to minReplicas {spec.min_replicas}",
        )
    if replicas > spec.max_replicas:
        return (
            spec.max_replicas,
            ABOVE_MAX_REPLICAS,
            f"{message}; lowered to maxReplicas {spec.max_replicas}",
        )
    return replicas, reason, message


def _decision(
    desired: int,
    current: int,
    reason: str,
    message: str,
    recommendation: Recommendation,
    past: Sequence[Recommendation],
    spec: AutoscalingSpec,
    demand: int | None,
) -> Decision:
    window = timedelta(
        seconds=max(spec.scale_up_stabilization_seconds, spec.scale_down_stabilization_seconds)
    )
    kept = tuple(r for r in past if r.at > recommendation.at - window)
    direction: Direction = "up" if desired > current else "down" if desired < current else "hold"
    return Decision(
        desired=desired,
        direction=direction,
        reason=reason,
        message=message,
        recommendation=recommendation,
        history=(*kept, recommendation),
        demand=demand,
    )
