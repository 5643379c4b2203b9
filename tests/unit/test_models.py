"""Model validation: priorities, queue settings and backoff policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from taskq.errors import InvalidArgumentError
from taskq.models import BackoffPolicy, Priority, QueueSettings, QueueStats, resolve_priority


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (0, 0),
        (100, 100),
        (42, 42),
        ("urgent", 100),
        ("HIGH", 75),
        ("Normal", 50),
        ("low", 25),
        (Priority.HIGH, 75),
    ],
)
def test_resolve_priority(value: int | str | None, expected: int | None) -> None:
    assert resolve_priority(value) == expected


@pytest.mark.parametrize("value", [-1, 101, True, False, 1.5, "highest", ""])
def test_resolve_priority_rejects_with_the_field_name(value: Any) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        resolve_priority(value, "tasks[3].priority")
    assert raised.value.field == "tasks[3].priority"


def test_default_queue_settings_are_valid() -> None:
    settings = QueueSettings()
    assert settings.max_attempts == 3
    assert settings.backoff == BackoffPolicy()
    assert settings.rate_limit_per_second is None
    assert not settings.paused


def test_backoff_max_below_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_seconds must be at least base_seconds"):
        BackoffPolicy(base_seconds=10, max_seconds=5)
    assert BackoffPolicy(base_seconds=5, max_seconds=5).max_seconds == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "quadratic"},
        {"base_seconds": -1},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"unknown": 1},
    ],
)
def test_backoff_policy_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BackoffPolicy(**kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("default_priority", 101),
        ("default_priority", -1),
        ("max_attempts", 0),
        ("max_attempts", 1001),
        ("timeout_seconds", 0),
        ("payload_limit_bytes", 0),
        ("payload_limit_bytes", 64 * 1024 * 1024 + 1),
        ("retention_succeeded_seconds", -1),
        ("retention_dead_seconds", -1),
        ("rate_limit_per_second", 0),
        ("rate_burst", 0.5),
        ("concurrency_limit", 0),
        ("not_a_setting", 1),
    ],
)
def test_queue_settings_reject_out_of_range_values_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        QueueSettings(**{field: value})
    assert raised.value.errors()[0]["loc"][0] == field


def test_queue_settings_are_frozen() -> None:
    settings = QueueSettings()
    with pytest.raises(ValidationError):
        settings.max_attempts = 5  # type: ignore[misc]


def test_oldest_ready_age() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base: dict[str, Any] = dict(ready=1, scheduled=0, running=0, dead=0,
                                succeeded_last_minute=0, dead_last_minute=0, observed_at=now)
    assert QueueStats(**base, oldest_ready_at=None).oldest_ready_age_seconds == 0.0
    aged = QueueStats(**base, oldest_ready_at=now - timedelta(seconds=12))
    assert aged.oldest_ready_age_seconds == 12.0
    # a clock step never gives a negative age
    future = QueueStats(**base, oldest_ready_at=now + timedelta(seconds=1))
    assert future.oldest_ready_age_seconds == 0.0
