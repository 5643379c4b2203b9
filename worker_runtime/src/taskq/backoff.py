"""Retrying a failed call: jittered exponential backoff, and one log line per outage.

A worker retries its database calls for as long as it lives; what varies is how soon. The
first retry comes within 25 ms (a killed backend is replaced by a fresh connection at once),
later ones back off to a couple of seconds so an unreachable database is not hammered.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

FIRST_DELAY = 0.025  # seconds: the longest the first retry may wait
MAX_DELAY = 2.0


class Backoff:
    """Delays of successive retries: doubling from `first` up to `cap`, each drawn from the
    upper half of its step ("equal jitter") so that many workers retrying at once spread out
    but none waits much less than the step."""

    def __init__(
        self,
        first: float = FIRST_DELAY,
        cap: float = MAX_DELAY,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.cap = cap
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        step = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        return step / 2 + self._rng() * step / 2

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """The failures of one kind of call in a row. The first failure of an outage is logged
    (with its traceback when `expected` says the error is not a known database or connection
    error), the retries are not, and the recovery is logged once with the count and length.
    """

    def __init__(
        self,
        operation: str,
        log: logging.Logger,
        expected: Callable[[BaseException], bool],
        describe: Callable[[BaseException], str],
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.operation = operation
        self._log = log
        self._expected = expected
        self._describe = describe
        self.backoff = backoff or Backoff()
        self._clock = clock
        self.started_at: float | None = None  # None: no outage
        self.failures = 0

    @property
    def ongoing(self) -> bool:
        return self.started_at is not None

    def failed(self, error: BaseException) -> float:
        """Note a failure; returns how long to wait before the next try."""
        if self.started_at is None:
            self.started_at = self._clock()
            if self._expected(error):
                self._log.warning(
                    "%s failed: %s; retrying with backoff", self.operation, self._describe(error)
                )
            else:
                self._log.error(
                    "%s failed with an unexpected error; retrying with backoff",
                    self.operation,
                    exc_info=error,
                )
        self.failures += 1
        return self.backoff.next_delay()

    def succeeded(self) -> None:
        if self.started_at is not None:
            self._log.info(
                "%s works again after %d failed tries over %.2fs",
                self.operation,
                self.failures,
                self._clock() - self.started_at,
            )
            self.started_at = None
            self.failures = 0
        self.backoff.reset()
