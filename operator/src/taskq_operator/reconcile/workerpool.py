"""WorkerPool: a Deployment of workers for the pool's queues, scaled on their depth."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from taskq.errors import TaskqError, UnknownQueueError
from taskq.models import QueueStats
from taskq.names import QueueName
from taskq.store import queues as queue_store
from taskq.store.dberrors import translated
from taskq.store.types import Executor
from taskq_operator.api import (
    DatabaseRef,
    SecretKeyRef,
    TaskQueueSpec,
    WorkerPoolSpec,
    WorkerPoolStatus,
    set_condition,
)
from taskq_operator.autoscaling import Decision, decide, decide_external
from taskq_operator.k8s import DeploymentState
from taskq_operator.reconcile.runtime import (
    Emit,
    NoDatabaseError,
    NotFoundError,
    PoolMemory,
    Runtime,
)
from taskq_operator.resources import (
    MixedDatabasesError,
    PoolRef,
    default_dsn_ref,
    default_dsn_secret,
    label_selector,
    worker_deployment,
    worker_dsn,
)

log = logging.getLogger("taskq_operator.workerpool")


class PoolProblem(Exception):
    """Something the user must fix before the pool can scale; reason is a CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Queues:
    dsn: str
    dsn_ref: SecretKeyRef
    default_database: bool
    paused: frozenset[str]


async def _queues(rt: Runtime, pool: PoolRef, spec: WorkerPoolSpec) -> _Queues:
    databases: dict[str, DatabaseRef | None] = {}
    paused = set()
    for queue in spec.queues:
        found = await rt.k8s.task_queue(pool.namespace, queue)
        if found is None:
            raise PoolProblem(
                "QueueNotFound",
                f"TaskQueue {pool.namespace}/{queue} does not "
                "exist: create it, or remove it from spec.queues",
            )
        queue_spec = TaskQueueSpec.model_validate(found.get("spec") or {})
        databases[queue] = queue_spec.database
        if queue_spec.paused:
            paused.add(queue)
    try:
        ref = worker_dsn(databases)
    except MixedDatabasesError as error:
        raise PoolProblem("MixedDatabases", str(error)) from None
    try:
        dsn = await rt.dsn(pool.namespace, (ref.name, ref.key) if ref else None)
    except (NotFoundError, NoDatabaseError) as error:
        raise PoolProblem("NoDatabase", str(error)) from None
    return _Queues(dsn, ref or default_dsn_ref(pool.name), ref is None, frozenset(paused))


async def _depth(
    rt: Runtime, pool: PoolRef, spec: WorkerPoolSpec, queues: _Queues, memory: PoolMemory
) -> list[QueueStats] | None:
    """One reading per queue, or None (hold replicas) when any cannot be read. A paused
    queue's ready tasks are not demand: no worker may claim them."""
    try:
        client = await rt.databases.client(queues.dsn)
        readings = await _readings(rt, client.pool, pool, spec, queues, memory)
    except TaskqError as error:
        log.warning("pool %s/%s: depth unreadable: %s", pool.namespace, pool.name, error)
        return None
    return readings


async def _readings(
    rt: Runtime,
    db: Executor,
    pool: PoolRef,
    spec: WorkerPoolSpec,
    queues: _Queues,
    memory: PoolMemory,
) -> list[QueueStats]:
    with translated():
        readings = []
        for queue in spec.queues:
            info = await queue_store.get_queue(db, QueueName(pool.namespace, queue))
            if info is None:
                raise UnknownQueueError(f"{pool.namespace}/{queue}")
            rt.databases.subscribe(queues.dsn, info.id, pool.uid, memory.wake.set)
            stats = await queue_store.queue_stats(db, info.id)
            if queue in queues.paused:
                stats = stats.model_copy(update={"ready": 0})
            readings.append(stats)
    return readings


async def reconcile_workerpool(
    rt: Runtime,
    pool: PoolRef,
    generation: int,
    spec: WorkerPoolSpec,
    status: WorkerPoolStatus,
    memory: PoolMemory,
    emit: Emit,
    now: datetime,
) -> WorkerPoolStatus:
    deployment = await rt.k8s.deployment_state(pool.namespace, pool.name)
    current = deployment.spec_replicas if deployment else 0
    problem: PoolProblem | None = None
    queues: _Queues | None = None
    try:
        queues = await _queues(rt, pool, spec)
    except PoolProblem as error:
        problem = error

    if spec.autoscaling.mode == "External":
        decision = decide_external(spec.replicas, spec.autoscaling, current, now)
    else:
        stats = await _depth(rt, pool, spec, queues, memory) if queues else None
        decision = decide(stats, spec.autoscaling, current, memory.history, now)
        memory.history = decision.history
    # Without its queues' database the Deployment cannot be built; an existing one keeps
    # running as it is (never scaled to zero on an error).
    if queues is not None:
        if queues.default_database:
            await rt.k8s.apply(default_dsn_secret(pool, queues.dsn))
        await rt.k8s.apply(
            worker_deployment(pool, spec, replicas=decision.desired, dsn=queues.dsn_ref)
        )
        if decision.desired != current:
            emit("Normal", decision.reason, decision.message)
            log.info("pool %s/%s: %s", pool.namespace, pool.name, decision.message)
    rt.metrics.pool_decided(
        pool.namespace, pool.name, decision, current, deployment.ready_replicas if deployment else 0
    )
    return _status(rt, pool, generation, status, decision, current, deployment, problem, emit, now)


def _status(
    rt: Runtime,
    pool: PoolRef,
    generation: int,
    status: WorkerPoolStatus,
    decision: Decision,
    current: int,
    state: DeploymentState | None,
    problem: PoolProblem | None,
    emit: Emit,
    now: datetime,
) -> WorkerPoolStatus:
    ready = state.ready_replicas if state else 0
    update: dict[str, object] = {
        "observed_generation": generation,
        "replicas": state.replicas if state else 0,
        "ready_replicas": ready,
        "desired_replicas": decision.desired,
        "selector": label_selector(pool.name),
    }
    if decision.desired != current or status.last_scale_reason is None:
        update.update(
            last_scale_time=now,
            last_scale_reason=decision.reason,
            last_scale_message=decision.message[:1024],
        )
    condition: tuple[Literal["True", "False"], str, str]
    if problem is not None:
        if not any(c.type == "Ready" and c.reason == problem.reason for c in status.conditions):
            emit("Warning", problem.reason, str(problem))
        rt.metrics.reconcile_error("WorkerPool", problem.reason)
        condition = ("False", problem.reason, str(problem))
    elif ready >= decision.desired:
        condition = ("True", "ReplicasReady", f"{ready} of {decision.desired} workers ready")
    else:
        condition = ("False", "ReplicasNotReady", f"{ready} of {decision.desired} workers ready")
    update["conditions"] = set_condition(
        status.conditions,
        type="Ready",
        status=condition[0],
        reason=condition[1],
        message=condition[2],
        now=now,
        observed_generation=generation,
    )
    return status.model_copy(update=update)
