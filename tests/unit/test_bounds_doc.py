"""docs/bounds.md lists the bounds of every user-settable number, through every door. Its
tables are checked here against the models that enforce them (QueueSettings, WorkerSettings,
the WorkerPool and TaskSchedule specs, the per-task maxima), so it cannot drift."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from taskq import models
from taskq.models import setting_fields
from taskq.worker.settings import WorkerSettings, env_name
from taskq_operator.api import TaskScheduleSpec, WorkerPoolSpec
from taskq_operator.api.base import K8sModel
from taskq_operator.api.taskqueue import HoldsSetting, TaskQueueSpec

DOC = (Path(__file__).resolve().parents[2] / "docs" / "bounds.md").read_text()


def _bounds(info: FieldInfo) -> dict[str, Any]:
    return {
        name: getattr(constraint, name)
        for constraint in info.metadata
        for name in ("gt", "ge", "le")
        if hasattr(constraint, name)
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range(bounds: dict[str, Any]) -> str:
    low = f"> {_number(bounds['gt'])}" if "gt" in bounds else _number(bounds["ge"])
    return f"{low} | {_number(bounds['le'])}"


def _default(value: Any) -> str:
    return "none" if value is None else _number(value) if isinstance(value, float) else str(value)


def _spec_paths(model: type[BaseModel], prefix: str) -> dict[str, str]:
    """QueueSettings path -> the TaskQueue field holding it (spec.retry.maxAttempts)."""
    found = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        held = next((m for m in info.metadata if isinstance(m, HoldsSetting)), None)
        if held is not None:
            found[held.path] = prefix + alias
        for kind in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(kind, type) and issubclass(kind, K8sModel):
                found.update(_spec_paths(kind, f"{prefix}{alias}."))
    return found


def _numbers(model: type[BaseModel], prefix: str) -> list[str]:
    """`| spec.concurrency | 1 | 10000 | 10 |` for every bounded number of a spec."""
    rows = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        bounds = _bounds(info)
        if bounds:
            rows.append(f"| {prefix}{alias} | {_range(bounds)} | {_default(info.default)} |")
        for kind in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(kind, type) and issubclass(kind, K8sModel):
                rows += _numbers(kind, f"{prefix}{alias}.")
    return rows


def test_every_queue_setting_is_listed_with_its_doors_and_bounds() -> None:
    spec = _spec_paths(TaskQueueSpec, "spec.")
    for field in setting_fields():
        if not field.bounds:
            continue
        row = (
            f"| {spec[field.path]} | --{field.flag} | {field.column} | {field.path} | "
            f"{_range(field.bounds)} | {_default(field.info.default)} |"
        )
        assert row in DOC, row


def test_every_worker_setting_is_listed() -> None:
    for name, info in WorkerSettings.model_fields.items():
        bounds = _bounds(info)
        if info.annotation in (int, float, float | None):
            assert "le" in bounds, f"{env_name(name)} has no upper bound"
            row = f"| {env_name(name)} | {_range(bounds)} | {_default(info.default)} |"
            assert row in DOC, row


def test_every_workerpool_and_taskschedule_number_is_listed() -> None:
    for row in [*_numbers(WorkerPoolSpec, "spec."), *_numbers(TaskScheduleSpec, "spec.")]:
        assert row in DOC, row


def test_the_per_task_maxima_are_the_models() -> None:
    for value in (
        models.MAX_DELAY_SECONDS,
        models.MAX_TIMEOUT_SECONDS,
        models.MAX_TASK_NAME,
        models.MAX_IDEMPOTENCY_KEY,
    ):
        assert f"| {value} |" in DOC, value
