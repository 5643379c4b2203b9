"""The per-key token bucket (taskq_api.service.ratelimit) on a clock the test moves, and the
service refusing a key over its rate before any operation runs."""

from __future__ import annotations

from typing import cast

import asyncpg
import pytest

from taskq.auth import Role
from taskq.client import Client
from taskq_api.service import ApiService, NotAuthenticatedError, RateLimitedError, RateLimiter
from tests.unit.api.fakes import MemoryKeyStore, api_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_key_has_its_whole_burst_then_waits_for_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # the next token, at 2 a second
    clock.now += 0.25
    assert limiter.take("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.take("k") == 0.0
    assert limiter.take("k") == pytest.approx(0.5)


def test_a_refused_request_spends_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.take("k") == 0.0
    for _ in range(100):
        assert limiter.take("k") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.take("k") == 0.0


def test_a_quiet_key_saves_up_to_its_burst_and_no_more() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock)
    for _ in range(5):
        limiter.take("k")
    clock.now += 3600.0
    assert [limiter.take("k") for _ in range(5)] == [0.0] * 5
    assert limiter.take("k") > 0


def test_each_key_has_its_own_bucket() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_a_clock_that_goes_back_adds_no_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.take("k")
    clock.now -= 50.0
    assert limiter.take("k") == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1.0, 1), (2.5, 3), (100.0, 100)])
def test_the_burst_defaults_to_one_seconds_worth(rate: float, burst: int) -> None:
    assert RateLimiter(rate).burst == burst


@pytest.mark.parametrize(("rate", "burst", "named"), [
    (0.0, 1, "per_second"), (-1.0, 1, "per_second"), (1.0, 0, "burst"),
])
def test_a_limit_that_would_refuse_everything_is_an_error(
    rate: float, burst: int, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        RateLimiter(rate, burst)


async def test_the_service_refuses_a_key_over_its_rate_with_the_wait() -> None:
    clock = Clock()
    key = api_key(Role.OPERATOR)
    store = MemoryKeyStore({"secret": key})
    service = ApiService(
        Client(cast(asyncpg.Pool, None)), store, limiter=RateLimiter(1.0, 2, clock=clock)
    )
    assert await service.authenticate("secret") is key
    assert await service.authenticate("secret") is key
    with pytest.raises(RateLimitedError) as raised:
        await service.authenticate("secret")
    assert raised.value.retry_after == pytest.approx(1.0)
    assert raised.value.key_prefix == key.prefix
    assert key.prefix in str(raised.value) and "retry in 1.00 s" in str(raised.value)
    clock.now += 1.0
    assert await service.authenticate("secret") is key


async def test_requests_without_a_usable_key_spend_no_keys_tokens() -> None:
    clock = Clock()
    key = api_key(Role.VIEWER)
    service = ApiService(
        Client(cast(asyncpg.Pool, None)),
        MemoryKeyStore({"secret": key}),
        limiter=RateLimiter(1.0, 1, clock=clock),
    )
    for guess in (None, "", f"tq_{key.prefix}_wrong"):  # the prefix is public
        with pytest.raises(NotAuthenticatedError):
            await service.authenticate(guess)
    assert await service.authenticate("secret") is key
