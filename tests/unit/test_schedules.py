"""Which ticks a scheduler pass runs: cron and macros, time zones across DST, missed ticks,
the starting deadline and the concurrency policies (pure: no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from taskq.schedules import (
    ConcurrencyPolicy,
    ScheduleSpec,
    idempotency_key,
    next_tick,
    plan,
    ticks_after,
)


def spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"queue": "reports", "task_name": "report"} | fields)


def at(hour: int, minute: int = 0, day: int = 1, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_macros_and_five_fields_are_cron() -> None:
    assert next_tick("@hourly", "UTC", at(10, 5)) == at(11)
    assert next_tick("@daily", "UTC", at(10)) == at(0, day=2)
    assert next_tick("*/15 * * * *", "UTC", at(10, 1)) == at(10, 15)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"cron": "* * *"}, "'* * *' is not a cron expression"),
        ({"cron": "61 * * * *"}, "give five fields"),
        ({"cron": "@reboot"}, "@hourly"),
        ({"time_zone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA time zone"),
        ({"max_missed_runs": -1}, "greater than or equal to 0"),
        ({"starting_deadline_seconds": 0}, "greater than or equal to 1"),
        ({"concurrency_policy": "Sometimes"}, "'Allow', 'Forbid' or 'Replace'"),
        ({"queue": "Reports"}, "should match pattern"),
    ],
)
def test_bad_schedules_name_the_field(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as error:
        spec(**({"cron": "@hourly"} | fields))
    (only,) = error.value.errors()
    assert only["loc"] == (next(iter(fields)),)
    assert words in only["msg"]


def test_a_daily_time_skipped_by_spring_forward_runs_at_the_jump() -> None:
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00
    ticks = ticks_after("30 2 * * *", "Europe/Berlin", at(12, day=27, month=3))
    found = [next(ticks) for _ in range(3)]
    assert found == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, the jump
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_a_repeated_hour_runs_daily_once_and_hourly_twice() -> None:
    # Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET
    daily = ticks_after("30 2 * * *", "Europe/Berlin", at(12, day=23, month=10))
    assert [next(daily) for _ in range(3)] == [
        datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    hourly = ticks_after("0 * * * *", "Europe/Berlin", at(22, 30, day=24, month=10))
    found = [next(hourly) for _ in range(4)]
    assert found == [at(23, day=24, month=10), at(0, day=25, month=10), at(1, day=25, month=10),
                     at(2, day=25, month=10)]
    # two passes, one per repeated hour, each run their own tick
    s = spec(cron="0 * * * *", time_zone="Europe/Berlin")
    first = plan(s, found[1], found[1] + timedelta(seconds=1), False)
    second = plan(s, first.next_run_at, first.next_run_at + timedelta(seconds=1), False)
    assert first.run == (found[1],) and second.run == (found[2],)


def test_an_on_time_pass_runs_its_tick_and_names_the_next() -> None:
    result = plan(spec(cron="@hourly"), at(10), at(10, 0) + timedelta(seconds=2), False)
    assert result.run == (at(10),)
    assert result.skipped == ()
    assert result.next_run_at == at(11)


@pytest.mark.parametrize(
    ("missed", "runs"),
    [(0, ()), (1, (13,)), (2, (12, 13)), (10, (10, 11, 12, 13))],
)
def test_after_downtime_only_the_most_recent_max_missed_runs_run(
    missed: int, runs: tuple[int, ...]
) -> None:
    result = plan(spec(cron="@hourly", max_missed_runs=missed), at(10), at(13, 20), False)
    assert result.run == tuple(at(h) for h in runs)
    assert {t for t, why in result.skipped if why == "Missed"} == {
        at(h) for h in (10, 11, 12, 13) if h not in runs
    }
    assert result.next_run_at == at(14)


def test_a_tick_past_its_starting_deadline_is_skipped() -> None:
    s = spec(cron="@hourly", starting_deadline_seconds=300)
    assert plan(s, at(10), at(10, 4), False).run == (at(10),)
    late = plan(s, at(10), at(10, 6), False)
    assert late.run == ()
    assert late.skipped == ((at(10), "PastStartingDeadline"),)
    assert late.next_run_at == at(11)


def test_concurrency_policies_with_the_previous_task_unfinished() -> None:
    forbid = plan(spec(cron="@hourly", concurrency_policy="Forbid"), at(10), at(10, 1), True)
    assert forbid.run == () and forbid.skipped == ((at(10), "PreviousUnfinished"),)
    replace = plan(spec(cron="@hourly", concurrency_policy="Replace"), at(10), at(10, 1), True)
    assert replace.run == (at(10),) and replace.cancel_previous
    allow = plan(spec(cron="@hourly"), at(10), at(10, 1), True)
    assert allow.run == (at(10),) and not allow.cancel_previous


def test_forbid_and_replace_run_one_task_of_several_due_ticks() -> None:
    for policy in (ConcurrencyPolicy.FORBID, ConcurrencyPolicy.REPLACE):
        s = spec(cron="@hourly", concurrency_policy=policy, max_missed_runs=5)
        result = plan(s, at(10), at(12, 1), False)
        assert result.run == (at(12),)
        assert {t for t, _ in result.skipped} == {at(10), at(11)}


def test_a_long_outage_is_one_bounded_pass() -> None:
    every_minute = spec(cron="* * * * *", max_missed_runs=2)
    result = plan(every_minute, at(0), at(0) + timedelta(days=30), False)
    assert len(result.run) == 2
    assert len(result.skipped) <= 1001


def test_each_tick_has_its_own_idempotency_key() -> None:
    assert idempotency_key("shop", "nightly", at(10)) != idempotency_key("shop", "nightly", at(11))
    assert idempotency_key("shop", "nightly", at(10)) == "schedule:shop/nightly@1767261600"
