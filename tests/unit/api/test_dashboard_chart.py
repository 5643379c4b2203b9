"""The dashboard's throughput chart: bars scaled to the busiest minute, stacked by outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskq.models import ThroughputMinute
from taskq_api.dashboard.chart import HEIGHT, WIDTH, chart

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _minutes(*counts: tuple[int, int]) -> list[ThroughputMinute]:
    return [ThroughputMinute(minute=T0 + timedelta(minutes=i), succeeded=s, dead=d)
            for i, (s, d) in enumerate(counts)]


def test_the_busiest_minute_fills_the_height_and_dead_stacks_on_succeeded() -> None:
    drawn = chart(_minutes((0, 0), (30, 10), (20, 0), (0, 4)))

    assert drawn.peak == 40
    empty, busiest, half, dead_only = drawn.bars
    assert empty.succeeded_height == empty.dead_height == 0
    assert busiest.succeeded_height + busiest.dead_height == HEIGHT - 14
    assert busiest.dead_y + busiest.dead_height == busiest.succeeded_y  # on top of it
    assert half.succeeded_height == (HEIGHT - 14) / 2
    assert dead_only.succeeded_height == 0
    assert dead_only.dead_y + dead_only.dead_height == HEIGHT
    assert busiest.x < half.x < dead_only.x < WIDTH
    assert busiest.label == "12:01 UTC: 30 succeeded, 10 dead"
    assert drawn.summary == (
        "Over the last 4 minutes: 50 succeeded and 14 dead; the busiest minute finished 40.")
    assert (drawn.first, drawn.last) == ("12:00", "12:03")


def test_a_quiet_hour_draws_no_bar() -> None:
    drawn = chart(_minutes(*[(0, 0)] * 61))
    assert drawn.peak == 0
    assert all(b.succeeded_height == b.dead_height == 0 for b in drawn.bars)
