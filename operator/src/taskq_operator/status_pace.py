"""How often each TaskQueue's status is read from one database: never more often than the
operator's connections to it can serve (docs/design.md, "Status readings at scale").

Every TaskQueue's daemon reads its queue's counts once per status interval (2 s by default).
A reading costs the database a few milliseconds at the default count cap, and seconds when
counting a deep backlog without a cap (TASKQ_OPERATOR_COUNT_CAP set high): readings offered
faster than the operator's connections to the database serve them queue up, and every
status falls behind. So the interval stretches to the queues read, times a reading's time on
its connection, over the connections, with some headroom; a database with few queues, or
cheap readings, keeps the configured interval.
"""

from __future__ import annotations

# Readings offered at most 1/HEADROOM of what the connections serve: queueing grows fast
# near saturation.
HEADROOM = 1.25
# Weight of the newest reading in the running average of a reading's time.
SMOOTHING = 0.05
# A queue not read for this long (or three intervals, if longer) no longer counts: its
# TaskQueue is gone or reads another database.
FORGET_AFTER = 60.0  # seconds


class ReadingPace:
    """The readings of one database: how long one takes on a connection, and which queues
    are read. Pure bookkeeping, told the time by the caller."""

    def __init__(self, connections: int) -> None:
        if connections < 1:
            raise ValueError(f"connections must be at least 1, not {connections}")
        self._connections = connections
        self._reading_s: float | None = None
        self._read_at: dict[int, float] = {}
        self._interval = 0.0
        self._paced = False

    def observe(self, queue_id: int, seconds: float, now: float) -> None:
        """A reading of `queue_id` took `seconds` once it had a connection. Its wait for one
        is left out: counted in, the readings queued at a start (every daemon's first pass
        at once) stretched the interval tenfold and it stayed there (tried: ages of 27 s)."""
        if self._reading_s is None:
            self._reading_s = seconds
        else:
            self._reading_s += SMOOTHING * (seconds - self._reading_s)
        self._read_at[queue_id] = now

    @property
    def paced(self) -> bool:
        """Whether the last interval given was longer than the configured one."""
        return self._paced

    @property
    def queues(self) -> int:
        return len(self._read_at)

    @property
    def reading_s(self) -> float | None:
        return self._reading_s

    def interval(self, configured: float, now: float) -> float:
        """Seconds between two readings of each queue: `configured`, or longer when the
        queues read would otherwise offer more readings than the connections serve."""
        horizon = max(FORGET_AFTER, 3 * self._interval)
        for queue_id in [q for q, at in self._read_at.items() if now - at > horizon]:
            del self._read_at[queue_id]
        needed = 0.0
        if self._reading_s is not None:
            needed = HEADROOM * len(self._read_at) * self._reading_s / self._connections
        self._interval = max(configured, needed)
        self._paced = needed > configured
        return self._interval
