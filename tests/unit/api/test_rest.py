"""The REST layer's pure parts: the error table, field pointers, request models, durations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from taskq.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    PayloadTooLargeError,
    SchemaMissingError,
    TaskqError,
    UnknownQueueError,
    UnknownScheduleError,
    UnknownTaskError,
)
from taskq.schedules import ScheduleSpec
from taskq_api.rest.models import ScheduleSubmission, TaskSubmission
from taskq_api.rest.problems import _field_problem, _pointer, error_response, kind_of
from taskq_api.rest.routes import _seconds
from taskq_api.service import (
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RateLimitedError,
)

_NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("error", "status"), [
    (NotAuthenticatedError("x", key_presented=False), 401),
    (PermissionDeniedError("x"), 403),
    (UnknownQueueError("a/b"), 404),
    (UnknownTaskError(1), 404),
    (UnknownScheduleError("a/b"), 404),
    (ConflictError("x"), 409),
    (PayloadTooLargeError("x"), 413),
    (RateLimitedError("x", key_prefix="abcd1234", retry_after=0.5), 429),
    (InvalidArgumentError("f", "x"), 422),
    (DatabaseUnavailableError("x"), 503),
    (SchemaMissingError(), 503),
    (TaskqError("x"), 500),
    (RuntimeError("x"), 500),
])
def test_each_error_has_its_status(error: Exception, status: int) -> None:
    assert kind_of(error).status == status


@pytest.mark.parametrize(("field", "where"), [
    ("priority", {"pointer": "#/priority"}),
    ("tasks[3].priority", {"pointer": "#/tasks/3/priority"}),
    ("tasks", {"pointer": "#/tasks"}),
    ("ids", {"pointer": "#/ids"}),
    ("cron", {"pointer": "#/cron"}),
    ("time_zone", {"pointer": "#/time_zone"}),
    ("wait", {"parameter": "wait"}),
    ("namespace", {"parameter": "namespace"}),
    ("arguments", {}),
    ("task_priority_range", {}),
])
def test_a_field_is_placed_in_the_body_or_the_parameters(
    field: str, where: dict[str, str]
) -> None:
    problem = _field_problem(field, "fix it")
    assert problem.model_dump(exclude_none=True) == {**where, "detail": "fix it"}


def test_a_field_of_a_request_without_a_body_is_a_parameter() -> None:
    """`queue` is GET /v1/tasks's parameter, and a field of a schedule's PUT body."""
    assert _field_problem("queue", "fix it").pointer == "#/queue"
    assert _field_problem("queue", "fix it", has_body=False).parameter == "queue"


def test_pointers_escape_as_rfc_6901_says() -> None:
    assert _pointer(["payload", "a/b", "c~d", 0]) == "#/payload/a~1b/c~0d/0"
    assert _pointer([]) == "#"


def test_run_at_becomes_a_delay_and_a_past_one_none() -> None:
    later = TaskSubmission(task_name="t", run_at=_NOW + timedelta(minutes=5))
    past = TaskSubmission(task_name="t", run_at=_NOW - timedelta(days=1))
    assert later.to_request(_NOW).delay == timedelta(minutes=5)
    assert past.to_request(_NOW).delay == timedelta(0)
    assert TaskSubmission(task_name="t", delay_seconds=3).to_request(_NOW).delay == 3


@pytest.mark.parametrize(("given", "priority"), [
    (0, 0), (100, 100), ("urgent", 100), ("HIGH", 75), ("normal", 50), ("low", 25)])
def test_priority_by_number_or_level(given: Any, priority: int) -> None:
    request = TaskSubmission(task_name="t", priority=given).to_request(_NOW)
    assert request.priority == priority


@pytest.mark.parametrize("fields", [
    {"priority": True}, {"priority": 1.5}, {"priority": "7"}, {"max_attempts": "2"},
    {"timeout_seconds": float("inf")}, {"delay_seconds": float("nan")}, {"unknown": 1},
])
def test_requests_are_strict(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskSubmission.model_validate({"task_name": "t", **fields})


def test_a_schedules_body_is_taskqs_spec_with_its_defaults() -> None:
    """The body documents ScheduleSpec's defaults; what it sends leaves the others to it."""
    fields = {"queue": "q", "task_name": "t", "cron": "@daily"}
    body = ScheduleSubmission.model_validate(fields)
    assert set(ScheduleSubmission.model_fields) == set(ScheduleSpec.model_fields)
    assert body.fields() == fields
    assert ScheduleSpec.model_validate(body.model_dump()) == ScheduleSpec.model_validate(fields)


def test_a_schedules_body_has_taskqs_bounds() -> None:
    """The body repeats ScheduleSpec's bounds for the OpenAPI document (docs/bounds.md states
    them once for both): only the descriptions may differ."""
    def bounds(schema: dict[str, Any]) -> dict[str, Any]:
        return {name: {k: v for k, v in field.items() if k != "description"}
                for name, field in schema["properties"].items()}

    assert bounds(ScheduleSubmission.model_json_schema()) == bounds(
        ScheduleSpec.model_json_schema())


@pytest.mark.parametrize("fields", [
    {"priority": "7"}, {"priority": True}, {"suspend": 1}, {"max_missed_runs": 1.0},
    {"starting_deadline_seconds": "60"}, {"cron": 5}, {"concurrency_policy": "allow"},
    {"croon": "@daily"},
])
def test_a_schedules_body_is_strict(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ScheduleSubmission.model_validate(
            {"queue": "q", "task_name": "t", "cron": "@daily", **fields})


@pytest.mark.parametrize(("text", "seconds"), [
    (None, 0.0), ("30s", 30.0), ("500ms", 0.5), ("1m", 60.0), ("2.5", 2.5), ("0", 0.0)])
def test_waits_read_as_durations(text: str | None, seconds: float) -> None:
    assert _seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", "1h", "1e3", "1" * 30])
def test_other_waits_name_the_parameter(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        _seconds(text)
    assert raised.value.field == "wait"


def test_an_unexpected_error_answers_500_without_its_message() -> None:
    scope = {"type": "http", "path": "/v1/queues", "taskq.correlation_id": "c-1"}
    response = error_response(scope, RuntimeError("password=hunter2 at line 3"))
    body = json.loads(bytes(response.body))
    assert response.status_code == 500
    assert response.media_type == "application/problem+json"
    assert "hunter2" not in bytes(response.body).decode()
    assert body["correlation_id"] == "c-1"
    assert body["type"] == "/problems/internal-error"


def test_a_database_outage_answers_503_with_retry_after_and_no_cause() -> None:
    scope = {"type": "http", "path": "/readyz"}
    response = error_response(scope, DatabaseUnavailableError("cannot reach db.internal:5432"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "db.internal" not in bytes(response.body).decode()


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (7.5, "8")])
def test_a_key_over_its_rate_answers_429_with_whole_seconds_to_wait(
    wait: float, header: str
) -> None:
    scope = {"type": "http", "path": "/v1/queues"}
    error = RateLimitedError("slow down", key_prefix="abcd1234", retry_after=wait)
    response = error_response(scope, error)
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    assert json.loads(bytes(response.body))["type"] == "/problems/rate-limited"
