"""TaskQueue: the queue exists in its database with the spec's settings; status shows its
depth."""

from __future__ import annotations

import hashlib

from taskq.errors import InvalidArgumentError, TaskqError, UnknownQueueError
from taskq.store.migrations import MigrationChecksumError
from taskq.webhooks import Event, WebhookSpec
from taskq_operator.api import TaskQueueSpec, TaskQueueStatus, set_condition
from taskq_operator.k8s import NotFoundError
from taskq_operator.reconcile.context import TaskQueueContext, not_ready
from taskq_operator.reconcile.ports import NoDatabaseError, Ports, QueueDatabase


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
        stats = await db.queue_stats(info, ctx.ports.settings.count_cap)
        memory.status_every = db.status_interval(ctx.ports.settings.status_interval)
        await _declare_webhooks(ctx, db, queue)
    except InvalidWebhookError as error:
        return _not_ready(ctx, "InvalidWebhook", str(error))
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


class InvalidWebhookError(ValueError):
    """A webhook of the spec cannot be declared; the message names the field."""


def declared_by(namespace: str, name: str) -> str:
    return f"TaskQueue {namespace}/{name}"


async def _webhook_specs(ctx: TaskQueueContext) -> dict[str, WebhookSpec]:
    """The spec's webhooks with their secrets read; NotFoundError (naming the field) when a
    Secret or its key is missing, InvalidWebhookError when one cannot be declared."""
    specs = {}
    for i, hook in enumerate(ctx.spec.webhooks or []):
        where = f"spec.webhooks[{i}]"
        try:
            secret = await ctx.ports.k8s.secret_value(
                ctx.namespace, hook.secret_ref.name, hook.secret_ref.key
            )
        except NotFoundError as error:
            raise NotFoundError(f"{where}.secretRef: {error}") from None
        try:
            specs[hook.name] = WebhookSpec(
                hook.url,
                secret.strip(),
                tuple(Event(e) for e in hook.events),
                tuple(hook.allow_hosts),
            )
        except InvalidArgumentError as error:
            field = {"secret": "secretRef"}.get(error.field, error.field)
            problem = str(error).split(": ", 1)[-1]
            raise InvalidWebhookError(f"{where}.{field}: {problem}") from None
    if sum(1 for h in ctx.spec.webhooks or [] if h.url is None) > 1:
        raise InvalidWebhookError(
            "spec.webhooks: at most one webhook without url (the signer of task callbacks)"
        )
    return specs


async def _declare_webhooks(ctx: TaskQueueContext, db: QueueDatabase, queue: str) -> None:
    """Once per generation, and again when a webhook's Secret changed."""
    specs = await _webhook_specs(ctx)
    digest = hashlib.sha256(
        repr((ctx.generation, sorted((n, s.secret) for n, s in specs.items()))).encode()
    ).hexdigest()
    if ctx.memory.webhooks_declared == digest:
        return
    await db.declare_webhooks(queue, declared_by(ctx.namespace, ctx.name), specs)
    ctx.memory.webhooks_declared = digest


def _not_ready(ctx: TaskQueueContext, reason: str, message: str) -> TaskQueueStatus:
    return not_ready(ctx, "TaskQueue", reason, message)


async def delete_taskqueue(ports: Ports, namespace: str, name: str, spec: TaskQueueSpec) -> bool:
    """Honour deletionPolicy; True when the queue was dropped. Raises TaskqError (the caller
    retries) when the database cannot be reached for a Delete."""
    ports.metrics.queue_deleted(namespace, name)
    if spec.deletion_policy != "Delete" and not spec.webhooks:
        return False
    db = await ports.databases.database(await ports.dsn(namespace, _secret(spec)))
    # the webhooks it declared go with it, whatever the policy: nobody would manage them
    await db.declare_webhooks(queue_name(namespace, name), declared_by(namespace, name), {})
    if spec.deletion_policy != "Delete":
        return False
    return await db.drop_queue(queue_name(namespace, name))
