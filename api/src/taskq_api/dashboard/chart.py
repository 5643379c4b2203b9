"""The charts, drawn here as inline SVG (no script, no chart library), each with a text summary
for screen readers: the queue page's throughput (succeeded and dead tasks per minute as stacked
bars) and wait (median and 95th percentile, lines), and the overview's sparkline per queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskq.models import ThroughputMinute, WaitMinute

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


SPARK_WIDTH = 120
SPARK_HEIGHT = 24


@dataclass(frozen=True, slots=True)
class Sparkline:
    """A queue's finished tasks per minute for the overview's row: two polylines (every
    finished task, and the dead among them) in a SPARK_WIDTH x SPARK_HEIGHT box; a few hundred
    bytes per row, so 200 rows stay a small page."""

    finished: str  # SVG polyline points
    dead: str  # empty when no task died
    peak: int
    summary: str
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


def _points(values: Sequence[float], scale: float, width: int, height: int) -> str:
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{round(i * step, 1):g},{round(height - 1 - v * scale, 1):g}"
        for i, v in enumerate(values)
    )


def sparkline(minutes: Sequence[ThroughputMinute]) -> Sparkline:
    finished = [m.succeeded + m.dead for m in minutes]
    dead = [m.dead for m in minutes]
    peak = max(finished, default=0)
    scale = (SPARK_HEIGHT - 2) / peak if peak else 0.0
    summary = (
        f"last {len(minutes)} minutes: {sum(m.succeeded for m in minutes)} succeeded, "
        f"{sum(dead)} dead, at most {peak} a minute"
    )
    return Sparkline(
        finished=_points(finished, scale, SPARK_WIDTH, SPARK_HEIGHT),
        dead=_points(dead, scale, SPARK_WIDTH, SPARK_HEIGHT) if any(dead) else "",
        peak=peak,
        summary=summary,
    )


@dataclass(frozen=True, slots=True)
class WaitChart:
    """How long tasks waited from due to start, per minute: the median and the 95th percentile
    as two lines (broken where a minute had no task), on a scale up to the largest wait."""

    p50: list[str]  # SVG polyline points, one polyline per run of minutes with tasks
    p95: list[str]
    peak: str  # the top of the scale, e.g. "1.2 s"
    summary: str
    first: str
    last: str
    width: int = WIDTH
    height: int = HEIGHT


def seconds(value: float) -> str:
    """A wait for people: 850 ms, 1.2 s, 3 min."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.0f} min"


def _runs(values: Sequence[float | None], scale: float, step: float) -> list[str]:
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{round(i * step + step / 2, 1):g},{round(HEIGHT - v * scale, 1):g}")
    # a lone minute is drawn as a short flat line, so it shows
    return [
        " ".join(r) if len(r) > 1 else f"{r[0]} {_nudge(r[0], step)}" for r in runs if r
    ]


def _nudge(point: str, step: float) -> str:
    x, y = point.split(",")
    return f"{round(float(x) + step / 3, 1):g},{y}"


def wait_chart(minutes: Sequence[WaitMinute]) -> WaitChart:
    top = max((m.p95_s or 0.0 for m in minutes), default=0.0)
    scale = (HEIGHT - _TOP) / top if top else 0.0
    step = WIDTH / max(len(minutes), 1)
    sampled = [m for m in minutes if m.sampled]
    if sampled:
        worst = max(sampled, key=lambda m: m.p95_s or 0.0)
        summary = (
            f"Over the last {len(minutes)} minutes, succeeded tasks waited from due to start a "
            f"median of {seconds(sampled[-1].p50_s or 0.0)} in the latest minute with tasks "
            f"({sampled[-1].minute:%H:%M} UTC); the longest 95th percentile was "
            f"{seconds(worst.p95_s or 0.0)} at {worst.minute:%H:%M} UTC."
        )
    else:
        summary = f"No task succeeded in the last {len(minutes)} minutes."
    return WaitChart(
        p50=_runs([m.p50_s for m in minutes], scale, step),
        p95=_runs([m.p95_s for m in minutes], scale, step),
        peak=seconds(top),
        summary=summary,
        first=f"{minutes[0].minute:%H:%M}" if minutes else "",
        last=f"{minutes[-1].minute:%H:%M}" if minutes else "",
    )
