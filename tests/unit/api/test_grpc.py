"""The gRPC layer's pure parts, held to the rest of the API so that they cannot drift: each
taskq.v1 message has its model's fields, each enum its Literal's values, a submission REST's
fields, the status table REST's errors; and the conversions themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import grpc
import pytest
from google.protobuf.message import Message
from pydantic import BaseModel

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
from taskq.models import (
    AttemptInfo,
    BackoffKind,
    BackoffPolicy,
    QueueInfo,
    QueueSettings,
    QueueStats,
    TaskState,
)
from taskq.schedules import ConcurrencyPolicy, ScheduleSpec
from taskq_api.grpc import messages
from taskq_api.grpc.status import STATUS_CODES, status_of
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.rest.models import TaskSubmission
from taskq_api.rest.problems import PROBLEMS
from taskq_api.service import (
    ConflictError,
    NotAuthenticatedError,
    PermissionDeniedError,
    QueueDetails,
    ScheduleView,
    TaskDetails,
)

_NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _fields(message: type[Message]) -> set[str]:
    return {field.name.removesuffix("_json") for field in message.DESCRIPTOR.fields}


@pytest.mark.parametrize(("message", "model"), [
    (pb.Task, TaskDetails),
    (pb.Attempt, AttemptInfo),
    (pb.Queue, QueueInfo),
    (pb.QueueDetails, QueueDetails),
    (pb.QueueSettings, QueueSettings),
    (pb.BackoffPolicy, BackoffPolicy),
    (pb.QueueStats, QueueStats),
    (pb.Schedule, ScheduleView),
    (pb.ScheduleSpec, ScheduleSpec),
])
def test_each_answer_message_has_its_models_fields(
    message: type[Message], model: type[BaseModel]
) -> None:
    assert _fields(message) == set(model.model_fields) | set(model.model_computed_fields)


@pytest.mark.parametrize(("enum", "literal"), [
    (pb.TaskState, TaskState),
    (pb.AttemptOutcome, AttemptInfo.model_fields["outcome"].annotation),
    (pb.BackoffKind, BackoffKind),
])
def test_each_enum_has_its_literals_values(enum: Any, literal: Any) -> None:
    values = {messages.enum_value(enum.DESCRIPTOR, number, "f") for number in enum.values()}
    assert values == {None, *get_args(literal)}


def test_the_concurrency_policy_enum_has_taskqs_policies() -> None:
    numbers = pb.ConcurrencyPolicy.values()
    values = {messages.enum_value(pb.ConcurrencyPolicy.DESCRIPTOR, n, "f") for n in numbers}
    assert values == {None, *(policy.value.lower() for policy in ConcurrencyPolicy)}


def test_a_submission_has_the_fields_of_rests_json() -> None:
    """Priority is one field of REST's JSON (a number or a level); two in taskq.v1."""
    proto = _fields(pb.TaskSubmission) - {"priority_number", "priority_level"}
    assert proto | {"priority"} == set(TaskSubmission.model_fields)


def test_a_task_says_what_the_models_say() -> None:
    details = TaskDetails(
        id=7, queue="shop/emails", task_name="t", state="retrying", priority=75,
        payload={"order": 42, "big": 2**70}, run_at=_NOW, idempotency_key=None,
        correlation_id="c", attempts=1, total_attempts=1, max_attempts=3, worker_id=None,
        attempt_id=None, lease_expires_at=None, cancel_requested=False, result=None,
        error={"message": "boom"}, progress=[1, 2], created_at=_NOW, started_at=None,
        finished_at=None, payload_hidden=False,
        attempt_history=[AttemptInfo(
            attempt=1, attempt_id="a", worker_id="w", started_at=_NOW, finished_at=_NOW,
            outcome="timed_out", error=None)],
    )

    task = messages.task(details)

    assert (task.id, task.queue, task.state, task.priority) == (
        7, "shop/emails", pb.TASK_STATE_RETRYING, 75)
    assert json.loads(task.payload_json) == {"order": 42, "big": 2**70}
    assert (task.result_json, task.error_json, task.progress_json) == (
        "null", '{"message":"boom"}', "[1,2]")
    assert task.run_at.ToDatetime(tzinfo=UTC) == _NOW
    assert not task.HasField("idempotency_key") and task.correlation_id == "c"
    assert not task.HasField("lease_expires_at") and not task.HasField("worker_id")
    [attempt] = task.attempt_history
    assert (attempt.outcome, attempt.error_json) == (pb.ATTEMPT_OUTCOME_TIMED_OUT, "null")


def test_a_submission_becomes_a_task_request() -> None:
    submission = pb.TaskSubmission(
        task_name="t", payload_json='{"n": 1.50}', priority_level="high", max_attempts=2,
        idempotency_key="k", timeout_seconds=3.5)
    submission.run_at.FromDatetime(datetime(2001, 1, 1, tzinfo=UTC))

    request = messages.submission(submission, _NOW, "task")
    bare = messages.submission(pb.TaskSubmission(task_name="t"), _NOW, "task")

    assert (request.payload, request.priority, request.max_attempts) == ({"n": 1.5}, "high", 2)
    assert (request.idempotency_key, request.timeout, request.correlation_id) == ("k", 3.5, None)
    assert request.delay is not None and not request.delay  # a past start: now
    assert (bare.payload, bare.priority, bare.delay, bare.max_attempts) == (
        None, None, None, None)


@pytest.mark.parametrize(("field", "sent", "single", "named"), [
    ("priority", {"priority_number": 101}, True, "task.priority_number"),
    ("priority", {"priority_level": "x"}, True, "task.priority_level"),
    ("payload", {}, True, "task.payload_json"),
    ("delay_seconds", {}, True, "task.delay_seconds"),
    ("tasks[0].priority", {"priority_level": "x"}, False, "tasks[0].priority_level"),
    ("tasks[0].payload", {}, False, "tasks[0].payload_json"),
    ("tasks[0].correlation_id", {}, False, "tasks[0].correlation_id"),
    ("tasks", {}, False, "tasks"),
    ("namespace", {}, True, "namespace"),
    ("name", {}, True, "name"),
])
def test_the_services_fields_are_named_as_taskq_v1_names_them(
    field: str, sent: dict[str, Any], single: bool, named: str
) -> None:
    error = InvalidArgumentError(field, "fix it")
    renamed = messages.submission_error(
        error, [pb.TaskSubmission(task_name="t", **sent)], single=single)
    assert (renamed.field, str(renamed)) == (named, f"invalid {named}: fix it")


def test_a_schedule_says_what_the_view_says() -> None:
    spec = ScheduleSpec(queue="q", task_name="t", payload={"big": 2**70}, priority=0,
                        cron="@daily", concurrency_policy=ConcurrencyPolicy.REPLACE)
    view = ScheduleView(
        schedule="shop/nightly", namespace="shop", name="nightly", spec=spec,
        next_run_at=_NOW, last_schedule_time=None, last_task_id=None, last_skipped_time=_NOW,
        last_skipped_reason="Missed", last_error=None, created_at=_NOW)

    message = messages.schedule(view)

    assert (message.schedule, message.spec.queue, message.spec.cron) == (
        "shop/nightly", "q", "@daily")
    assert json.loads(message.spec.payload_json) == {"big": 2**70}
    assert message.spec.HasField("priority") and message.spec.priority == 0
    assert message.spec.concurrency_policy == pb.CONCURRENCY_POLICY_REPLACE
    assert not message.spec.HasField("starting_deadline_seconds")
    assert (message.spec.time_zone, message.spec.max_missed_runs) == ("UTC", 1)
    assert message.last_skipped_reason == "Missed"
    assert not message.HasField("last_schedule_time") and not message.HasField("last_task_id")
    assert message.next_run_at.ToDatetime(tzinfo=UTC) == _NOW


def test_a_specs_fields_left_out_are_not_sent() -> None:
    bare = messages.schedule_fields(pb.ScheduleSpec(queue="q", task_name="t", cron="@daily"))
    full = messages.schedule_fields(pb.ScheduleSpec(
        queue="q", task_name="t", cron="@daily", payload_json="null", priority=0,
        time_zone="Asia/Tokyo", suspend=True, concurrency_policy=pb.CONCURRENCY_POLICY_FORBID,
        starting_deadline_seconds=5, max_missed_runs=0))

    assert bare == {"queue": "q", "task_name": "t", "cron": "@daily", "suspend": False}
    assert ScheduleSpec.model_validate(bare) == ScheduleSpec(
        queue="q", task_name="t", cron="@daily")
    assert full == {**bare, "payload": None, "priority": 0, "time_zone": "Asia/Tokyo",
                    "suspend": True, "concurrency_policy": ConcurrencyPolicy.FORBID,
                    "starting_deadline_seconds": 5, "max_missed_runs": 0}


@pytest.mark.parametrize(("field", "named"), [
    ("cron", "spec.cron"), ("payload", "spec.payload_json"), ("namespace", "namespace"),
    ("name", "name")])
def test_a_specs_fields_are_named_as_taskq_v1_names_them(field: str, named: str) -> None:
    renamed = messages.schedule_error(InvalidArgumentError(field, "fix it"))
    assert (renamed.field, str(renamed)) == (named, f"invalid {named}: fix it")


def test_both_protocols_map_the_same_errors_in_the_same_order() -> None:
    assert [cls for cls, _code in STATUS_CODES] == [cls for cls, _kind in PROBLEMS]


@pytest.mark.parametrize(("error", "code"), [
    (NotAuthenticatedError("x", key_presented=False), grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError("x"), grpc.StatusCode.PERMISSION_DENIED),
    (UnknownQueueError("a/b"), grpc.StatusCode.NOT_FOUND),
    (UnknownTaskError(1), grpc.StatusCode.NOT_FOUND),
    (UnknownScheduleError("a/b"), grpc.StatusCode.NOT_FOUND),
    (ConflictError("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (PayloadTooLargeError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidArgumentError("f", "x"), grpc.StatusCode.INVALID_ARGUMENT),
    (DatabaseUnavailableError("db.internal:5432 refused"), grpc.StatusCode.UNAVAILABLE),
    (SchemaMissingError(), grpc.StatusCode.UNAVAILABLE),
    (TaskqError("x"), grpc.StatusCode.INTERNAL),
    (RuntimeError("password=hunter2"), grpc.StatusCode.INTERNAL),
])
def test_each_error_has_its_code_and_no_cause_of_a_failure(
    error: Exception, code: grpc.StatusCode
) -> None:
    got, details = status_of(error, "c-1")
    assert got == code
    assert "hunter2" not in details
    assert "db.internal" not in details
