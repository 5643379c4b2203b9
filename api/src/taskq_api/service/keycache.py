"""Authenticated keys remembered for a moment, so that most requests skip the database read of
their key (with the read-back of an enqueued task, it made three round trips of one).

A key revoked or narrowed is honoured as it was for at most `ttl` seconds
(TASKQ_API_KEY_CACHE_SECONDS); its expiry is checked on every use. Entries are found by the
SHA-256 of the secret, as the database finds them by its digest: the secret itself is not kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from taskq.auth import ApiKey, KeyStore, digest, parse_prefix

MAX_KEYS = 10_000  # beyond this many keys at once the cache starts afresh


class CachedKeyStore:
    def __init__(
        self,
        store: KeyStore,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._now = now
        self._keys: dict[bytes, tuple[ApiKey, float]] = {}  # digest -> key, until (clock)

    async def authenticate(self, secret: str) -> ApiKey | None:
        prefix = parse_prefix(secret)
        if prefix is None:
            return None
        return await self.authenticate_digest(prefix, digest(secret))

    async def authenticate_digest(self, prefix: str, found: bytes) -> ApiKey | None:
        hit = self._keys.get(found)
        if (
            hit is not None
            and hit[0].prefix == prefix
            and self._clock() < hit[1]
            and hit[0].usable_at(self._now())
        ):
            return hit[0]
        key = await self._store.authenticate_digest(prefix, found)
        if key is None:
            self._keys.pop(found, None)
            return None
        if len(self._keys) >= MAX_KEYS:
            self._keys.clear()
        self._keys[found] = (key, self._clock() + self._ttl)
        return key
