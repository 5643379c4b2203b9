"""Schedules (recurring tasks, taskq.schedules) as the API shows and takes them, the same
through every protocol: the spec is validated by taskq's own ScheduleSpec, whose messages name
the field (`cron`, `time_zone`...), and a payload is hidden from a key that may not read
payloads, as a task's is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from taskq import jsonutil
from taskq.auth import ApiKey
from taskq.errors import InvalidArgumentError
from taskq.schedules import ScheduleSpec
from taskq.store.schedules import ScheduleInfo


class ScheduleView(BaseModel):
    """A schedule and what its scheduler last did. `spec.payload` is null, and
    `payload_hidden` true, when the key may not read payloads (a viewer key without
    reads_payloads)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    schedule: str
    """NAMESPACE/NAME"""
    namespace: str
    name: str
    spec: ScheduleSpec
    payload_hidden: bool = False
    next_run_at: datetime | None
    """The next tick; null while suspended (resuming starts at the next tick from then)."""
    last_schedule_time: datetime | None
    """The latest tick that enqueued a task."""
    last_task_id: int | None
    """The task that tick enqueued."""
    last_skipped_time: datetime | None
    """The latest tick skipped."""
    last_skipped_reason: str | None
    """Why: Missed, PastStartingDeadline or PreviousUnfinished."""
    last_error: str | None
    """Why the last pass could not enqueue (e.g. no such queue): its ticks stay due, and the
    next pass tries again. Null after a pass that could."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PutSchedule:
    schedule: ScheduleView
    created: bool  # False: the schedule existed and was updated


def schedule_spec(fields: Mapping[str, Any]) -> ScheduleSpec:
    """The spec these fields (ScheduleSpec's names; left out: its defaults) declare. The error
    names the first bad field with taskq's message, as the CLI's does."""
    try:
        spec = ScheduleSpec.model_validate(dict(fields))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidArgumentError(field, first["msg"].removeprefix("Value error, ")) from None
    _check_payload(spec.payload)
    return spec


def _check_payload(payload: Any) -> None:
    """What PostgreSQL's jsonb refuses, refused here with the words a task's payload gets
    (taskq's store checks a task's payload, not a schedule's)."""
    try:
        text = jsonutil.encode(payload)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError("payload", f"not JSON-serialisable: {error}") from None
    if jsonutil.holds_nul(text):
        raise InvalidArgumentError(
            "payload",
            "holds the character U+0000, which PostgreSQL cannot store in JSON: remove it, "
            "or encode the data (e.g. base64)",
        )


def schedule_view(key: ApiKey, info: ScheduleInfo) -> ScheduleView:
    hidden = not key.sees_payloads()
    spec = info.spec.model_copy(update={"payload": None}) if hidden else info.spec
    return ScheduleView(
        schedule=info.full_name,
        namespace=info.namespace,
        name=info.name,
        spec=spec,
        payload_hidden=hidden,
        next_run_at=None if info.spec.suspend else info.next_run_at,
        last_schedule_time=info.last_schedule_time,
        last_task_id=info.last_task_id,
        last_skipped_time=info.last_skipped_time,
        last_skipped_reason=info.last_skipped_reason,
        last_error=info.last_error,
        created_at=info.created_at,
    )
