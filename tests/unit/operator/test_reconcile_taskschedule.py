"""The TaskSchedule reconciler on in-memory fakes of its ports: the schedule declared in its
queue's database once per generation, its status from what the scheduler did, and a Ready
condition naming what is wrong (the field, the missing queue, the enqueue that fails)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from taskq.errors import DatabaseUnavailableError
from taskq_operator.api import TaskScheduleSpec, TaskScheduleStatus
from taskq_operator.reconcile.context import Context, ScheduleContext
from taskq_operator.reconcile.runtime import ScheduleMemory
from taskq_operator.reconcile.taskschedule import delete_schedule, reconcile_schedule

from .fakes import DEFAULT_DSN, NOW, World

NS, NAME = "shop", "nightly"
SHOP_DSN = "postgresql://shop@db/shop"


def schedule_spec(**fields: Any) -> TaskScheduleSpec:
    values: dict[str, Any] = {"queue": "reports", "taskName": "report", "schedule": "@hourly"}
    return TaskScheduleSpec.model_validate(values | fields)


class Schedule:
    def __init__(self, world: World, spec: TaskScheduleSpec) -> None:
        self.world, self.spec, self.generation = world, spec, 1
        self.status = TaskScheduleStatus()
        self.memory = ScheduleMemory()

    def context(self) -> ScheduleContext:
        return Context(
            ports=self.world.ports,
            namespace=NS,
            name=NAME,
            uid="uid",
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            memory=self.memory,
            emit=self.world.events,
            now=NOW,
        )

    async def reconcile(self) -> TaskScheduleStatus:
        self.status = await reconcile_schedule(self.context())
        return self.status

    def ready(self) -> tuple[str, str, str]:
        (condition,) = [c for c in self.status.conditions if c.type == "Ready"]
        return condition.status, condition.reason, condition.message


def world_with_queue(**queue_spec: Any) -> World:
    world = World()
    world.k8s.add_task_queue(NS, "reports", **queue_spec)
    return world


async def test_a_schedule_is_declared_in_its_queues_database_once_per_generation() -> None:
    world = world_with_queue()
    schedule = Schedule(world, schedule_spec(payload={"full": True}, timeZone="Europe/Berlin"))

    status = await schedule.reconcile()
    await schedule.reconcile()

    db = world.databases.schedule_database(DEFAULT_DSN)
    assert db.puts == 1
    stored = db.schedules[NS, NAME].spec
    assert (stored.cron, stored.time_zone, stored.payload) == (
        "@hourly",
        "Europe/Berlin",
        {"full": True},
    )
    assert status.next_schedule_time == NOW + timedelta(hours=1)
    assert status.observed_generation == 1
    assert schedule.ready()[:2] == ("True", "Scheduled")
    assert world.events.reasons() == ["Declared"]

    schedule.generation, schedule.spec = 2, schedule_spec(schedule="0 3 * * *")
    status = await schedule.reconcile()
    assert db.puts == 2
    assert status.next_schedule_time is not None and status.next_schedule_time.hour == 3


async def test_the_status_shows_the_last_task_and_its_state() -> None:
    world = world_with_queue()
    schedule = Schedule(world, schedule_spec())
    await schedule.reconcile()
    db = world.databases.schedule_database(DEFAULT_DSN)
    info = db.schedules[NS, NAME]
    db.schedules[NS, NAME] = dataclasses.replace(
        info, last_schedule_time=NOW, last_task_id=42, last_skipped_reason="Missed"
    )
    db.task_states[NS, info.spec.queue, 42] = "running"

    status = await schedule.reconcile()

    assert (status.last_task_id, status.last_task_state) == (42, "running")
    assert status.last_schedule_time == NOW
    assert status.last_skipped_reason == "Missed"


async def test_a_cron_or_zone_the_schema_let_through_is_named_in_the_condition() -> None:
    world = world_with_queue()
    schedule = Schedule(world, schedule_spec(schedule="61 * * * *"))
    await schedule.reconcile()
    state, reason, message = schedule.ready()
    assert (state, reason) == ("False", "InvalidSchedule")
    assert message.startswith("spec.schedule: '61 * * * *' is not a cron expression")

    schedule.spec = schedule_spec(timeZone="Mars/Base")
    await schedule.reconcile()
    assert schedule.ready()[1:] == (
        "InvalidSchedule",
        "spec.timeZone: 'Mars/Base' is not an IANA time zone "
        "(e.g. UTC, Europe/Berlin, America/New_York)",
    )
    assert world.databases.schedule_database(DEFAULT_DSN).schedules == {}


async def test_a_missing_queue_and_an_unreachable_database_are_not_ready() -> None:
    world = World()
    schedule = Schedule(world, schedule_spec())
    await schedule.reconcile()
    assert schedule.ready()[1:] == (
        "QueueNotFound",
        f"TaskQueue {NS}/reports does not exist: create it, or fix spec.queue",
    )
    world.k8s.add_task_queue(NS, "reports", database={"secretKeyRef": {"name": "shop-db"}})
    world.k8s.secrets[NS, "shop-db"] = {"dsn": SHOP_DSN}
    world.databases.errors[SHOP_DSN] = DatabaseUnavailableError("connection refused")
    await schedule.reconcile()
    assert schedule.ready()[1:] == ("DatabaseUnavailable", "connection refused")
    del world.databases.errors[SHOP_DSN]
    await schedule.reconcile()
    assert schedule.ready()[0] == "True"
    assert (NS, NAME) in world.databases.schedule_database(SHOP_DSN).schedules
    assert schedule.status.database is not None


async def test_an_enqueue_the_scheduler_cannot_do_is_the_condition() -> None:
    world = world_with_queue()
    schedule = Schedule(world, schedule_spec())
    await schedule.reconcile()
    db = world.databases.schedule_database(DEFAULT_DSN)
    db.schedules[NS, NAME] = dataclasses.replace(
        db.schedules[NS, NAME], last_error="payload too large"
    )
    status = await schedule.reconcile()
    assert schedule.ready()[1:] == ("EnqueueFailed", "payload too large")
    assert status.next_schedule_time is not None


async def test_deletion_removes_it_even_after_its_taskqueue_went() -> None:
    world = world_with_queue()
    schedule = Schedule(world, schedule_spec())
    await schedule.reconcile()
    del world.k8s.task_queues[NS, "reports"]

    assert await delete_schedule(world.ports, NS, NAME, schedule.spec, schedule.status)
    assert world.databases.schedule_database(DEFAULT_DSN).schedules == {}
    # never declared: nothing to remove, nothing to wait for
    assert not await delete_schedule(world.ports, NS, "other", schedule.spec, TaskScheduleStatus())
