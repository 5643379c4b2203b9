"""TaskQueue: the queue exists in its database with the spec's settings; status shows its
depth; the queue's maintenance runs here so users never schedule it."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from taskq.errors import TaskqError, UnknownQueueError
from taskq.store import execution
from taskq.store import queues as queue_store
from taskq.store.dberrors import translated
from taskq.store.migrations import MigrationChecksumError
from taskq_operator.api import TaskQueueSpec, TaskQueueStatus, set_condition
from taskq_operator.reconcile.runtime import (
    Emit,
    NoDatabaseError,
    NotFoundError,
    QueueMemory,
    Runtime,
)

log = logging.getLogger("taskq_operator.taskqueue")


def queue_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _secret(spec: TaskQueueSpec) -> tuple[str, str] | None:
    ref = spec.database.secret_key_ref if spec.database else None
    return (ref.name, ref.key) if ref else None


async def reconcile_taskqueue(
    rt: Runtime,
    namespace: str,
    name: str,
    generation: int,
    spec: TaskQueueSpec,
    status: TaskQueueStatus,
    memory: QueueMemory,
    emit: Emit,
    now: datetime,
) -> TaskQueueStatus:
    """Provision (when the spec changed or was never applied), refresh depth, run maintenance.
    Failures become Ready=False with a reason and a message naming the cause."""
    queue = queue_name(namespace, name)
    try:
        client = await rt.databases.client(await rt.dsn(namespace, _secret(spec)))
        with translated(queue):
            if memory.provisioned_generation != generation:
                info = await client.ensure_queue(queue, spec.queue_settings())
                if memory.provisioned_generation is None and status.observed_generation is None:
                    emit("Normal", "Provisioned", f"queue {queue} created in its database")
                elif memory.provisioned_generation is not None:
                    emit("Normal", "Configured", f"queue {queue} settings applied")
                memory.provisioned_generation = generation
            else:
                info = await client.get_queue(queue)
            if time.monotonic() - memory.last_maintenance >= rt.settings.maintenance_interval:
                memory.last_maintenance = time.monotonic()
                rescued = await execution.rescue_expired(client.pool, info.id)
                await execution.purge_finished(client.pool, info.id)
                if rescued:
                    emit("Normal", "LeasesRescued", f"{rescued} tasks of crashed workers retried")
            stats = await queue_store.queue_stats(client.pool, info.id)
    except UnknownQueueError:
        # dropped behind the operator's back: provision it again on the next pass
        memory.provisioned_generation = None
        return _not_ready(
            rt,
            status,
            queue,
            "QueueMissing",
            f"queue {queue} was dropped from its database; recreating it",
            generation,
            now,
            emit,
        )
    except MigrationChecksumError as error:
        return _not_ready(rt, status, queue, "SchemaConflict", str(error), generation, now, emit)
    except NotFoundError as error:
        return _not_ready(rt, status, queue, "SecretNotFound", str(error), generation, now, emit)
    except NoDatabaseError as error:
        return _not_ready(rt, status, queue, "NoDatabase", str(error), generation, now, emit)
    except TaskqError as error:
        return _not_ready(
            rt, status, queue, "DatabaseUnavailable", str(error), generation, now, emit
        )
    rt.metrics.queue_observed(namespace, name, stats)
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="True",
        reason="Provisioned",
        message=f"queue {queue} is ready",
        now=now,
        observed_generation=generation,
    )
    return status.with_stats(stats).model_copy(
        update={"conditions": conditions, "observed_generation": generation}
    )


def _not_ready(
    rt: Runtime,
    status: TaskQueueStatus,
    queue: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    emit: Emit,
) -> TaskQueueStatus:
    previous = next((c for c in status.conditions if c.type == "Ready"), None)
    if previous is None or previous.reason != reason:
        emit("Warning", reason, message)
        log.warning("queue %s not ready: %s", queue, message)
    rt.metrics.reconcile_error("TaskQueue", reason)
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="False",
        reason=reason,
        message=message,
        now=now,
        observed_generation=generation,
    )
    return status.model_copy(update={"conditions": conditions})


async def delete_taskqueue(rt: Runtime, namespace: str, name: str, spec: TaskQueueSpec) -> bool:
    """Honour deletionPolicy; True when the queue was dropped. Raises TaskqError (the caller
    retries) when the database cannot be reached for a Delete."""
    rt.metrics.queue_deleted(namespace, name)
    if spec.deletion_policy != "Delete":
        return False
    client = await rt.databases.client(await rt.dsn(namespace, _secret(spec)))
    return await client.drop_queue(queue_name(namespace, name))
