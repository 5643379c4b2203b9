"""TaskSchedule: the schedule is declared in its queue's database, where the scheduler (every
worker's and the operator's maintenance) fires it; status shows its last and next runs."""

from __future__ import annotations

from pydantic import ValidationError

from taskq.errors import TaskqError
from taskq.schedules import ScheduleSpec
from taskq.store.migrations import MigrationChecksumError
from taskq.store.schedules import ScheduleInfo
from taskq_operator.api import (
    DatabaseRef,
    TaskQueueSpec,
    TaskScheduleSpec,
    TaskScheduleStatus,
    set_condition,
)
from taskq_operator.k8s import NotFoundError
from taskq_operator.reconcile.context import ScheduleContext, not_ready
from taskq_operator.reconcile.ports import NoDatabaseError, Ports, ScheduleDatabase

# ScheduleSpec field -> the TaskSchedule field it comes from, for messages
_SPEC_FIELDS = {"cron": "spec.schedule", "time_zone": "spec.timeZone"}


class _NotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _schedule(spec: TaskScheduleSpec) -> ScheduleSpec:
    """What the schema could not check (a cron field out of range, an unknown zone)."""
    try:
        return spec.to_schedule()
    except ValidationError as error:
        first = error.errors()[0]
        field = _SPEC_FIELDS.get(str(first["loc"][0]), f"spec.{first['loc'][0]}")
        message = first["msg"].removeprefix("Value error, ")
        raise _NotReady("InvalidSchedule", f"{field}: {message}") from None


async def _database(
    ports: Ports, namespace: str, queue: str
) -> tuple[ScheduleDatabase, DatabaseRef | None]:
    """The schedules of the database holding the TaskQueue `queue`, and its reference."""
    found = await ports.k8s.task_queue(namespace, queue)
    if found is None:
        raise _NotReady(
            "QueueNotFound",
            f"TaskQueue {namespace}/{queue} does not exist: create it, or fix spec.queue",
        )
    database = TaskQueueSpec.model_validate(found.get("spec") or {}).database
    return await _schedules(ports, namespace, database), database


async def _schedules(
    ports: Ports, namespace: str, database: DatabaseRef | None
) -> ScheduleDatabase:
    ref = database.secret_key_ref if database else None
    dsn = await ports.dsn(namespace, (ref.name, ref.key) if ref else None)
    return await ports.databases.schedules(dsn)


async def reconcile_schedule(ctx: ScheduleContext) -> TaskScheduleStatus:
    """Declare the schedule (when the spec changed or was never declared), then report what
    its scheduler last did."""
    try:
        schedule = _schedule(ctx.spec)
        db, database = await _database(ctx.ports, ctx.namespace, ctx.spec.queue)
        info = await _declared(ctx, db, schedule)
        state = (
            await db.task_state(info.namespace, info.spec.queue, info.last_task_id)
            if info.last_task_id
            else None
        )
    except _NotReady as problem:
        return not_ready(ctx, "TaskSchedule", problem.reason, str(problem))
    except MigrationChecksumError as error:
        return not_ready(ctx, "TaskSchedule", "SchemaConflict", str(error))
    except NotFoundError as error:
        return not_ready(ctx, "TaskSchedule", "SecretNotFound", str(error))
    except NoDatabaseError as error:
        return not_ready(ctx, "TaskSchedule", "NoDatabase", str(error))
    except TaskqError as error:
        return not_ready(ctx, "TaskSchedule", "DatabaseUnavailable", str(error))
    status = ctx.status.model_copy(
        update={
            "observed_generation": ctx.generation,
            "database": database,
            "last_schedule_time": info.last_schedule_time,
            "next_schedule_time": None if info.spec.suspend else info.next_run_at,
            "last_task_id": info.last_task_id,
            "last_task_state": state,
            "last_skipped_time": info.last_skipped_time,
            "last_skipped_reason": info.last_skipped_reason,
        }
    )
    if info.last_error is not None:
        # the scheduler keeps the tick due and retries it: say why it cannot enqueue
        return not_ready(ctx, "TaskSchedule", "EnqueueFailed", info.last_error, status=status)
    message = "suspended" if info.spec.suspend else f"next run at {info.next_run_at.isoformat()}"
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="True",
        reason="Scheduled",
        message=message,
        now=ctx.now,
        observed_generation=ctx.generation,
    )
    return status.model_copy(update={"conditions": conditions})


async def _declared(
    ctx: ScheduleContext, db: ScheduleDatabase, schedule: ScheduleSpec
) -> ScheduleInfo:
    """The schedule as its database holds it, declared again when the spec changed since, or
    when it went missing (deleted behind the operator's back)."""
    if ctx.memory.declared_generation == ctx.generation:
        found = await db.get_schedule(ctx.namespace, ctx.name)
        if found is not None:
            return found
    info = await db.put_schedule(ctx.namespace, ctx.name, schedule)
    if ctx.memory.declared_generation is None and ctx.status.observed_generation is None:
        ctx.emit("Normal", "Declared", f"schedule {info.full_name} declared: {schedule.cron}")
    ctx.memory.declared_generation = ctx.generation
    return info


async def delete_schedule(
    ports: Ports, namespace: str, name: str, spec: TaskScheduleSpec, status: TaskScheduleStatus
) -> bool:
    """Remove the schedule from its database; True when there was one. Raises TaskqError (the
    caller retries) when the database cannot be reached."""
    try:
        db, _ = await _database(ports, namespace, spec.queue)
    except _NotReady:
        if status.observed_generation is None:
            return False  # never declared
        # the TaskQueue went first: the database the status recorded
        db = await _schedules(ports, namespace, status.database)
    return await db.delete_schedule(namespace, name)
