"""One reconcile pass of one object: everything a reconciler decides from, in one value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from taskq_operator.api import TaskQueueSpec, TaskQueueStatus, WorkerPoolSpec, WorkerPoolStatus
from taskq_operator.reconcile.ports import Emit, Ports
from taskq_operator.reconcile.runtime import PoolMemory, QueueMemory

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
