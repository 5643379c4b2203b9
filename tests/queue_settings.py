"""Queue settings for the tests of each door a setting comes in by (the Python client, the
`taskq queue create` command, a TaskQueue resource), all derived from QueueSettings' fields: a new
setting is covered by those tests without editing them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from taskq.models import QueueSettings, Row, SettingField, setting_fields
from taskq_operator.api import TaskQueueSpec
from taskq_operator.api.taskqueue import HoldsSetting


def other_settings(base: QueueSettings | None = None) -> QueueSettings:
    """Every setting at a valid value other than its value in `base` (default: the defaults),
    and no two numbers alike, so a value stored in another setting's column shows."""
    base = base or QueueSettings()
    used: list[Any] = []
    values = {
        field.path: _other_value(field, field.value_in(base), used) for field in setting_fields()
    }
    return QueueSettings.from_paths(values)


def _other_value(field: SettingField, current: Any, used: list[Any]) -> Any:
    annotation = field.info.annotation
    if annotation is bool:
        return not current
    if get_origin(annotation) is Literal:
        return next(choice for choice in get_args(annotation) if choice != current)
    [number] = [t for t in (get_args(annotation) or (annotation,)) if t in (int, float)]
    bounds = field.bounds
    start = current if current is not None else bounds.get("gt", bounds.get("ge", 0))
    for step in itertools.count(1):
        steps = (step, -step) if number is int else (step, -step, step / 10, -step / 10)
        for candidate in (number(round(start + s, 6)) for s in steps):
            if candidate != current and candidate not in used and _within(candidate, bounds):
                used.append(candidate)
                return candidate
    raise AssertionError("unreachable")


def _within(value: float, bounds: dict[str, Any]) -> bool:
    return (
        ("gt" not in bounds or value > bounds["gt"])
        and ("ge" not in bounds or value >= bounds["ge"])
        and ("lt" not in bounds or value < bounds["lt"])
        and ("le" not in bounds or value <= bounds["le"])
    )


def cli_options(settings: QueueSettings) -> list[str]:
    """`taskq queue create` options that give a queue `settings` (unset ones are omitted)."""
    options: list[str] = []
    for field in setting_fields():
        value = field.value_in(settings)
        if isinstance(value, bool):
            options += [f"--{field.flag}"] if value else []
        elif value is not None:
            options += [f"--{field.flag}", str(value)]
    return options


def taskqueue_spec(settings: QueueSettings) -> dict[str, Any]:
    """The TaskQueue spec (wire form) that gives a queue `settings`, built from the spec's
    fields that hold a setting; fails when a setting has no such field or two."""
    values = {field.path: field.value_in(settings) for field in setting_fields()}
    spec, held = _spec_of(TaskQueueSpec, values)
    assert sorted(held) == sorted(values), f"TaskQueueSpec holds {held}, QueueSettings has {values}"
    return spec


def _spec_of(model: type[BaseModel], values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spec: dict[str, Any] = {}
    held: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        holds = next((m for m in info.metadata if isinstance(m, HoldsSetting)), None)
        if holds is not None:
            held.append(holds.path)
            value = values[holds.path]
            if value is not None:
                spec[key] = round(value) if holds.whole else value
            continue
        for nested in _models_in(info.annotation):
            sub, sub_held = _spec_of(nested, values)
            held += sub_held
            if sub:
                spec[key] = sub
    return spec, held


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    for candidate in get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            yield candidate


def assert_stored(row: Row, settings: QueueSettings) -> None:
    """Each setting's column of the taskq.queues row holds its value in `settings`."""
    wrong = {
        field.column: (row[field.column], field.value_in(settings))
        for field in setting_fields()
        if row[field.column] != field.value_in(settings)
    }
    assert not wrong, f"column: (stored, expected): {wrong}"
