"""TaskQueue: the queue exists in its database with the spec's settings; status shows its
depth."""

from __future__ import annotations

from taskq.errors import TaskqError, UnknownQueueError
from taskq.store.migrations import MigrationChecksumError
from taskq_operator.api import TaskQueueSpec, TaskQueueStatus, set_condition
from taskq_operator.k8s import NotFoundError
from taskq_operator.reconcile.context import TaskQueueContext, not_ready
from taskq_operator.reconcile.ports import NoDatabaseError, Ports


def queue_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _secret(spec: TaskQueueSpec) -> tuple[str, str] | None:
    ref = spec.database.secret_key_ref if spec.database else None
    return (ref.name, ref.key) if ref else None


async def reconcile_taskqueue(ctx: TaskQueueContext) -> TaskQueueStatus:
    """Provision (when the spec changed or was never applied), refresh depth. Failures become
    Ready=False with a reason and a message naming the cause."""
    queue = queue_name(ctx.namespace, ctx.name)
    memory, status = ctx.memory, ctx.status
    try:
        db = await ctx.ports.databases.database(
            await ctx.ports.dsn(ctx.namespace, _secret(ctx.spec))
        )
        if memory.provisioned_generation != ctx.generation:
            info = await db.ensure_queue(queue, ctx.spec.queue_settings())
            if memory.provisioned_generation is None and status.observed_generation is None:
                ctx.emit("Normal", "Provisioned", f"queue {queue} created in its database")
            elif memory.provisioned_generation is not None:
                ctx.emit("Normal", "Configured", f"queue {queue} settings applied")
            memory.provisioned_generation = ctx.generation
        else:
            info = await db.get_queue(queue)
        stats = await db.queue_stats(info)
    except UnknownQueueError:
        # dropped behind the operator's back: provision it again on the next pass
        memory.provisioned_generation = None
        return _not_ready(
            ctx, "QueueMissing", f"queue {queue} was dropped from its database; recreating it"
        )
    except MigrationChecksumError as error:
        return _not_ready(ctx, "SchemaConflict", str(error))
    except NotFoundError as error:
        return _not_ready(ctx, "SecretNotFound", str(error))
    except NoDatabaseError as error:
        return _not_ready(ctx, "NoDatabase", str(error))
    except TaskqError as error:
        return _not_ready(ctx, "DatabaseUnavailable", str(error))
    ctx.ports.metrics.queue_observed(ctx.namespace, ctx.name, stats)
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="True",
        reason="Provisioned",
        message=f"queue {queue} is ready",
        now=ctx.now,
        observed_generation=ctx.generation,
    )
    return status.with_stats(stats).model_copy(
        update={"conditions": conditions, "observed_generation": ctx.generation}
    )


def _not_ready(ctx: TaskQueueContext, reason: str, message: str) -> TaskQueueStatus:
    return not_ready(ctx, "TaskQueue", reason, message)


async def delete_taskqueue(ports: Ports, namespace: str, name: str, spec: TaskQueueSpec) -> bool:
    """Honour deletionPolicy; True when the queue was dropped. Raises TaskqError (the caller
    retries) when the database cannot be reached for a Delete."""
    ports.metrics.queue_deleted(namespace, name)
    if spec.deletion_policy != "Delete":
        return False
    db = await ports.databases.database(await ports.dsn(namespace, _secret(spec)))
    return await db.drop_queue(queue_name(namespace, name))
