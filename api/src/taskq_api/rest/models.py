"""The REST API's request and response bodies, where taskq's own models do not fit as they are.

Requests are strict: a number is not taken from a string nor a boolean, and an unknown field is
an error (a misspelt `delay_second` would otherwise be ignored silently).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from taskq.errors import InvalidArgumentError
from taskq.models import (
    CALLBACK_URL,
    MAX_CALLBACK_URL,
    MAX_DELAY_SECONDS,
    MAX_IDEMPOTENCY_KEY,
    MAX_TASK_NAME,
    EnqueueResult,
    Priority,
    QueueInfo,
    TaskRequest,
    resolve_priority,
)
from taskq.names import LABEL_PATTERN
from taskq.schedules import MAX_MISSED_RUNS, ConcurrencyPolicy
from taskq_api.service import MAX_BATCH, MAX_CORRELATION_ID, ScheduleView, delay_until

_LEVELS = [level.name.lower() for level in Priority]


def _priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"use an integer 0..100 or one of {', '.join(_LEVELS)}")  # noqa: TRY004
    try:
        resolved = resolve_priority(value.lower() if isinstance(value, str) else value)
    except InvalidArgumentError as error:
        raise ValueError(str(error).removeprefix("invalid priority: ")) from None
    assert resolved is not None
    return resolved


PriorityValue = Annotated[
    int,
    PlainValidator(_priority),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 100},
                {"type": "string", "enum": _LEVELS},
            ],
            "description": "0..100 (higher runs first) or a level: "
            + ", ".join(f"{level.name.lower()} = {level.value}" for level in Priority),
        }
    ),
]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class TaskSubmission(_Request):
    """One task to enqueue. Fields left out take the queue's defaults."""

    task_name: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TASK_NAME)]
    """The name the handler is registered under (`@taskq.task("...")`)."""
    payload: Any = None
    """Any JSON value, handed to the handler; at most the queue's payload limit once encoded."""
    priority: PriorityValue | None = None
    """0..100 or a level name; the queue's default priority when left out."""
    delay_seconds: Annotated[Seconds, Field(ge=0)] | None = None
    """Seconds before the task may run (leave out, or use run_at)."""
    run_at: AwareDatetime | None = None
    """When the task may run, with its timezone (RFC 3339); a past time means now. Turned into
    a delay by the server's clock. Leave out, or use delay_seconds."""
    idempotency_key: (
        Annotated[str, Field(strict=True, min_length=1, max_length=MAX_IDEMPOTENCY_KEY)] | None
    ) = None
    """While an unfinished task of the queue holds this key, enqueueing with it again returns
    that task (200) instead of making a new one (201)."""
    correlation_id: (
        Annotated[str, Field(strict=True, min_length=1, max_length=MAX_CORRELATION_ID)] | None
    ) = None
    """Your id tying this task to the work it belongs to; handlers see it, and tasks they
    enqueue inherit it."""
    max_attempts: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    """Attempts before the task is dead; the queue's max_attempts when left out."""
    timeout_seconds: Annotated[Seconds, Field(gt=0)] | None = None
    """How long one attempt may run; the queue's timeout when left out."""
    callback_url: (
        Annotated[
            str,
            Field(strict=True, max_length=MAX_CALLBACK_URL, pattern=f"^{CALLBACK_URL.pattern}"),
        ]
        | None
    ) = None
    """Called when the task finishes, signed by the queue's callback webhook (docs/webhooks.md);
    https:// unless that webhook's allowHosts names the host."""

    @model_validator(mode="after")
    def _one_start(self) -> TaskSubmission:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        return self

    def to_request(self, now: datetime) -> TaskRequest:
        delay: float | timedelta | None = self.delay_seconds
        if self.run_at is not None:
            delay = delay_until(self.run_at, now)
        return TaskRequest(
            task_name=self.task_name,
            payload=self.payload,
            priority=self.priority,
            delay=delay,
            idempotency_key=self.idempotency_key,
            max_attempts=self.max_attempts,
            timeout=self.timeout_seconds,
            correlation_id=self.correlation_id,
            callback_url=self.callback_url,
        )


class BatchSubmission(_Request):
    """Up to 10,000 tasks enqueued in one transaction: all of them, or none."""

    tasks: Annotated[list[TaskSubmission], Field(min_length=1, max_length=MAX_BATCH)]


class EnqueuedTask(BaseModel):
    id: int
    created: bool
    """False: an unfinished task already held the idempotency key, and `id` is that task."""


class BatchResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    tasks: list[EnqueuedTask]
    """One per submitted task, in the order submitted."""
    created: int
    """How many tasks were made (the others already existed under their idempotency key)."""


def lean_batch_parser() -> Callable[[bytes], dict[str, list[TaskRequest]]]:
    """A BatchSubmission's JSON straight into `{"tasks": [TaskRequest, ...]}`, in one pass of
    pydantic-core: no TaskSubmission models, no `to_request` in Python. Each field is checked
    by TaskSubmission's own validator (taken from its schema), under the same names, and
    unknown fields are refused as there; a task with `run_at` is refused too (its delay needs
    the server's clock: such a batch takes the declared way). So it takes no body that
    BatchSubmission refuses, and what it makes equals `to_request` of what BatchSubmission
    makes (tests/unit/api check both)."""
    outer: Any = BatchSubmission.__pydantic_core_schema__
    batch_fields = outer["schema"]["fields"]
    tasks_schema = batch_fields["tasks"]["schema"]
    # function-after (the one-start check, moot without run_at) > model > model-fields
    inner: Any = TaskSubmission.__pydantic_core_schema__
    task_fields = inner["schema"]["schema"]["fields"]
    names = {"delay": "delay_seconds", "timeout": "timeout_seconds"}
    fields = [field.name for field in dataclasses.fields(TaskRequest)]
    if set(task_fields) != {names.get(f, f) for f in fields} | {"run_at"} or set(
        batch_fields
    ) != {"tasks"}:
        raise TypeError("TaskSubmission or BatchSubmission changed: update lean_batch_parser")
    task = cs.dataclass_schema(
        TaskRequest,
        cs.dataclass_args_schema(
            "TaskRequest",
            [
                cs.dataclass_field(
                    f, task_fields[names.get(f, f)]["schema"], validation_alias=names.get(f, f)
                )
                for f in fields
            ],
            extra_behavior="forbid",
        ),
        fields,
        slots=True,
        frozen=True,
    )
    tasks = cs.list_schema(
        task, min_length=tasks_schema["min_length"], max_length=tasks_schema["max_length"]
    )
    schema = cs.typed_dict_schema({"tasks": cs.typed_dict_field(tasks)}, extra_behavior="forbid")
    parse: Callable[[bytes], dict[str, list[TaskRequest]]] = SchemaValidator(schema).validate_json
    return parse


_ENQUEUED = ('{"id":%d,"created":false}', '{"id":%d,"created":true}')


def batch_result_json(results: Sequence[EnqueueResult]) -> bytes:
    """The BatchResult of `results` as pydantic writes it, without a model per task (tests/unit/api
    check they agree)."""
    entries = ",".join([_ENQUEUED[created] % id_ for id_, created in results])
    made = sum([created for _, created in results])
    return f'{{"tasks":[{entries}],"created":{made}}}'.encode()


class ReplayRequest(_Request):
    """Which dead tasks to send back to ready: `ids`, or every dead task with `all` (one or
    the other: the service checks, as it does for gRPC)."""

    ids: Annotated[list[Annotated[int, Field(strict=True, ge=1)]], Field(max_length=MAX_BATCH)] = (
        Field(default_factory=list)
    )
    """Ids of dead tasks of this queue (tasks in another state are skipped)."""
    all: Annotated[bool, Field(strict=True)] = False
    """Every dead task of the queue."""


class ReplayOutcome(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    replayed: int
    """Dead tasks sent back to ready."""
    skipped: int
    """Dead tasks left dead: a newer unfinished task holds their idempotency key."""


class QueueList(BaseModel):
    queues: list[QueueInfo]


class ScheduleSubmission(_Request):
    """What a schedule enqueues, and when: taskq's ScheduleSpec, field for field. The service
    validates it with ScheduleSpec (the cron expression, the time zone), so REST and gRPC say
    the same; fields left out take these defaults."""

    queue: Annotated[str, Field(strict=True, min_length=1, max_length=63, pattern=LABEL_PATTERN)]
    """The queue's name, in the schedule's namespace. It need not exist yet: a tick without it
    is recorded in last_error, and stays due."""
    task_name: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TASK_NAME)]
    """The name the handler is registered under."""
    payload: Any = Field(default_factory=dict)
    """Each task's payload, any JSON value."""
    priority: Annotated[int, Field(strict=True, ge=0, le=100)] = 50
    """0..100, higher runs first."""
    cron: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    """Five fields, minute hour day-of-month month day-of-week (`*/15 * * * *`), or @hourly,
    @daily, @midnight, @weekly, @monthly, @yearly or @annually."""
    time_zone: Annotated[str, Field(strict=True, min_length=1, max_length=64)] = "UTC"
    """The IANA time zone the cron expression is read in (Europe/Berlin); across DST as cron
    does."""
    suspend: Annotated[bool, Field(strict=True)] = False
    """A suspended schedule enqueues nothing."""
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    """While the previous tick's task is unfinished: Allow (enqueue anyway), Forbid (skip the
    tick) or Replace (cancel that task, then enqueue)."""
    starting_deadline_seconds: (
        Annotated[int, Field(strict=True, ge=1, le=int(MAX_DELAY_SECONDS))] | None
    ) = None
    """A tick not started within this many seconds of its time is skipped; null: none."""
    max_missed_runs: Annotated[int, Field(strict=True, ge=0, le=MAX_MISSED_RUNS)] = 1
    """When several ticks are due at once (the scheduler did not run for a while): how many
    of the most recent to run; 0 none, 1 the last one."""

    def fields(self) -> dict[str, Any]:
        """The fields sent, for the service's ScheduleSpec (whose defaults are these)."""
        return self.model_dump(exclude_unset=True)


class ScheduleList(BaseModel):
    schedules: list[ScheduleView]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok"] = "ok"
    schema_version: int


# Every top-level field of a request body: an InvalidArgumentError naming one of these (or an
# item of one) points into the body, any other names a parameter or nothing.
BODY_FIELDS = frozenset(
    name
    for model in (TaskSubmission, BatchSubmission, ReplayRequest, ScheduleSubmission)
    for name in model.model_fields
)
