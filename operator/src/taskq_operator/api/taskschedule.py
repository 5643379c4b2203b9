"""TaskSchedule: a recurring task, enqueued into a TaskQueue of the same namespace on a cron
schedule; its semantics follow the Kubernetes CronJob's wherever they fit (docs/schedules.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from taskq.models import MAX_DELAY_SECONDS, MAX_TASK_NAME
from taskq.schedules import MACROS, MAX_MISSED_RUNS, ScheduleSpec
from taskq_operator.api.base import DnsLabel, K8sModel, cel
from taskq_operator.api.common import Condition
from taskq_operator.api.taskqueue import DatabaseRef

QUEUE_IMMUTABLE_MESSAGE = (
    "spec.queue is immutable: the schedule lives in that queue's database. To target another "
    "queue, create a new TaskSchedule and delete this one."
)
# What a schema can tell of a cron string (five fields, or a macro); the operator checks the
# rest (ranges, names) and reports it in the Ready condition naming spec.schedule.
_MACROS = "|".join(m.removeprefix("@") for m in MACROS)
CRON_PATTERN = rf"^(@({_MACROS})|\S+(\s+\S+){{4}})$"
ZONE_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"

JsonValue = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]


class TaskScheduleSpec(K8sModel):
    """Which task to enqueue, into which queue, and when."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.queue == oldSelf.queue", QUEUE_IMMUTABLE_MESSAGE, field_path=".queue")
            ]
        }
    )

    queue: DnsLabel
    """The TaskQueue, in this namespace, that receives the tasks. Immutable."""
    task_name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TASK_NAME)]
    """The task's name: the handler a worker runs."""
    payload: JsonValue = Field(default_factory=dict)
    """The task's payload: any JSON value."""
    priority: int = Field(default=50, ge=0, le=100)
    """0..100; higher runs first."""
    schedule: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=CRON_PATTERN)]
    """Cron: five fields (minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'),
    or @yearly, @monthly, @weekly, @daily, @hourly."""
    time_zone: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=ZONE_PATTERN)
    ] = "UTC"
    """IANA time zone the schedule is read in (e.g. Europe/Berlin); ticks follow its DST."""
    suspend: bool = False
    """No ticks run while true; resuming starts from the next tick (missed ones are not run)."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    """While the previous tick's task is unfinished: Allow enqueues anyway, Forbid skips the
    tick, Replace cancels the unfinished task and enqueues."""
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=MAX_DELAY_SECONDS)
    """A tick not started within this many seconds of its time is skipped."""
    max_missed_runs: int = Field(default=1, ge=0, le=MAX_MISSED_RUNS)
    """After the scheduler did not run for a while (e.g. no worker and no operator): how many
    of the most recent missed ticks run. 0 none, 1 the last one."""

    def to_schedule(self) -> ScheduleSpec:
        """The schedule as the database holds it; ValueError naming the field when the cron
        or the time zone is one the schema could not refuse."""
        return ScheduleSpec(
            queue=self.queue,
            task_name=self.task_name,
            payload=self.payload,
            priority=self.priority,
            cron=self.schedule,
            time_zone=self.time_zone,
            suspend=self.suspend,
            concurrency_policy=self.concurrency_policy,
            starting_deadline_seconds=self.starting_deadline_seconds,
            max_missed_runs=self.max_missed_runs,
        )


class TaskScheduleStatus(K8sModel):
    """The schedule as the operator last saw it."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the schedule was last declared from."""
    conditions: list[Condition] = Field(
        default=[],
        max_length=8,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Ready: the schedule is declared in its queue's database and its last pass enqueued."""
    last_schedule_time: datetime | None = None
    """The latest tick that enqueued a task."""
    next_schedule_time: datetime | None = None
    """The next tick (none while suspended)."""
    last_task_id: Annotated[int, Field(ge=1)] | None = None
    """The task the latest tick enqueued."""
    last_task_state: Annotated[str, StringConstraints(max_length=16)] | None = None
    """Its state: ready, running, succeeded, dead... (gone once purged)."""
    last_skipped_time: datetime | None = None
    """The latest tick that did not run."""
    last_skipped_reason: Annotated[str, StringConstraints(max_length=32)] | None = None
    """Why: Missed, PastStartingDeadline or PreviousUnfinished."""
    database: DatabaseRef | None = None
    """The database the schedule was declared in, once it was (the operator's default when
    absent): where its deletion removes it, should its TaskQueue be gone by then."""
