"""The settings of the worker's connections (its pool, its beat, its listener), by how they
reach PostgreSQL (TASKQ_DB_POOL_MODE)."""

from __future__ import annotations

from taskq.store.pool_mode import PoolMode

# How the worker's connections show in pg_stat_activity.
APPLICATION_NAME = "taskq worker"
# A worker's own writes (claims, outcomes, lease renewals, beats) commit asynchronously:
# delivery is at-least-once, so a write lost when PostgreSQL crashes only means a task runs
# again, and not waiting for the WAL flush on every batch doubles throughput on a durable
# server. Enqueues (the producer's promise) stay synchronous: they never use these sessions.
WORKER_SESSION = {"synchronous_commit": "off", "application_name": APPLICATION_NAME}


def worker_session(mode: PoolMode, statement_timeout: float | None = None) -> dict[str, str]:
    """Settings sent at connect. Through transaction pooling only application_name: PgBouncer
    sets it again on each server connection it lends, and refuses other startup parameters.
    The worker's hot-path functions then commit asynchronously by themselves (migration 0027),
    and only the worker's own deadline bounds a statement (unless the role's settings or
    PgBouncer's query_timeout add one: docs/worker.md)."""
    if mode == "transaction":
        return {"application_name": APPLICATION_NAME}
    if statement_timeout is None:
        return dict(WORKER_SESSION)
    return {**WORKER_SESSION, "statement_timeout": str(int(statement_timeout * 1000))}
