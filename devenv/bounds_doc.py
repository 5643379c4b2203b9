"""Write docs/bounds.md: the bounds of every field a user sets, through every door, read from the
models and constants that enforce them (QueueSettings, the TaskQueue and WorkerPool specs,
WorkerSettings, the MAX_* of taskq/models.py), so the page cannot drift from them.

    python -m devenv.bounds_doc            write docs/bounds.md
    python -m devenv.bounds_doc --check    exit 1 if it is stale (tests/unit/test_bounds_doc.py)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from taskq.models import (
    MAX_BATCH,
    MAX_CALLBACK_URL,
    MAX_DELAY_SECONDS,
    MAX_IDEMPOTENCY_KEY,
    MAX_PERIOD_SECONDS,
    MAX_TASK_NAME,
    MAX_TIMEOUT_SECONDS,
    setting_fields,
)
from taskq.schedules import ScheduleSpec
from taskq.worker.settings import WorkerSettings, env_name
from taskq_operator.api import OPERATOR_SETTINGS, TaskQueueSpec, TaskScheduleSpec, WorkerPoolSpec
from taskq_operator.api.taskqueue import HoldsSetting

DOC = Path(__file__).resolve().parent.parent / "docs" / "bounds.md"
_DAY = 86_400


def _number(value: float) -> str:
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.10g}"
    return text.replace(",", "\u202f")  # a thin space: 315 360 000


def _limits(info: FieldInfo) -> tuple[str, str]:
    """The lowest and highest value, or length ("253 chars") of a text, list or map."""
    unit = {"text": "chars", "list": "items", "map": "entries"}.get(_type(info), "long")
    found: dict[str, Any] = {}
    for constraint in info.metadata:
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length"):
            if getattr(constraint, name, None) is not None:
                found[name] = getattr(constraint, name)
    low = (
        f"> {_number(found['gt'])}"
        if "gt" in found
        else _number(found["ge"])
        if "ge" in found
        else f"{found['min_length']} {unit}"
        if "min_length" in found
        else "-"
    )
    high = (
        f"< {_number(found['lt'])}"
        if "lt" in found
        else _number(found["le"])
        if "le" in found
        else f"{found['max_length']} {unit}"
        if "max_length" in found
        else "-"
    )
    return low, high


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    if origin in (UnionType, Union):
        kinds = [_type_name(a) for a in get_args(annotation) if a is not NoneType]
        return " or ".join(kinds) + (" or unset" if NoneType in get_args(annotation) else "")
    if origin is list:
        return "list"
    if origin is dict:
        return "map"
    names = {int: "integer", float: "number", bool: "boolean", str: "text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _type(info: FieldInfo) -> str:
    return _type_name(info.annotation)


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "unset"
    if isinstance(info.default, bool | str):
        return str(info.default).lower() if isinstance(info.default, bool) else info.default
    if isinstance(info.default, int | float):
        return _number(info.default)
    return "(object)" if isinstance(info.default, BaseModel) else repr(info.default)


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    """Every field of a spec with its camelCase path, nested objects in place."""
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        annotation = info.annotation
        nested = [
            t for t in getattr(annotation, "__args__", (annotation,))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if nested:
            items = "[]" if get_origin(annotation) is list else ""
            yield from _walk(nested[0], path + items + ".")
        else:
            yield path, info


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _queue_settings() -> list[str]:
    by_path = {f.path: f for f in setting_fields()}
    spec = {
        held.path: path
        for path, info in _walk(TaskQueueSpec, "spec.")
        for held in info.metadata
        if isinstance(held, HoldsSetting)
    }
    lines = [
        _row("TaskQueue", "`taskq queue create`", "Python `QueueSettings`",
             "SQL `ensure_queue` key", "type", "min", "max", "default"),
        _row(*["---"] * 8),
    ]
    for path, field in by_path.items():
        low, high = _limits(field.info)
        lines.append(_row(
            f"`{spec[path]}`", f"`--{field.flag}`", f"`{path}`", f"`{field.column}`",
            _type(field.info), low, high, _default(field.info),
        ))
    return lines


def _spec(model: type[BaseModel], prefix: str) -> list[str]:
    lines = [_row("field", "type", "min", "max", "default"), _row(*["---"] * 5)]
    for path, info in _walk(model, prefix):
        low, high = _limits(info)
        if (low, high) == ("-", "-") and _type(info) not in ("integer", "number"):
            continue  # no bounds to state (names and objects the API server checks)
        lines.append(_row(f"`{path}`", _type(info), low, high, _default(info)))
    return lines


# The TaskSchedule field ScheduleSpec names otherwise: the resource keeps a CronJob's name.
_SCHEDULE_NAMES = {"schedule": "cron"}


def _schedule() -> list[str]:
    """TaskSchedule's fields with bounds beside ScheduleSpec's names, which the API's schedule
    PUT takes too; one row states both bounds, so they must be the same."""
    lines = [
        _row("TaskSchedule", "`ScheduleSpec`, REST body, gRPC `spec.`", "type", "min", "max",
             "default"),
        _row(*["---"] * 6),
    ]
    for name, info in TaskScheduleSpec.model_fields.items():
        low, high = _limits(info)
        if (low, high) == ("-", "-") and _type(info) not in ("integer", "number"):
            continue
        path, twin = f"spec.{info.alias or name}", _SCHEDULE_NAMES.get(name, name)
        if _limits(ScheduleSpec.model_fields[twin]) != (low, high):
            raise ValueError(f"{path} and ScheduleSpec.{twin} have different bounds: align them")
        lines.append(_row(f"`{path}`", f"`{twin}`", _type(info), low, high, _default(info)))
    return lines


def _worker() -> list[str]:
    lines = [_row("variable", "type", "min", "max", "default"), _row(*["---"] * 5)]
    for name, info in WorkerSettings.model_fields.items():
        low, high = _limits(info)
        if (low, high) == ("-", "-") or name in OPERATOR_SETTINGS:
            continue
        lines.append(_row(f"`{env_name(name)}`", _type(info), low, high, _default(info)))
    return lines


def _task() -> list[str]:
    rows = [
        ("name", "`task`", "`p_task_name`", "text", "1 chars", f"{MAX_TASK_NAME} chars",
         "required"),
        ("priority", "`--priority`", "`p_priority`", "integer or level name", "0", "100",
         "the queue's"),
        ("delay", "`--delay`", "`p_delay_s`", "seconds", "0", _number(MAX_DELAY_SECONDS), "0"),
        ("max_attempts", "`--max-attempts`", "`p_max_attempts`", "integer", "1", "1\u202f000",
         "the queue's"),
        ("timeout", "`--timeout`", "`p_timeout_s`", "seconds", "> 0",
         _number(MAX_TIMEOUT_SECONDS), "the queue's"),
        ("idempotency_key", "`--idempotency-key`", "`p_idempotency_key`", "text", "1 chars",
         f"{MAX_IDEMPOTENCY_KEY} chars", "unset"),
        ("callback_url", "-", "`p_callback_url`", "http(s) URL", "-",
         f"{_number(MAX_CALLBACK_URL)} chars", "unset"),
    ]
    lines = [
        _row("Python `enqueue`", "`taskq enqueue`", "SQL `taskq.enqueue`", "type", "min", "max",
             "default"),
        _row(*["---"] * 7),
    ]
    lines += [_row(f"`{r[0]}`", *r[1:]) for r in rows]
    return lines


def _sql() -> list[str]:
    period, batch = _number(MAX_PERIOD_SECONDS), _number(MAX_BATCH)
    rows = [
        ("`claim`", "`p_limit`", "0", batch),
        ("`claim`, `heartbeat`", "`p_lease_s`", "> 0", period),
        ("`purge_finished`, `rescue_expired`, `rescue_dead_workers`", "`p_limit`", "0", batch),
        ("`worker_beat`", "`p_dead_after_s`, `p_rescue_every_s`, `p_beat_every_s`", "> 0", period),
        ("`rescue_dead_workers`", "`p_grace_s`", "0", period),
        ("`take_turn`, `ask_turn`", "`p_every_s`", "> 0", period),
        ("`dispatch_webhooks`", "`p_limit`", "0", batch),
        ("`dispatch_webhooks`", "`p_overlap_s`", "> 0", period),
    ]
    lines = [_row("function", "argument", "min", "max"), _row(*["---"] * 4)]
    lines += [_row(*r) for r in rows]
    return lines


def render() -> str:
    parts = [
        "<!-- Generated by devenv/bounds_doc.py from the models and taskq/models.py's MAX_*"
        " (`python -m devenv.bounds_doc`): edit those, not this file. -->",
        "# Bounds of every field",
        "",
        "Every duration, count and size a user sets has a lower and an upper bound, the same"
        " through each door: a TaskQueue or WorkerPool manifest (the CRD's schema, so `kubectl"
        " apply` refuses it), the `taskq` CLI, the Python client, the REST and gRPC API (their"
        " fields are the Python client's), and the SQL functions. Past an upper bound the"
        " database's timestamps and integers would overflow, or a typo (ms for s) would go"
        " unnoticed. A refused value is named as that door names it (`spec.retention."
        "succeededSeconds`, `--retention-succeeded`, `tasks[0].delay`, `p_delay_s`) with the"
        " range it accepts. NaN and Infinity are refused wherever a number is taken.",
        "",
        "## Queue settings",
        "",
        "One definition, `QueueSettings` (taskq/models.py); the TaskQueue spec, the CLI flags"
        " and `taskq.ensure_queue(namespace, name, settings jsonb)` take its bounds. Seconds"
        " are whole in the TaskQueue spec where they are fractional elsewhere.",
        "",
        *_queue_settings(),
        "",
        "## A task",
        "",
        "Each task given to `Client.enqueue`/`enqueue_many`, `taskq enqueue`, the API's"
        " enqueue, or `taskq.enqueue`/`enqueue_many` (arrays: `p_priorities[i]`,"
        " `p_delays_s[i]`, ...). Payloads are limited by their queue's `payload_limit_bytes`.",
        "",
        *_task(),
        "",
        "## WorkerPool",
        "",
        "The spec fields with bounds (names, images, labels and the pod's Kubernetes fields are"
        " checked by the CRD's patterns and the API server).",
        "",
        *_spec(WorkerPoolSpec, "spec."),
        "",
        "## TaskSchedule",
        "",
        "The same bounds for `taskq schedules create` (`--priority`,"
        " `--starting-deadline-seconds`, `--max-missed-runs`), `ScheduleSpec` in Python and"
        " the API's schedule `PUT` (the REST body's fields, gRPC `PutSchedule`'s `spec.`), which"
        " name the fields as the second column does ([schedules.md](schedules.md),"
        " [api.md](api.md#schedules)); the schedule is five cron fields or a macro, the time"
        " zone an IANA name, each refused naming its field when it is not.",
        "",
        *_schedule(),
        "",
        "## Worker settings",
        "",
        "The `TASKQ_*` variables of `taskq worker` ([worker.md](worker.md)) with bounds; the"
        " operator sets the others. `TASKQ_DB_TIMEOUT` and `TASKQ_POLL_INTERVAL` must also be"
        " shorter than `TASKQ_LEASE_SECONDS`.",
        "",
        *_worker(),
        "",
        "## SQL functions of workers and maintenance",
        "",
        "For workers and maintenance jobs written in other languages; out of range, NULL, NaN"
        " or Infinity is refused with SQLSTATE TQ003 naming the argument (`claim: p_lease_s is"
        " 1e+300: give more than 0 and at most 86400 seconds`).",
        "",
        *_sql(),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is stale: run python -m devenv.bounds_doc", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
