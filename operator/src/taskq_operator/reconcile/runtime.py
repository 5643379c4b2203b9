"""The operator's wiring (settings and ports) and its memory of things the API does not
store (autoscaling history, what was provisioned), per object."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from taskq.models import PoolReport, ScalingDecision
from taskq_operator.autoscaling import Recommendation
from taskq_operator.databases import Databases
from taskq_operator.k8s import KubernetesPort
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.reconcile.ports import Ports
from taskq_operator.settings import OperatorSettings


@dataclass(frozen=True)
class Refusal:
    """The API server refused this pool's Deployment template (its digest): the same template
    is not sent again before retry_at, which backs off with each refusal."""

    template: str
    message: str
    attempts: int
    retry_at: datetime


@dataclass
class PoolMemory:
    history: tuple[Recommendation, ...] = ()
    refused: Refusal | None = None
    # what was last recorded in taskq.worker_pools, and in which database (its DSN); the
    # scaling decisions not recorded yet (newest first: the database was unreachable)
    recorded: PoolReport | None = None
    recorded_in: str | None = None
    unrecorded: list[ScalingDecision] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class QueueMemory:
    provisioned_generation: int | None = None
    # what the webhooks were last declared from (the generation and the secrets' digest):
    # declared again when either changes, a rotated Secret included
    webhooks_declared: str | None = None
    # seconds until the next status reading, as the queue's database paces them
    status_every: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ScheduleMemory:
    declared_generation: int | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class KeyMemory:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # kopf runs the deletion handler while the daemon may still be in a pass: the lock keeps
    # a pass from issuing a key after the revocation, and `revoked` every later pass
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    revoked: bool = False


@dataclass
class Runtime:
    settings: OperatorSettings
    k8s: KubernetesPort
    databases: Databases
    metrics: OperatorMetrics
    pools: dict[str, PoolMemory] = field(default_factory=dict)  # by WorkerPool uid
    queues: dict[str, QueueMemory] = field(default_factory=dict)  # by TaskQueue uid
    keys: dict[str, KeyMemory] = field(default_factory=dict)  # by TaskqApiKey uid
    schedules: dict[str, ScheduleMemory] = field(default_factory=dict)  # by TaskSchedule uid
    # what is undone after an object's deletion, outside its daemon (kopf cancels a daemon that
    # does not exit at once): held here until done
    cleanups: set[asyncio.Task[None]] = field(default_factory=set)

    @cached_property
    def ports(self) -> Ports:
        """What the reconcilers may use of it."""
        return Ports(self.settings, self.k8s, self.databases, self.metrics)
