"""The worker pools recorded in a queue database (taskq.worker_pools, migration 0024): written by
the operator when a pool changes, read by the API server for the dashboard's queue page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from taskq import jsonutil
from taskq.models import PoolReport, ScalingDecision, WorkerPoolInfo
from taskq.store.sqlfiles import query
from taskq.store.types import Executor

# Decisions kept per pool (taskq.record_worker_pool keeps the same number).
KEPT_DECISIONS = 20


def _decision_json(decision: ScalingDecision) -> dict[str, Any]:
    return {
        "at": decision.at.isoformat(),
        "from": decision.from_replicas,
        "to": decision.to_replicas,
        "reason": decision.reason,
        "message": decision.message,
    }


def _decision(raw: dict[str, Any]) -> ScalingDecision:
    return ScalingDecision(
        at=raw["at"],
        from_replicas=raw["from"],
        to_replicas=raw["to"],
        reason=raw["reason"],
        message=raw["message"],
    )


async def record_worker_pool(
    db: Executor, pool: PoolReport, decisions: Sequence[ScalingDecision]
) -> None:
    """Record the pool as it is now, with `decisions` (newest first) put before those kept."""
    await db.execute(
        query("record_worker_pool"),
        pool.namespace,
        pool.name,
        list(pool.queues),
        pool.autoscaling,
        pool.min_replicas,
        pool.max_replicas,
        pool.desired,
        pool.replicas,
        pool.ready,
        jsonutil.dumps([_decision_json(d) for d in decisions], "decisions"),
    )


async def forget_worker_pool(db: Executor, namespace: str, name: str) -> None:
    await db.execute(query("forget_worker_pool"), namespace, name)


def _info(row: asyncpg.Record) -> WorkerPoolInfo:
    return WorkerPoolInfo(
        namespace=row["namespace"],
        name=row["name"],
        queues=tuple(row["queues"]),
        autoscaling=row["autoscaling"],
        min_replicas=row["min_replicas"],
        max_replicas=row["max_replicas"],
        desired=row["desired"],
        replicas=row["replicas"],
        ready=row["ready"],
        decisions=tuple(_decision(d) for d in jsonutil.loads(row["decisions"])),
        updated_at=row["updated_at"],
    )


async def worker_pools_serving(db: Executor, namespace: str, queue: str) -> list[WorkerPoolInfo]:
    """The pools recorded as serving queue namespace/queue, by name."""
    return [_info(row) for row in await db.fetch(query("worker_pools_serving"), namespace, queue)]
