"""The API server's memory of authenticated keys: a hit skips the store, until its time is up
or the key expires; an unknown or refused key is never remembered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from taskq.auth import ApiKey, Role, digest
from taskq_api.service import CachedKeyStore
from tests.unit.api.fakes import api_key

SECRET = "tq_abcd1234_" + "s" * 43  # a well-formed key with the prefix of fakes.api_key
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class Store:
    """The key store as the database would answer, counting its reads."""

    def __init__(self, key: ApiKey | None) -> None:
        self.key = key
        self.reads = 0

    async def authenticate(self, secret: str) -> ApiKey | None:
        return await self.authenticate_digest(secret[3:11], digest(secret))

    async def authenticate_digest(self, prefix: str, key_digest: bytes) -> ApiKey | None:
        self.reads += 1
        return self.key if (prefix, key_digest) == ("abcd1234", digest(SECRET)) else None


def key(**changes: object) -> ApiKey:
    return replace(api_key(Role.OPERATOR), **changes)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_a_key_is_read_once_per_period() -> None:
    store, clock = Store(key()), Clock()
    cache = CachedKeyStore(store, 1.0, clock=clock, now=lambda: T0)
    assert await cache.authenticate(SECRET) == key()
    clock.t = 0.9
    assert await cache.authenticate(SECRET) == key()
    assert store.reads == 1
    clock.t = 1.0  # time is up: the store says what holds now, e.g. that it was revoked
    store.key = None
    assert await cache.authenticate(SECRET) is None
    assert await cache.authenticate(SECRET) is None
    assert store.reads == 3  # a refused key is not remembered


async def test_a_remembered_key_still_expires_on_time() -> None:
    store = Store(key(expires_at=T0 + timedelta(seconds=30)))
    now = T0
    cache = CachedKeyStore(store, 60.0, clock=Clock(), now=lambda: now)
    assert await cache.authenticate(SECRET) is not None
    now = T0 + timedelta(seconds=30)
    store.key = None
    assert await cache.authenticate(SECRET) is None


async def test_other_secrets_are_not_served_from_the_cache() -> None:
    store = Store(key())
    cache = CachedKeyStore(store, 60.0, clock=Clock(), now=lambda: T0)
    assert await cache.authenticate(SECRET) is not None
    assert await cache.authenticate(SECRET[:-1] + "t") is None
    assert store.reads == 2
