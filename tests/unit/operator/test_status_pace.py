"""How often each queue's status is read from one database (status_pace.ReadingPace)."""

from __future__ import annotations

import pytest

from taskq_operator.status_pace import FORGET_AFTER, HEADROOM, ReadingPace


def test_few_queues_keep_the_configured_interval() -> None:
    pace = ReadingPace(connections=4)
    assert pace.interval(2.0, now=0.0) == 2.0  # nothing read yet
    for queue in range(10):
        pace.observe(queue, 0.005, now=1.0)
    assert pace.interval(2.0, now=1.0) == 2.0
    assert not pace.paced


def test_many_queues_are_read_no_faster_than_the_connections_serve() -> None:
    pace = ReadingPace(connections=4)
    for queue in range(1000):
        pace.observe(queue, 0.010, now=1.0)
    # 1,000 readings of 10 ms on 4 connections: 2.5 s of work per round, plus the headroom
    assert pace.interval(2.0, now=1.0) == pytest.approx(HEADROOM * 2.5)
    assert pace.paced
    assert pace.queues == 1000


def test_the_reading_time_is_a_running_average() -> None:
    pace = ReadingPace(connections=1)
    pace.observe(1, 0.010, now=0.0)
    for _ in range(200):
        pace.observe(1, 0.020, now=0.0)
    assert pace.reading_s == pytest.approx(0.020, rel=0.01)
    pace.observe(1, 1.0, now=0.0)  # one slow reading moves it a little only
    assert pace.reading_s is not None and pace.reading_s < 0.1


def test_queues_no_longer_read_stop_counting() -> None:
    pace = ReadingPace(connections=1)
    for queue in range(500):
        pace.observe(queue, 0.010, now=0.0)
    assert pace.interval(1.0, now=1.0) == pytest.approx(HEADROOM * 5.0)
    pace.observe(1, 0.010, now=FORGET_AFTER)
    assert pace.interval(1.0, now=FORGET_AFTER + 1) == 1.0  # only queue 1 is read still
    assert pace.queues == 1
    assert not pace.paced


def test_a_long_interval_keeps_its_queues_counted() -> None:
    pace = ReadingPace(connections=1)
    for queue in range(10_000):
        pace.observe(queue, 0.010, now=0.0)
    long = pace.interval(1.0, now=0.0)
    assert long == pytest.approx(HEADROOM * 100.0)
    # not read for longer than FORGET_AFTER, but for less than three of its intervals
    assert pace.interval(1.0, now=2 * long) == pytest.approx(long)
    assert pace.interval(1.0, now=3 * long + 1) == 1.0


def test_a_pace_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="connections must be at least 1, not 0"):
        ReadingPace(connections=0)
