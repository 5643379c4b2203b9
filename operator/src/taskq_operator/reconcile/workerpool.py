"""WorkerPool: a Deployment of workers for the pool's queues, scaled on their depth."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from taskq.errors import TaskqError
from taskq.models import PoolReport, QueueStats, ScalingDecision
from taskq.store.pools import KEPT_DECISIONS
from taskq_operator.api import (
    DatabaseRef,
    SecretKeyRef,
    TaskQueueSpec,
    WorkerPoolStatus,
    set_condition,
)
from taskq_operator.autoscaling import Decision, count_cap, decide, decide_external
from taskq_operator.k8s import DeploymentState, InvalidObjectError, Manifest, NotFoundError
from taskq_operator.pool_fields import pool_field
from taskq_operator.reconcile.context import WorkerPoolContext
from taskq_operator.reconcile.ports import NoDatabaseError, Ports
from taskq_operator.reconcile.runtime import PoolMemory, Refusal
from taskq_operator.resources import (
    MixedDatabasesError,
    ObjectRef,
    default_dsn_ref,
    default_dsn_secret,
    label_selector,
    worker_deployment,
    worker_dsn,
)

log = logging.getLogger("taskq_operator.workerpool")

# A refused template is sent again after 5 s, then 10, 20... up to 5 minutes: the API server's
# verdict rarely changes while the spec does not (a spec change is tried at once).
REFUSAL_RETRY_FIRST = 5.0
REFUSAL_RETRY_MAX = 300.0


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


async def _queues(ctx: WorkerPoolContext) -> _Queues:
    databases: dict[str, DatabaseRef | None] = {}
    paused = set()
    for queue in ctx.spec.queues:
        found = await ctx.ports.k8s.task_queue(ctx.namespace, queue)
        if found is None:
            raise PoolProblem(
                "QueueNotFound",
                f"TaskQueue {ctx.namespace}/{queue} does not "
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
        dsn = await ctx.ports.dsn(ctx.namespace, (ref.name, ref.key) if ref else None)
    except (NotFoundError, NoDatabaseError) as error:
        raise PoolProblem("NoDatabase", str(error)) from None
    return _Queues(dsn, ref or default_dsn_ref(ctx.name), ref is None, frozenset(paused))


async def _depth(ctx: WorkerPoolContext, queues: _Queues) -> list[QueueStats] | None:
    """One reading per queue, or None (hold replicas) when any cannot be read. A paused
    queue's ready tasks are not demand: no worker may claim them."""
    readings = []
    try:
        db = await ctx.ports.databases.database(queues.dsn)
        for queue in ctx.spec.queues:
            info = await db.get_queue(f"{ctx.namespace}/{queue}")
            ctx.ports.databases.subscribe(queues.dsn, info.id, ctx.uid, ctx.memory.wake.set)
            stats = await db.queue_stats(info, count_cap(ctx.spec.autoscaling))
            if queue in queues.paused:
                stats = stats.model_copy(update={"ready": 0})
            readings.append(stats)
    except TaskqError as error:
        log.warning("pool %s/%s: depth unreadable: %s", ctx.namespace, ctx.name, error)
        return None
    return readings


async def reconcile_workerpool(ctx: WorkerPoolContext) -> WorkerPoolStatus:
    async with ctx.memory.lock:  # the autoscaling history is read, then replaced
        return await _reconcile(ctx)


async def _reconcile(ctx: WorkerPoolContext) -> WorkerPoolStatus:
    k8s = ctx.ports.k8s
    pool = ObjectRef(name=ctx.name, namespace=ctx.namespace, uid=ctx.uid)
    deployment = await k8s.deployment_state(ctx.namespace, ctx.name)
    current = deployment.spec_replicas if deployment else 0
    problem: PoolProblem | None = None
    queues: _Queues | None = None
    try:
        queues = await _queues(ctx)
    except PoolProblem as error:
        problem = error

    autoscaling = ctx.spec.autoscaling
    if autoscaling.mode == "External":
        decision = decide_external(ctx.spec.replicas, autoscaling, current, ctx.now)
    else:
        stats = await _depth(ctx, queues) if queues else None
        decision = decide(stats, autoscaling, current, ctx.memory.history, ctx.now)
        ctx.memory.history = decision.history
    # Without its queues' database the Deployment cannot be built; an existing one keeps
    # running as it is (never scaled to zero on an error).
    scaled = False
    if queues is not None:
        if queues.default_database and ctx.spec.pooler is None:  # what the pods read
            await k8s.apply(default_dsn_secret(pool, queues.dsn))
        manifest = worker_deployment(pool, ctx.spec, replicas=decision.desired, dsn=queues.dsn_ref)
        problem = await _apply_deployment(ctx, manifest)
        scaled = decision.desired != current and (problem is None or deployment is not None)
        if scaled and problem is not None:
            # the workers keep the last template the API server accepted, and their scaling
            await k8s.scale(ctx.namespace, ctx.name, decision.desired)
        if scaled:
            ctx.emit("Normal", decision.reason, decision.message)
            log.info("pool %s/%s: %s", ctx.namespace, ctx.name, decision.message)
    ready = deployment.ready_replicas if deployment else 0
    ctx.ports.metrics.pool_decided(ctx.namespace, ctx.name, decision, current, ready)
    if scaled:
        ctx.memory.unrecorded.insert(
            0,
            ScalingDecision(
                at=ctx.now,
                from_replicas=current,
                to_replicas=decision.desired,
                reason=decision.reason,
                message=decision.message[:1024],
            ),
        )
        del ctx.memory.unrecorded[KEPT_DECISIONS:]
    if queues is not None:
        await _record(ctx, queues.dsn, decision, deployment)
    return _status(ctx, decision, scaled, deployment, problem)


async def _record(
    ctx: WorkerPoolContext, dsn: str, decision: Decision, deployment: DeploymentState | None
) -> None:
    """Record the pool in its queues' database for the dashboard (taskq.worker_pools), when
    anything shown changed since the last record: never once per poll. A failure is logged and
    tried again at the next pass, the decisions meanwhile kept."""
    memory = ctx.memory
    autoscaling = ctx.spec.autoscaling
    report = PoolReport(
        namespace=ctx.namespace,
        name=ctx.name,
        queues=tuple(ctx.spec.queues),
        autoscaling=autoscaling.mode,
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        desired=decision.desired,
        replicas=deployment.replicas if deployment else 0,
        ready=deployment.ready_replicas if deployment else 0,
    )
    if report == memory.recorded and dsn == memory.recorded_in and not memory.unrecorded:
        return
    try:
        db = await ctx.ports.databases.database(dsn)
        await db.record_pool(report, memory.unrecorded)
        if memory.recorded_in is not None and memory.recorded_in != dsn:
            old = await ctx.ports.databases.database(memory.recorded_in)
            await old.forget_pool(ctx.namespace, ctx.name)
    except TaskqError as error:
        log.warning(
            "pool %s/%s: not recorded for the dashboard: %s", ctx.namespace, ctx.name, error
        )
        return
    memory.recorded, memory.recorded_in = report, dsn
    memory.unrecorded.clear()


async def forget_workerpool(ports: Ports, namespace: str, name: str, memory: PoolMemory) -> None:
    """The pool is gone: remove its record from the database it was recorded in (best effort:
    a database that cannot be reached keeps a stale row, shown with its time)."""
    if memory.recorded_in is None:
        return
    try:
        db = await ports.databases.database(memory.recorded_in)
        await db.forget_pool(namespace, name)
    except TaskqError as error:
        log.warning("pool %s/%s: its record stays: %s", namespace, name, error)
    memory.recorded = memory.recorded_in = None


async def _apply_deployment(ctx: WorkerPoolContext, manifest: Manifest) -> PoolProblem | None:
    """Apply the worker Deployment; a PoolProblem naming the pool's fields when the API
    server refuses it. A refused template is not sent again until its retry is due."""
    template = _template_digest(manifest)
    refused = ctx.memory.refused
    if refused is not None and refused.template == template and ctx.now < refused.retry_at:
        return PoolProblem("InvalidPodTemplate", refused.message)
    try:
        await ctx.ports.k8s.apply(manifest)
    except InvalidObjectError as error:
        message = refusal_message(error)
        if refused is None or refused.message != message:
            log.warning("pool %s/%s: %s", ctx.namespace, ctx.name, message)
        attempts = refused.attempts + 1 if refused and refused.template == template else 0
        delay = min(REFUSAL_RETRY_FIRST * 2**attempts, REFUSAL_RETRY_MAX)
        ctx.memory.refused = Refusal(
            template, message, attempts, ctx.now + timedelta(seconds=delay)
        )
        return PoolProblem("InvalidPodTemplate", message)
    ctx.memory.refused = None
    return None


def _template_digest(manifest: Manifest) -> str:
    """The Deployment as built, its replicas aside: what the API server judges."""
    spec = {k: v for k, v in manifest["spec"].items() if k != "replicas"}
    body = json.dumps({**manifest, "spec": spec}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def refusal_message(error: InvalidObjectError) -> str:
    """The API server's verdict on the worker Deployment, in the WorkerPool's own fields."""
    parts = []
    for found in error.errors:
        field = pool_field(found.field) if found.field else None
        if field is not None:
            parts.append(f"{field}: {found.message}")
        elif found.field:
            parts.append(f"{found.field} (set by the operator): {found.message}")
        else:
            parts.append(found.message)
    return (
        "the API server refused the worker Deployment built from this pool: "
        + "; ".join(parts)
        + ". Fix the WorkerPool's spec"
    )


def _status(
    ctx: WorkerPoolContext,
    decision: Decision,
    scaled: bool,
    state: DeploymentState | None,
    problem: PoolProblem | None,
) -> WorkerPoolStatus:
    status = ctx.status
    ready = state.ready_replicas if state else 0
    update: dict[str, object] = {
        "observed_generation": ctx.generation,
        "replicas": state.replicas if state else 0,
        "ready_replicas": ready,
        "desired_replicas": decision.desired,
        "selector": label_selector(ctx.name),
    }
    # the first pass records its decision, unless it was a change that could not be made
    unrealized = decision.desired != (state.spec_replicas if state else 0) and not scaled
    if scaled or (status.last_scale_reason is None and not unrealized):
        update.update(
            last_scale_time=ctx.now,
            last_scale_reason=decision.reason,
            last_scale_message=decision.message[:1024],
        )
    condition: tuple[Literal["True", "False"], str, str]
    if problem is not None:
        # one Event per distinct problem, not one per pass
        if not any(
            c.type == "Ready" and c.reason == problem.reason and c.message == str(problem)
            for c in status.conditions
        ):
            ctx.emit("Warning", problem.reason, str(problem))
        ctx.ports.metrics.reconcile_error("WorkerPool", problem.reason)
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
        now=ctx.now,
        observed_generation=ctx.generation,
    )
    return status.model_copy(update=update)
