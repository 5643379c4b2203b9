"""Retry delays and outage logging (taskq.backoff), and the loop supervisor."""

from __future__ import annotations

import asyncio
import logging

import pytest

from taskq.backoff import Backoff, Outage
from taskq.supervision import supervised


def test_delays_start_within_25ms_double_and_stop_at_the_cap() -> None:
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 0.999999)
    lows = [low.next_delay() for _ in range(10)]
    highs = [high.next_delay() for _ in range(10)]
    assert highs[0] <= 0.025 and lows[0] == pytest.approx(0.0125)
    assert lows[:4] == pytest.approx([0.0125, 0.025, 0.05, 0.1])
    assert max(highs) <= 2.0 and lows[-1] == pytest.approx(1.0)  # half the cap at the least
    low.reset()
    assert low.next_delay() == pytest.approx(0.0125)


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([10.0, 12.5])
    outage = Outage("claim", logging.getLogger("t"), lambda e: isinstance(e, OSError), str,
                    Backoff(rng=lambda: 0.0), clock=lambda: next(clock))
    with caplog.at_level(logging.INFO, "t"):
        delays = [outage.failed(OSError("refused")) for _ in range(3)]
        assert outage.ongoing
        outage.succeeded()
        outage.succeeded()  # nothing to report twice
    assert delays == pytest.approx([0.0125, 0.025, 0.05])
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "claim failed: refused; retrying with backoff"),
        ("INFO", "claim works again after 3 failed tries over 2.50s"),
    ]
    assert (outage.started_at, outage.backoff.failures) == (None, 0)


def test_an_unexpected_error_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("complete", logging.getLogger("t"), lambda e: False, str)
    try:
        raise RuntimeError("a bug")
    except RuntimeError as error:
        outage.failed(error)
    (record,) = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert "unexpected error" in record.getMessage()


async def test_a_crashing_loop_is_restarted_until_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    restarts: list[str] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"crash {len(runs)}")

    await asyncio.wait_for(
        supervised("ack", body, restarts.append, Backoff(first=0.001, cap=0.002)), 5)
    assert runs == [0, 1, 2]
    assert restarts == ["ack", "ack"]
    assert [r.exc_info is not None for r in caplog.records] == [True, True]
