"""Model validation: priorities, queue settings and backoff policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from taskq.errors import InvalidArgumentError
from taskq.models import (
    BackoffPolicy,
    Priority,
    QueueSettings,
    QueueStats,
    resolve_priority,
    setting_fields,
)
from tests.queue_settings import other_settings


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
                                succeeded_last_minute=0, dead_last_minute=0, observed_at=now,
                                count_cap=100)
    assert QueueStats(**base, oldest_ready_at=None).oldest_ready_age_seconds == 0.0
    aged = QueueStats(**base, oldest_ready_at=now - timedelta(seconds=12))
    assert aged.oldest_ready_age_seconds == 12.0
    # a clock step never gives a negative age
    future = QueueStats(**base, oldest_ready_at=now + timedelta(seconds=1))
    assert future.oldest_ready_age_seconds == 0.0


def test_setting_fields_are_every_leaf_of_queue_settings_once() -> None:
    fields = setting_fields()
    assert [f.path for f in fields][:3] == ["default_priority", "max_attempts", "backoff.kind"]
    assert len({f.column for f in fields}) == len(fields)
    assert len({f.flag for f in fields}) == len(fields)
    assert all(f.info.description for f in fields)
    leaves = {
        f"{name}.{sub}" if isinstance(value, dict) else name
        for name, value in QueueSettings().model_dump().items()
        for sub in (value if isinstance(value, dict) else [None])
    }
    assert {f.path for f in fields} == leaves


@pytest.mark.parametrize("settings", [QueueSettings(), other_settings()], ids=["default", "other"])
def test_queue_settings_round_trip_through_columns(settings: QueueSettings) -> None:
    columns = settings.to_columns()
    assert columns["timeout_s"] == settings.timeout_seconds
    assert columns["backoff_kind"] == settings.backoff.kind
    assert QueueSettings.from_columns(columns) == settings


def test_from_paths_keeps_defaults_and_names_the_field_of_an_error() -> None:
    assert QueueSettings.from_paths({"backoff.jitter": 0.5}) == QueueSettings(
        backoff=BackoffPolicy(jitter=0.5)
    )
    with pytest.raises(ValidationError) as raised:
        QueueSettings.from_paths({"backoff.jitter": 2})
    assert raised.value.errors()[0]["loc"] == ("backoff", "jitter")
