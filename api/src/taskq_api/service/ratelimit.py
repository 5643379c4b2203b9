"""A request rate per API key: a token bucket per key prefix, in this process's memory.

Protocol-free, so that every front end (REST, gRPC) refuses a key over its rate the same way:
the service takes a token when it authenticates a request. Buckets are made only for keys that
authenticated, never for a prefix a request merely names (prefixes are public: anyone could
otherwise drain a key's bucket), so there are at most as many as the database holds keys.

The rate is per process: N API servers let a key through at N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # the clock's reading when `tokens` was counted


class RateLimiter:
    """`per_second` tokens a second per key, up to `burst` saved up (a key unseen so far has
    all of them). `clock` reads seconds that never go back (time.monotonic by default)."""

    def __init__(
        self,
        per_second: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second is {per_second}: it must be above 0")
        if burst is None:
            burst = max(1, math.ceil(per_second))  # one second's worth
        if burst < 1:
            raise ValueError(f"burst is {burst}: it must be at least 1")
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # the front ends may call from more than one thread (a gRPC server's pool)
        self._lock = threading.Lock()

    def take(self, prefix: str) -> float:
        """Spend one of the key's tokens: 0.0 when the request may go on, else the seconds
        until a token is there again (nothing is spent: a refused request costs no token)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(prefix)
            if bucket is None:
                bucket = self._buckets[prefix] = _Bucket(float(self.burst), now)
            else:
                refill = max(0.0, now - bucket.at) * self.per_second
                bucket.tokens = min(float(self.burst), bucket.tokens + refill)
                bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.per_second
