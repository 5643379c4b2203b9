"""A queue's throughput over the last hour, as the dashboard draws it for one queue or for every
queue of the overview: finished minutes are remembered, so each read counts only the minutes
still open (the current one and the one before, whose late commits may still land) instead of
the whole hour. A minute never changes once over, but for retention purging its tasks, which
the chart does not follow: it shows what finished, not what is still stored."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Final

from taskq.client import WAIT_SAMPLE, Client
from taskq.models import QueueInfo, ThroughputMinute

MINUTE: Final = timedelta(minutes=1)
# Minutes of a chart before the current one.
CHART_MINUTES: Final = 60
# Queues whose finished minutes are remembered, the least recently drawn let go first
# (61 minutes each: about 15 KB a queue).
KEPT_QUEUES: Final = 2_000

__all__ = ["CHART_MINUTES", "WAIT_SAMPLE", "ThroughputCache"]


class ThroughputCache:
    def __init__(self, client: Client, kept_queues: int = KEPT_QUEUES) -> None:
        self._client = client
        self._kept = kept_queues
        self._closed: OrderedDict[int, dict[datetime, ThroughputMinute]] = OrderedDict()

    async def last_hour(self, queue: QueueInfo) -> list[ThroughputMinute]:
        """The last CHART_MINUTES whole minutes and the current one, oldest first."""
        closed = self._closed.pop(queue.id, {})
        newest = max(closed, default=None)
        if newest is not None and newest > datetime.now(UTC) - CHART_MINUTES * MINUTE:
            fresh = await self._client.queue_throughput(queue, since=newest + MINUTE)
        else:
            fresh = []
        if not fresh:  # nothing remembered, or too old to be of use
            closed = {}
            fresh = await self._client.queue_throughput(queue, CHART_MINUTES)
        current = fresh[-1].minute
        first = current - CHART_MINUTES * MINUTE
        known = closed | {m.minute: m for m in fresh}
        series = [
            known.get(minute) or ThroughputMinute(minute=minute, succeeded=0, dead=0)
            for minute in (first + i * MINUTE for i in range(CHART_MINUTES + 1))
        ]
        self._closed[queue.id] = {m.minute: m for m in series if m.minute < current - MINUTE}
        while len(self._closed) > self._kept:
            self._closed.popitem(last=False)
        return series
