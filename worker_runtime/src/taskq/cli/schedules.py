"""`taskq schedules ...`: recurring tasks without Kubernetes (docs/schedules.md)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from taskq.client import Client
from taskq.errors import InvalidArgumentError
from taskq.schedules import ConcurrencyPolicy, ScheduleSpec
from taskq.store.schedules import ScheduleInfo

# ScheduleSpec field -> the flag that sets it
_FLAGS = {
    "queue": "--queue",
    "task_name": "--task",
    "payload": "--payload",
    "priority": "--priority",
    "cron": "--cron",
    "time_zone": "--time-zone",
    "suspend": "--suspend",
    "concurrency_policy": "--concurrency-policy",
    "starting_deadline_seconds": "--starting-deadline-seconds",
    "max_missed_runs": "--max-missed-runs",
}


def _spec(args: argparse.Namespace) -> ScheduleSpec:
    try:
        payload = json.loads(args.payload) if args.payload is not None else {}
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(
            "--payload", f"not valid JSON: {error.msg} at position {error.pos}"
        ) from None
    values: dict[str, Any] = {
        "queue": args.queue,
        "task_name": args.task,
        "payload": payload,
        "cron": args.cron,
        "time_zone": args.time_zone,
        "suspend": args.suspend,
        "concurrency_policy": args.concurrency_policy,
        "starting_deadline_seconds": args.starting_deadline_seconds,
        "max_missed_runs": args.max_missed_runs,
    }
    if args.priority is not None:
        values["priority"] = args.priority
    try:
        return ScheduleSpec.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidArgumentError(_FLAGS.get(field, field), message) from None


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _row(found: ScheduleInfo) -> list[str]:
    spec = found.spec
    return [
        found.full_name,
        spec.queue,
        spec.task_name,
        spec.cron,
        spec.time_zone,
        "yes" if spec.suspend else "no",
        _when(found.last_schedule_time),
        "-" if spec.suspend else _when(found.next_run_at),
        found.last_error or found.last_skipped_reason or "-",
    ]


def _print_table(rows: list[list[str]]) -> None:
    header = ["NAME", "QUEUE", "TASK", "SCHEDULE", "TIMEZONE", "SUSPEND", "LAST", "NEXT", "NOTE"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _show(found: ScheduleInfo) -> None:
    print(
        json.dumps(
            {
                "name": found.full_name,
                **found.spec.model_dump(mode="json"),
                "next_run_at": _when(found.next_run_at),
                "last_schedule_time": _when(found.last_schedule_time),
                "last_task_id": found.last_task_id,
                "last_skipped_time": _when(found.last_skipped_time),
                "last_skipped_reason": found.last_skipped_reason,
                "last_error": found.last_error,
            },
            indent=2,
        )
    )


async def _create(client: Client, args: argparse.Namespace) -> None:
    _show(await client.create_schedule(args.name, _spec(args)))


async def _list(client: Client, args: argparse.Namespace) -> None:
    _print_table([_row(found) for found in await client.list_schedules(args.namespace)])


async def _get(client: Client, args: argparse.Namespace) -> None:
    _show(await client.get_schedule(args.name))


async def _suspend(client: Client, args: argparse.Namespace) -> None:
    found = await client.set_schedule_suspended(args.name, True)
    print(f"schedule {found.full_name} suspended")


async def _resume(client: Client, args: argparse.Namespace) -> None:
    found = await client.set_schedule_suspended(args.name, False)
    print(f"schedule {found.full_name} resumed: next run {_when(found.next_run_at)}")


async def _delete(client: Client, args: argparse.Namespace) -> None:
    await client.delete_schedule(args.name)
    print(f"schedule {args.name} deleted")


def add_schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedules = sub.add_parser("schedules", help="recurring tasks (cron)")
    ssub = schedules.add_subparsers(dest="schedules_command", required=True)
    create = ssub.add_parser("create", help="a new schedule")
    create.add_argument("name", help="NAMESPACE/NAME; its queue is in that namespace")
    create.add_argument("--queue", required=True, help="the queue's name in the namespace")
    create.add_argument("--task", required=True, help="task name (the handler's key)")
    create.add_argument(
        "--cron", required=True, help="five fields ('*/15 * * * *') or @hourly, @daily..."
    )
    create.add_argument("--payload", help="JSON payload of each task (default {})")
    create.add_argument("--priority", type=int, help="0..100 (default 50)")
    create.add_argument("--time-zone", default="UTC", help="IANA zone (default UTC)")
    create.add_argument("--suspend", action="store_true", help="create it suspended")
    create.add_argument(
        "--concurrency-policy",
        default="Allow",
        help="while the previous tick's task is unfinished: "
        + ", ".join(p.value for p in ConcurrencyPolicy),
    )
    create.add_argument(
        "--starting-deadline-seconds", type=int, help="skip a tick not started within this"
    )
    create.add_argument(
        "--max-missed-runs",
        type=int,
        default=1,
        help="after downtime, how many of the most recent missed ticks run (default 1)",
    )
    create.set_defaults(run=_create)
    listing = ssub.add_parser("list", help="schedules, their last and next runs")
    listing.add_argument("--namespace", help="only this namespace")
    listing.set_defaults(run=_list)
    for command, run, text in (
        ("show", _get, "a schedule and what it last did (JSON)"),
        ("suspend", _suspend, "stop firing until resumed"),
        ("resume", _resume, "fire again from the next tick (missed ticks are not run)"),
        ("delete", _delete, "delete a schedule (its tasks stay)"),
    ):
        parser = ssub.add_parser(command, help=text)
        parser.add_argument("name", help="NAMESPACE/NAME")
        parser.set_defaults(run=run)
