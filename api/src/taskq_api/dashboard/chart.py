"""The throughput chart: succeeded and dead tasks per minute as stacked bars, drawn here as
inline SVG (no script, no chart library), with a text summary for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskq.models import ThroughputMinute

WIDTH = 1200
HEIGHT = 140
_TOP = 14  # room above the tallest bar for its label


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    succeeded_y: float
    succeeded_height: float
    dead_y: float
    dead_height: float
    label: str  # the minute and its counts, as a tooltip


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak: int  # the busiest minute's finished tasks: the top of the scale
    summary: str
    first: str  # the first and last minutes' times, under the axis
    last: str
    width: int = WIDTH
    height: int = HEIGHT


def chart(minutes: Sequence[ThroughputMinute]) -> Chart:
    peak = max((m.succeeded + m.dead for m in minutes), default=0)
    scale = (HEIGHT - _TOP) / peak if peak else 0.0
    step = WIDTH / max(len(minutes), 1)
    bars = []
    for i, m in enumerate(minutes):
        succeeded, dead = m.succeeded * scale, m.dead * scale
        bars.append(Bar(
            x=round(i * step + step * 0.1, 2),
            width=round(step * 0.8, 2),
            succeeded_y=round(HEIGHT - succeeded, 2),
            succeeded_height=round(succeeded, 2),
            dead_y=round(HEIGHT - succeeded - dead, 2),
            dead_height=round(dead, 2),
            label=f"{m.minute:%H:%M} UTC: {m.succeeded} succeeded, {m.dead} dead",
        ))
    total_succeeded = sum(m.succeeded for m in minutes)
    total_dead = sum(m.dead for m in minutes)
    summary = (
        f"Over the last {len(minutes)} minutes: {total_succeeded} succeeded and {total_dead} "
        f"dead; the busiest minute finished {peak}."
    )
    return Chart(
        bars=bars,
        peak=peak,
        summary=summary,
        first=f"{minutes[0].minute:%H:%M}" if minutes else "",
        last=f"{minutes[-1].minute:%H:%M}" if minutes else "",
    )
