"""Recurring tasks: what a schedule is, and which of its ticks a scheduler pass runs.

Pure: the store locks a due schedule, asks `plan` what to do at the database's `now`, does it
and records the plan, all in one transaction, so each tick yields at most one task whoever
runs the scheduler (docs/schedules.md). Cron follows cronsim (Debian cron's semantics across
DST changes: a time skipped by a spring-forward runs at the jump, a repeated hour runs once for
daily schedules and twice for hourly ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from taskq.models import MAX_DELAY_SECONDS, MAX_TASK_NAME
from taskq.names import LABEL_PATTERN

# The macros of Vixie cron that name a time (not @reboot, which has none here).
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_MISSED_RUNS = 1000


class ConcurrencyPolicy(StrEnum):
    """As a CronJob's: what a tick does while the previous tick's task is unfinished."""

    ALLOW = "Allow"  # enqueue anyway
    FORBID = "Forbid"  # skip the tick
    REPLACE = "Replace"  # cancel the unfinished task, then enqueue


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a cron expression taskq accepts; None when it is."""
    try:
        CronSim(MACROS.get(expression.strip(), expression), datetime(2000, 1, 1))
    except CronSimError as error:
        return (
            f"{expression!r} is not a cron expression ({error}): give five fields, minute "
            "hour day-of-month month day-of-week (e.g. '*/15 * * * *'), or one of "
            + ", ".join(MACROS)
        )
    return None


def zone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone; None when it is."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
    return None


class ScheduleSpec(BaseModel):
    """What a schedule enqueues, and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=LABEL_PATTERN)]
    """The queue's name, in the schedule's namespace."""
    task_name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TASK_NAME)]
    payload: Any = Field(default_factory=dict)
    priority: int = Field(default=50, ge=0, le=100)
    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    suspend: bool = False
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=int(MAX_DELAY_SECONDS))
    """A tick not started within this many seconds of its time is skipped."""
    max_missed_runs: int = Field(default=1, ge=0, le=MAX_MISSED_RUNS)
    """When a pass finds several ticks due (the scheduler did not run for a while): how many of
    the most recent to run; 0 none, 1 the last one."""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        error = cron_error(value)
        if error:
            raise ValueError(error)
        return value.strip()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        error = zone_error(value)
        if error:
            raise ValueError(error)
        return value


def ticks_after(cron: str, time_zone: str, after: datetime) -> Iterator[datetime]:
    """The schedule's ticks strictly after `after` (aware), in UTC: two ticks of a repeated
    hour in the schedule's zone differ only in `fold`, which equality within one zone
    ignores."""
    for tick in CronSim(MACROS.get(cron, cron), after.astimezone(ZoneInfo(time_zone))):
        yield tick.astimezone(UTC)


def next_tick(cron: str, time_zone: str, after: datetime) -> datetime:
    return next(ticks_after(cron, time_zone, after))


@dataclass(frozen=True)
class Plan:
    """One pass over a due schedule: the ticks to enqueue (oldest first), the ticks skipped
    with why, whether to cancel the unfinished previous task first, and the next tick."""

    run: tuple[datetime, ...]
    skipped: tuple[tuple[datetime, str], ...]
    cancel_previous: bool
    next_run_at: datetime


# A pass stops collecting due ticks here: a schedule every minute left for two years is still
# one bounded pass (the rest are older, so skipped anyway unless max_missed_runs is larger).
_MAX_DUE = MAX_MISSED_RUNS + 1


def plan(
    spec: ScheduleSpec, next_run_at: datetime, now: datetime, previous_unfinished: bool
) -> Plan:
    """What a pass at `now` does with a schedule whose earliest unhandled tick is
    `next_run_at` (<= now)."""
    due = [next_run_at]
    ticks = ticks_after(spec.cron, spec.time_zone, next_run_at)
    following = next(ticks)
    while following <= now:
        due.append(following)
        if len(due) > _MAX_DUE:
            due.pop(0)
        following = next(ticks)
    skipped: list[tuple[datetime, str]] = []
    if len(due) > 1:  # behind: only the most recent max_missed_runs are run
        keep = due[len(due) - spec.max_missed_runs :] if spec.max_missed_runs else []
        skipped += [(tick, "Missed") for tick in due if tick not in keep]
        due = keep
    deadline = spec.starting_deadline_seconds
    if deadline is not None:
        late = [t for t in due if now - t > timedelta(seconds=deadline)]
        skipped += [(tick, "PastStartingDeadline") for tick in late]
        due = [t for t in due if t not in late]
    cancel = False
    if due and previous_unfinished:
        if spec.concurrency_policy is ConcurrencyPolicy.FORBID:
            skipped += [(tick, "PreviousUnfinished") for tick in due]
            due = []
        elif spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
            cancel = True
    if len(due) > 1 and spec.concurrency_policy is not ConcurrencyPolicy.ALLOW:
        # Forbid or Replace: one task at a time, so only the latest of the pass runs
        skipped += [(tick, "PreviousUnfinished") for tick in due[:-1]]
        due = due[-1:]
    return Plan(tuple(due), tuple(sorted(skipped)), cancel, following)


def idempotency_key(namespace: str, name: str, tick: datetime) -> str:
    """The tick's identity: a second enqueue of the same tick finds its task."""
    return f"schedule:{namespace}/{name}@{int(tick.timestamp())}"
