"""One reconcile pass of one object: everything a reconciler decides from, in one value, and
how a pass that cannot reach its goal says so."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from taskq_operator.api import (
    Condition,
    TaskqApiKeySpec,
    TaskqApiKeyStatus,
    TaskQueueSpec,
    TaskQueueStatus,
    TaskScheduleSpec,
    TaskScheduleStatus,
    WorkerPoolSpec,
    WorkerPoolStatus,
    set_condition,
)
from taskq_operator.reconcile.ports import Emit, Ports
from taskq_operator.reconcile.runtime import KeyMemory, PoolMemory, QueueMemory, ScheduleMemory

log = logging.getLogger("taskq_operator.reconcile")

SpecT = TypeVar("SpecT")
StatusT = TypeVar("StatusT")
MemoryT = TypeVar("MemoryT")


@dataclass(frozen=True)
class Context(Generic[SpecT, StatusT, MemoryT]):
    ports: Ports
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SpecT
    status: StatusT
    """The status as last written: the reconciler returns the new one."""
    memory: MemoryT
    """What the operator remembers of the object between passes (mutated in place)."""
    emit: Emit
    now: datetime


TaskQueueContext = Context[TaskQueueSpec, TaskQueueStatus, QueueMemory]
WorkerPoolContext = Context[WorkerPoolSpec, WorkerPoolStatus, PoolMemory]
ApiKeyContext = Context[TaskqApiKeySpec, TaskqApiKeyStatus, KeyMemory]
ScheduleContext = Context[TaskScheduleSpec, TaskScheduleStatus, ScheduleMemory]


class Conditioned(Protocol):
    """A status with a Ready condition among its conditions."""

    @property
    def conditions(self) -> list[Condition]: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        ...


ConditionedT = TypeVar("ConditionedT", bound=Conditioned)


def not_ready(
    ctx: Context[Any, ConditionedT, Any],
    kind: str,
    reason: str,
    message: str,
    *,
    status: ConditionedT | None = None,
) -> ConditionedT:
    """`status` (by default the last one) with Ready=False for `reason`; a Warning Event and
    a log line only when the reason is new, not on every pass."""
    status = ctx.status if status is None else status
    previous = next((c for c in ctx.status.conditions if c.type == "Ready"), None)
    if previous is None or previous.reason != reason:
        ctx.emit("Warning", reason, message)
        log.warning("%s %s/%s not ready: %s", kind, ctx.namespace, ctx.name, message)
    ctx.ports.metrics.reconcile_error(kind, reason)
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="False",
        reason=reason,
        message=message,
        now=ctx.now,
        observed_generation=ctx.generation,
    )
    return status.model_copy(update={"conditions": conditions})
