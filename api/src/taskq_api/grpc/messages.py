"""taskq.v1 messages to the service's values and back.

Answers are filled from the service's models by field name, so that a message says exactly
what REST's JSON says: a JSON value (payload, result, error, progress) goes to the field of its
name plus `_json`, as JSON text; a time to a Timestamp; a state, outcome or backoff kind to the
enum value of that name (`ready` -> TASK_STATE_READY); a nested model to its message; None
leaves the field unset. A model field that the message lacks fails here, and
tests/unit/api/test_grpc.py holds each message to its model's fields.

Requests are read field by field; errors name the field as the message does, e.g.
`tasks[3].priority_number`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskq import jsonutil
from taskq.errors import InvalidArgumentError
from taskq.models import QueueInfo, ReplayResult, TaskRequest
from taskq.schedules import ConcurrencyPolicy, ScheduleSpec
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.service import QueueDetails, ScheduleView, TaskPage, TaskView, delay_until

if TYPE_CHECKING:  # descriptors of protobuf's C implementation, as the stubs type them
    from google._upb._message import EnumDescriptor as UpbEnumDescriptor

_TIMESTAMP = Timestamp.DESCRIPTOR.full_name
# The service names a submission's fields as REST's JSON does; taskq.v1 names this one
# otherwise (and `priority` is one of two fields, whichever was sent).
_RENAMED = {"payload": "payload_json"}
_SUBMISSION_FIELD = re.compile(r"^(?:tasks\[(\d+)\]\.)?(\w+)$")


# -- answers ----------------------------------------------------------------------------------


def _fill(message: Message, values: Mapping[str, Any]) -> None:
    """Set the message's fields from a model's values (model_dump()), by name."""
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        if f"{name}_json" in fields:
            setattr(message, f"{name}_json", jsonutil.encode(value))
            continue
        field = fields[name]
        if value is None:
            continue
        if field.message_type is not None and field.message_type.full_name == _TIMESTAMP:
            getattr(message, name).FromDatetime(value)
        elif field.message_type is not None and field.is_repeated:
            for item in value:
                _fill(getattr(message, name).add(), item)
        elif field.message_type is not None:
            _fill(getattr(message, name), value)
        elif field.enum_type is not None:
            setattr(message, name, _enum_number(field.enum_type, value))
        elif field.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)


def _enum_number(enum: EnumDescriptor | UpbEnumDescriptor, value: str) -> int:
    """`ready` -> TASK_STATE_READY's number."""
    return enum.values_by_name[_enum_prefix(enum) + value.upper()].number


def enum_value(
    enum: EnumDescriptor | UpbEnumDescriptor, number: int, field: str
) -> str | None:
    """TASK_STATE_READY's number -> `ready`; None for the unspecified value (0)."""
    if number == 0:
        return None
    value = enum.values_by_number.get(number)
    if value is None:
        names = ", ".join(v.name for v in enum.values if v.number)
        raise InvalidArgumentError(field, f"{number} is not a {enum.name}: use one of {names}")
    return value.name.removeprefix(_enum_prefix(enum)).lower()


def _enum_prefix(enum: EnumDescriptor | UpbEnumDescriptor) -> str:
    """TASK_STATE_ for TaskState: the name of its value 0, TASK_STATE_UNSPECIFIED, less
    UNSPECIFIED."""
    return enum.values_by_number[0].name.removesuffix("UNSPECIFIED")


def task(view: TaskView) -> pb.Task:
    message = pb.Task()
    _fill(message, view.model_dump())
    return message


def task_page(page: TaskPage) -> pb.ListTasksResponse:
    return pb.ListTasksResponse(
        items=[task(item) for item in page.items], next_cursor=page.next_cursor or "",
        partial=page.partial,
    )


def queue(info: QueueInfo) -> pb.Queue:
    message = pb.Queue()
    _fill(message, info.model_dump())
    return message


def queue_details(details: QueueDetails) -> pb.QueueDetails:
    message = pb.QueueDetails()
    _fill(message, details.model_dump())
    return message


def replayed(result: ReplayResult) -> pb.ReplayDeadResponse:
    return pb.ReplayDeadResponse(replayed=result.replayed, skipped=result.skipped)


def schedule(view: ScheduleView) -> pb.Schedule:
    message = pb.Schedule()
    _fill(message, view.model_dump())
    return message


# -- requests ---------------------------------------------------------------------------------


def submission(message: pb.TaskSubmission, now: datetime, path: str) -> TaskRequest:
    """The task to enqueue; `path` names the message in errors (`task`, `tasks[3]`)."""
    priority: int | str | None = None
    match message.WhichOneof("priority"):
        case "priority_number":
            priority = message.priority_number
        case "priority_level":
            priority = message.priority_level
    delay: float | timedelta | None = None
    match message.WhichOneof("start"):
        case "delay_seconds":
            delay = message.delay_seconds
        case "run_at":
            delay = delay_until(_timestamp(message.run_at, f"{path}.run_at"), now)
    payload = _json_value(message.payload_json, f"{path}.payload_json")
    return TaskRequest(
        task_name=message.task_name,
        payload=payload,
        priority=priority,
        delay=delay,
        idempotency_key=(
            message.idempotency_key if message.HasField("idempotency_key") else None
        ),
        max_attempts=message.max_attempts if message.HasField("max_attempts") else None,
        timeout=message.timeout_seconds if message.HasField("timeout_seconds") else None,
        correlation_id=message.correlation_id if message.HasField("correlation_id") else None,
        callback_url=message.callback_url if message.HasField("callback_url") else None,
    )


def submission_error(
    error: InvalidArgumentError, submissions: Sequence[pb.TaskSubmission], *, single: bool
) -> InvalidArgumentError:
    """The service's error, naming the field as taskq.v1 does: `priority` of Enqueue is
    `task.priority_number` (or `task.priority_level`, whichever was sent), `tasks[3].payload`
    of EnqueueBatch is `tasks[3].payload_json`. Other fields keep their names."""
    match = _SUBMISSION_FIELD.match(error.field)
    if match is None:
        return error
    index, name = match[1], match[2]
    if name == "priority":
        name = submissions[int(index or 0)].WhichOneof("priority") or "priority_number"
    name = _RENAMED.get(name, name)
    if name not in pb.TaskSubmission.DESCRIPTOR.fields_by_name or (index is None and not single):
        return error  # not a submission's field: `namespace`, `tasks` (how many)
    prefix = "task" if index is None else f"tasks[{index}]"
    problem = str(error).removeprefix(f"invalid {error.field}: ")
    return InvalidArgumentError(f"{prefix}.{name}", problem)


def _json_value(text: str, field: str) -> Any:
    """JSON text as a value; empty text is null. NaN and Infinity are not JSON."""
    if not text:
        return None
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as error:
        raise InvalidArgumentError(
            field, f"not JSON text ({error}): send a JSON value, e.g. {{\"order\": 42}}"
        ) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _timestamp(value: Timestamp, field: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise InvalidArgumentError(
            field, f"not a time ({error}): seconds and nanos of a time from year 1 to 9999"
        ) from None


def optional_timestamp(message: Message, name: str) -> datetime | None:
    """The time in a Timestamp field, None when it is unset."""
    if not message.HasField(name):
        return None
    value: Timestamp = getattr(message, name)
    return _timestamp(value, name)


def schedule_fields(spec: pb.ScheduleSpec) -> dict[str, Any]:
    """The spec's fields by ScheduleSpec's names, for the service: a field left out (empty,
    unset, unspecified) is not sent, so that ScheduleSpec's default holds, as in REST."""
    fields: dict[str, Any] = {
        "queue": spec.queue,
        "task_name": spec.task_name,
        "cron": spec.cron,
        "suspend": spec.suspend,
    }
    if spec.payload_json:
        fields["payload"] = _json_value(spec.payload_json, "spec.payload_json")
    if spec.time_zone:
        fields["time_zone"] = spec.time_zone
    policy = enum_value(
        pb.ConcurrencyPolicy.DESCRIPTOR, spec.concurrency_policy, "spec.concurrency_policy"
    )
    if policy is not None:
        fields["concurrency_policy"] = ConcurrencyPolicy[policy.upper()]
    for name in ("priority", "starting_deadline_seconds", "max_missed_runs"):
        if spec.HasField(name):
            fields[name] = getattr(spec, name)
    return fields


def schedule_error(error: InvalidArgumentError) -> InvalidArgumentError:
    """The service's error, naming a spec's field as taskq.v1 does: `cron` is `spec.cron`,
    `payload` `spec.payload_json`. Other fields (`namespace`, `name`) keep their names."""
    if error.field not in ScheduleSpec.model_fields:
        return error
    name = _RENAMED.get(error.field, error.field)
    problem = str(error).removeprefix(f"invalid {error.field}: ")
    return InvalidArgumentError(f"spec.{name}", problem)
