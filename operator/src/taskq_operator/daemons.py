"""The daemon of each TaskQueue, WorkerPool and TaskqApiKey: it runs the object's reconciler on
a period and whenever it is woken (a spec change; for pools, tasks becoming ready in one of
their queues), writes the status, and finishes a deletion kopf lost track of. Reacting to
actual state this way, not only to events, is what lets a pool wake from zero within a second
of a burst, and a key come back into a Secret someone deleted.

One loop serves every kind; a `Kind` holds what differs between them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from taskq.errors import TaskqError
from taskq_operator.api import (
    TaskqApiKeySpec,
    TaskqApiKeyStatus,
    TaskQueueSpec,
    TaskQueueStatus,
    TaskScheduleSpec,
    TaskScheduleStatus,
    WorkerPoolSpec,
    WorkerPoolStatus,
)
from taskq_operator.k8s import NotFoundError
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.reconcile.apikey import (
    SETTLED_REASONS,
    delete_api_key,
    reconcile_api_key,
)
from taskq_operator.reconcile.context import (
    ApiKeyContext,
    Context,
    ScheduleContext,
    TaskQueueContext,
    WorkerPoolContext,
)
from taskq_operator.reconcile.ports import Emit, NoDatabaseError
from taskq_operator.reconcile.runtime import (
    KeyMemory,
    PoolMemory,
    QueueMemory,
    Runtime,
    ScheduleMemory,
)
from taskq_operator.reconcile.taskqueue import delete_taskqueue, reconcile_taskqueue
from taskq_operator.reconcile.taskschedule import delete_schedule, reconcile_schedule
from taskq_operator.reconcile.workerpool import forget_workerpool, reconcile_workerpool

log = logging.getLogger("taskq_operator")

FINALIZER = "taskq.dev/finalizer"
# Retries of a failed pass come sooner than the period, and back off up to it.
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
# kopf stops a deleted object's daemon within its cancellation_timeout (5 s); one still running
# this long after its object was marked for deletion was orphaned (see _Orphan).
ORPHANED_AFTER = 15.0  # seconds


class Memory(Protocol):
    wake: asyncio.Event


SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)
MemoryT = TypeVar("MemoryT", bound=Memory)


@dataclass(frozen=True)
class Kind(Generic[SpecT, StatusT, MemoryT]):
    """What the daemons of one kind do differently."""

    name: str
    plural: str
    spec_model: type[SpecT]
    status_model: type[StatusT]
    memories: Callable[[Runtime], dict[str, MemoryT]]
    """The operator's memory of each object, by uid: it outlives a restarted daemon."""
    new_memory: Callable[[], MemoryT]
    reconcile: Callable[[Context[SpecT, StatusT, MemoryT]], Awaitable[StatusT]]
    next_pass: Callable[[Context[SpecT, StatusT, MemoryT], StatusT], float | None]
    """Seconds until the next pass, or None for "not healthy yet" (retried sooner)."""
    finish_deletion: Callable[[Context[SpecT, StatusT, MemoryT]], Awaitable[object]]
    """The work of kopf's deletion handlers, for a deletion kopf lost track of."""
    forget: Callable[[OperatorMetrics, str, str], None]
    """Remove the object's metrics (namespace, name) once its daemon stops for good."""
    gone: Callable[[Runtime, MemoryT, str, str], Awaitable[None]] = lambda *_: _nothing_more()
    """What else to undo once the object is deleted (runtime, memory, namespace, name)."""


async def _nothing(_: WorkerPoolContext) -> None:
    return None


async def _nothing_more() -> None:
    return None


async def _forget_pool(runtime: Runtime, memory: PoolMemory, namespace: str, name: str) -> None:
    await forget_workerpool(runtime.ports, namespace, name, memory)


def _queue_next_pass(ctx: TaskQueueContext, status: TaskQueueStatus) -> float | None:
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    if not ready:
        return None
    return ctx.memory.status_every or ctx.ports.settings.status_interval


def _pool_next_pass(ctx: WorkerPoolContext, _: WorkerPoolStatus) -> float:
    return float(ctx.spec.autoscaling.poll_interval_seconds)


def _key_next_pass(ctx: ApiKeyContext, status: TaskqApiKeyStatus) -> float | None:
    """The period once the key is ready, or when only the user can change what is wrong;
    sooner after a failure that may pass (the database, a conflict)."""
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    settled = ready is not None and ready.reason in SETTLED_REASONS
    return ctx.ports.settings.key_interval if settled else None


def _schedule_next_pass(ctx: ScheduleContext, status: TaskScheduleStatus) -> float | None:
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    return ctx.ports.settings.status_interval if ready else None


async def _delete_schedule(ctx: ScheduleContext) -> None:
    await delete_schedule(ctx.ports, ctx.namespace, ctx.name, ctx.spec, ctx.status)


async def _drop_queue(ctx: TaskQueueContext) -> None:
    await delete_taskqueue(ctx.ports, ctx.namespace, ctx.name, ctx.spec)


async def _revoke_key(ctx: ApiKeyContext) -> None:
    await delete_api_key(ctx.ports, ctx.namespace, ctx.name, ctx.spec, ctx.memory)


def _no_metrics(_metrics: OperatorMetrics, _namespace: str, _name: str) -> None:
    """TaskqApiKeys and TaskSchedules have no series of their own (their errors are counted
    by kind and reason, ticks by the scheduler)."""


TASKQUEUES = Kind(
    name="TaskQueue",
    plural="taskqueues",
    spec_model=TaskQueueSpec,
    status_model=TaskQueueStatus,
    memories=lambda runtime: runtime.queues,
    new_memory=QueueMemory,
    reconcile=reconcile_taskqueue,
    next_pass=_queue_next_pass,
    finish_deletion=_drop_queue,
    forget=OperatorMetrics.queue_deleted,
)
WORKERPOOLS = Kind(
    name="WorkerPool",
    plural="workerpools",
    spec_model=WorkerPoolSpec,
    status_model=WorkerPoolStatus,
    memories=lambda runtime: runtime.pools,
    new_memory=PoolMemory,
    reconcile=reconcile_workerpool,
    next_pass=_pool_next_pass,
    finish_deletion=_nothing,  # its Deployment and Secret go with it (owner references)
    forget=OperatorMetrics.pool_deleted,
    gone=_forget_pool,  # its row in taskq.worker_pools, which only the operator writes
)
APIKEYS = Kind(
    name="TaskqApiKey",
    plural="taskqapikeys",
    spec_model=TaskqApiKeySpec,
    status_model=TaskqApiKeyStatus,
    memories=lambda runtime: runtime.keys,
    new_memory=KeyMemory,
    reconcile=reconcile_api_key,
    next_pass=_key_next_pass,
    finish_deletion=_revoke_key,
    forget=_no_metrics,
)
TASKSCHEDULES = Kind(
    name="TaskSchedule",
    plural="taskschedules",
    spec_model=TaskScheduleSpec,
    status_model=TaskScheduleStatus,
    memories=lambda runtime: runtime.schedules,
    new_memory=ScheduleMemory,
    reconcile=reconcile_schedule,
    next_pass=_schedule_next_pass,
    finish_deletion=_delete_schedule,
    forget=_no_metrics,
)
KINDS: tuple[Kind[Any, Any, Any], ...] = (TASKQUEUES, WORKERPOOLS, APIKEYS, TASKSCHEDULES)


def wake(runtime: Runtime, kind: Kind[Any, Any, Any], uid: str) -> None:
    """Start the object's next pass now (its spec changed)."""
    memory = kind.memories(runtime).get(uid)
    if memory is not None:
        memory.wake.set()


async def run(
    runtime: Runtime,
    kind: Kind[SpecT, StatusT, MemoryT],
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
) -> None:
    """The daemon of the object `body` (a live view kopf keeps up to date) until kopf stops
    it or it finished the object's deletion itself."""
    meta = body.meta
    uid, name, namespace = meta.uid, meta.name, _namespace(body)
    memories = kind.memories(runtime)
    memory = memories.setdefault(uid, kind.new_memory())
    emit = _emitter(body)
    orphan = _Orphan(runtime, kind.plural, namespace, name)

    async def one_pass() -> float | None:
        ctx = Context(
            ports=runtime.ports,
            namespace=namespace,
            name=name,
            uid=uid,
            generation=meta.get("generation", 0),
            spec=kind.spec_model.model_validate(dict(body.spec)),
            status=_parse_status(kind.status_model, body.get("status")),
            memory=memory,
            emit=emit,
            now=datetime.now(UTC),
        )
        try:
            new = await kind.reconcile(ctx)
        except Exception:
            # in a terminating namespace a pool's Secret and Deployment can no longer be applied
            if await runtime.k8s.deletion_requested(kind.plural, namespace, name):
                await orphan.finish_when_due(lambda: kind.finish_deletion(ctx))
            raise
        if await runtime.k8s.patch_status(kind.plural, namespace, name, _status_patch(new)):
            await orphan.finish_when_due(lambda: kind.finish_deletion(ctx))
        return kind.next_pass(ctx, new)

    finished = False
    try:
        finished = await _reconcile_forever(
            runtime, kind.name, f"{namespace}/{name}", memory.wake, stopped, one_pass
        )
    finally:
        runtime.databases.unsubscribe(uid)  # pools' wake-ups; a restarted daemon subscribes again
        if stopped or finished:
            memories.pop(uid, None)
            kind.forget(runtime.metrics, namespace, name)
        deleted = stopped.reason is not None and (
            kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason
        )
        if finished or deleted:
            # in a task of its own: kopf cancels a daemon that does not exit at once
            task = asyncio.create_task(_gone(runtime, kind, memory, namespace, name))
            runtime.cleanups.add(task)
            task.add_done_callback(runtime.cleanups.discard)


async def _gone(
    runtime: Runtime, kind: Kind[Any, Any, MemoryT], memory: MemoryT, namespace: str, name: str
) -> None:
    try:
        await kind.gone(runtime, memory, namespace, name)
    except Exception:
        log.exception("%s %s/%s: cleaning up after its deletion failed", kind.name, namespace, name)


async def taskqueue_deleted(runtime: Runtime, body: kopf.Body) -> None:
    """kopf's deletion handler of a TaskQueue: honour its deletionPolicy."""
    namespace, name = _namespace(body), body.meta.name
    spec = TaskQueueSpec.model_validate(dict(body.spec))
    try:
        dropped = await delete_taskqueue(runtime.ports, namespace, name, spec)
    except (TaskqError, NotFoundError, NoDatabaseError) as error:
        # kopf keeps the finalizer and retries: the queue is not dropped behind our back
        raise kopf.TemporaryError(f"cannot drop the queue yet: {error}", delay=5) from error
    if dropped:
        message = f"queue {namespace}/{name} and its tasks dropped (Delete policy)"
        _emitter(body)("Normal", "Dropped", message)


async def schedule_deleted(runtime: Runtime, body: kopf.Body) -> None:
    """kopf's deletion handler of a TaskSchedule: remove it from its database, so it fires no
    more."""
    namespace, name = _namespace(body), body.meta.name
    spec = TaskScheduleSpec.model_validate(dict(body.spec))
    status = _parse_status(TaskScheduleStatus, body.get("status"))
    try:
        deleted = await delete_schedule(runtime.ports, namespace, name, spec, status)
    except (TaskqError, NotFoundError, NoDatabaseError) as error:
        # kopf keeps the finalizer and retries: the schedule never fires on behind our back
        raise kopf.TemporaryError(f"cannot remove the schedule yet: {error}", delay=5) from error
    if deleted:
        _emitter(body)("Normal", "Deleted", f"schedule {namespace}/{name} removed")


async def api_key_deleted(runtime: Runtime, body: kopf.Body) -> None:
    """kopf's deletion handler of a TaskqApiKey: revoke its key."""
    namespace, name = _namespace(body), body.meta.name
    spec = TaskqApiKeySpec.model_validate(dict(body.spec))
    # the daemon's memory while it still runs (kopf does not wait for it to stop first)
    memory = runtime.keys.get(body.meta.uid) or KeyMemory()
    try:
        revoked = await delete_api_key(runtime.ports, namespace, name, spec, memory)
    except (TaskqError, NotFoundError, NoDatabaseError) as error:
        # kopf keeps the finalizer and retries: the key is never left usable behind our back
        raise kopf.TemporaryError(f"cannot revoke the key yet: {error}", delay=5) from error
    if revoked is not None:
        _emitter(body)("Normal", "Revoked", f"key {revoked.prefix} revoked")


class _Finished(Exception):
    """The daemon finished its object's deletion itself: stop it."""


class _Orphan:
    """kopf stops watching a namespace once the namespace's own status says its deletion is
    done, which the namespace controller can report before the deletion of the objects in it
    reaches kopf (kopf #1088): their daemons then run on, their finalizers stay, and the
    namespace stays Terminating. A daemon that sees its object marked for deletion for
    ORPHANED_AFTER does what kopf would have: the deletion handlers' work, then releases the
    finalizer, then stops."""

    def __init__(self, runtime: Runtime, plural: str, namespace: str, name: str) -> None:
        self._runtime = runtime
        self._plural, self._namespace, self._name = plural, namespace, name
        self._seen_at: float | None = None

    async def finish_when_due(self, finish: Callable[[], Awaitable[object]]) -> None:
        """Called on each pass while the object is marked for deletion."""
        now = asyncio.get_running_loop().time()
        if self._seen_at is None:
            self._seen_at = now
        if now - self._seen_at < ORPHANED_AFTER:
            return
        log.warning(
            "%s %s/%s: marked for deletion %.0fs ago and kopf has not finished it; finishing it",
            self._plural,
            self._namespace,
            self._name,
            now - self._seen_at,
        )
        await finish()
        await self._runtime.k8s.remove_finalizer(
            self._plural, self._namespace, self._name, FINALIZER
        )
        raise _Finished


def _namespace(body: kopf.Body) -> str:
    namespace = body.meta.namespace
    assert namespace is not None  # both kinds are namespaced
    return namespace


def _emitter(body: kopf.Body) -> Emit:
    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message[:1024])

    return emit


def _status_patch(status: BaseModel) -> dict[str, Any]:
    """Every top-level field, unset ones as null: a merge patch deletes what became unset."""
    patch: dict[str, Any] = {
        (field.alias or name): None for name, field in type(status).model_fields.items()
    }
    patch.update(status.model_dump(mode="json", by_alias=True, exclude_none=True))
    return patch


def _parse_status(model: type[StatusT], raw: Any) -> StatusT:
    known = {f.alias or n for n, f in model.model_fields.items()}
    try:
        return model.model_validate({k: v for k, v in dict(raw or {}).items() if k in known})
    except ValidationError:
        return model()  # a status we cannot read is rebuilt from scratch


async def _wait(event: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until woken, stopped, or `seconds` pass."""
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait(seconds))]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    event.clear()


async def _reconcile_forever(
    runtime: Runtime,
    kind: str,
    where: str,
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    one_pass: Callable[[], Awaitable[float | None]],
) -> bool:
    """Run `one_pass` until the resource goes away; True if this daemon finished the
    deletion itself (_Orphan), False if kopf stopped it. `one_pass` returns the seconds until
    the next pass when healthy, or None for "not healthy yet" (retried sooner, backing off to
    the period). A wake-up (spec change, ready tasks) starts the next pass at once, but never
    sooner than min_reconcile_gap after the previous one: a burst is one pass."""
    failures, period = 0, runtime.settings.status_interval
    while not stopped:
        started = asyncio.get_running_loop().time()
        try:
            healthy_period = await one_pass()
        except _Finished:
            return True
        except ValidationError as error:
            log.error("%s %s has an invalid spec: %s", kind, where, error)
            healthy_period = None
        except Exception:
            log.exception("reconciling %s %s failed", kind, where)
            runtime.metrics.reconcile_error(kind, "Exception")
            healthy_period = None
        if healthy_period is None:
            failures += 1
            delay = min(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1], period)
        else:
            failures, period = 0, healthy_period
            delay = period
        await _wait(wake, stopped, delay)
        elapsed = asyncio.get_running_loop().time() - started
        if elapsed < runtime.settings.min_reconcile_gap and not stopped:
            with contextlib.suppress(asyncio.TimeoutError):
                await stopped.wait(runtime.settings.min_reconcile_gap - elapsed)
    return False
