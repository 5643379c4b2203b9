"""kopf handlers: parse the body, run the reconciler, write the status. Nothing else.

Each TaskQueue and each WorkerPool gets a daemon that reconciles on a period and whenever it
is woken: by a spec change (on.update) or, for pools, by a notification that tasks became
ready in one of their queues. Reacting to actual state this way, not only to events, is what
lets a pool wake from zero within a second of a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import BaseModel, ValidationError

from taskq.errors import TaskqError
from taskq_operator.api import (
    GROUP,
    VERSION,
    TaskQueueSpec,
    TaskQueueStatus,
    WorkerPoolSpec,
    WorkerPoolStatus,
)
from taskq_operator.reconcile.runtime import (
    Emit,
    NoDatabaseError,
    NotFoundError,
    PoolMemory,
    QueueMemory,
    Runtime,
)
from taskq_operator.reconcile.taskqueue import delete_taskqueue, reconcile_taskqueue
from taskq_operator.reconcile.workerpool import reconcile_workerpool
from taskq_operator.resources import PoolRef

log = logging.getLogger("taskq_operator")

FINALIZER = "taskq.dev/finalizer"
# Retries of a failed pass come sooner than the period, and back off up to it.
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
# kopf stops a deleted object's daemon within its cancellation_timeout (5 s); one still running
# this long after its object was marked for deletion was orphaned (see _finish_if_orphaned).
ORPHANED_AFTER = 15.0  # seconds


async def _nothing() -> None:
    return None


class _Finished(Exception):
    """The daemon finished its object's deletion itself: stop it."""


class _Deletion:
    """When a daemon first saw its object marked for deletion."""

    def __init__(self) -> None:
        self.seen_at: float | None = None


async def _finish_if_orphaned(
    runtime: Runtime,
    plural: str,
    namespace: str,
    name: str,
    deletion: _Deletion,
    finish: Callable[[], Awaitable[object]],
) -> None:
    """Called on each pass of a daemon whose object is marked for deletion. kopf stops watching
    a namespace once the namespace's own status says its deletion is done, which the namespace
    controller can report before the deletion of the objects in it reaches kopf (kopf #1088):
    their daemons then run on, their finalizers stay, and the namespace stays Terminating.
    After ORPHANED_AFTER, do what kopf would have: the deletion handler's work, then release
    the finalizer, then stop."""
    now = asyncio.get_running_loop().time()
    if deletion.seen_at is None:
        deletion.seen_at = now
    if now - deletion.seen_at < ORPHANED_AFTER:
        return
    log.warning(
        "%s %s/%s: marked for deletion %.0fs ago and kopf has not finished it; finishing it",
        plural,
        namespace,
        name,
        now - deletion.seen_at,
    )
    await finish()
    await runtime.k8s.remove_finalizer(plural, namespace, name, FINALIZER)
    raise _Finished


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


def _parse_status(model: type[TaskQueueStatus] | type[WorkerPoolStatus], raw: Any) -> Any:
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


Pass = Callable[[], Awaitable[float | None]]


async def _reconcile_forever(
    runtime: Runtime,
    kind: str,
    where: str,
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    one_pass: Pass,
) -> bool:
    """Run `one_pass` until the resource goes away; True if this daemon finished the
    deletion itself (_finish_if_orphaned), False if kopf stopped it. `one_pass` returns the
    seconds until the next pass when healthy, or None for "not healthy yet" (retried sooner,
    backing off to the period). A wake-up (spec change, ready tasks) starts the next pass at
    once, but never sooner than min_reconcile_gap after the previous one: a burst is one
    pass."""
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


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Attach all handlers to `registry`, bound to `runtime` (tests build their own)."""
    _register_operator(registry, runtime)
    _register_taskqueue(registry, runtime)
    _register_workerpool(registry, runtime)


def _register_operator(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # an explicit registry has no default login: in-cluster account, else KUBECONFIG
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # kopf's bookkeeping stays in annotations: status belongs to the resources' models
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 60

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await runtime.databases.close()


def _register_taskqueue(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.daemon(GROUP, VERSION, "taskqueues", registry=registry, cancellation_timeout=5.0)
    async def taskqueue_daemon(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        uid: str,
        name: str,
        namespace: str | None,
        stopped: kopf.DaemonStopped,
        **_: Any,
    ) -> None:
        assert namespace is not None  # TaskQueue is namespaced
        memory = runtime.queues.setdefault(uid, QueueMemory())
        emit = _emitter(body)
        deletion = _Deletion()

        async def one_pass() -> float | None:
            queue_spec = TaskQueueSpec.model_validate(dict(spec))
            new = await reconcile_taskqueue(
                runtime,
                namespace,
                name,
                meta.get("generation", 0),
                queue_spec,
                _parse_status(TaskQueueStatus, body.get("status")),
                memory,
                emit,
                datetime.now(UTC),
            )
            if await runtime.k8s.patch_status("taskqueues", namespace, name, _status_patch(new)):
                await _finish_if_orphaned(
                    runtime,
                    "taskqueues",
                    namespace,
                    name,
                    deletion,
                    lambda: delete_taskqueue(runtime, namespace, name, queue_spec),
                )
            ready = any(c.type == "Ready" and c.status == "True" for c in new.conditions)
            return runtime.settings.status_interval if ready else None

        finished = False
        try:
            finished = await _reconcile_forever(
                runtime, "TaskQueue", f"{namespace}/{name}", memory.wake, stopped, one_pass
            )
        finally:
            if stopped or finished:
                runtime.queues.pop(uid, None)

    @kopf.on.update(GROUP, VERSION, "taskqueues", field="spec", registry=registry)
    def taskqueue_changed(uid: str, **_: Any) -> None:
        memory = runtime.queues.get(uid)
        if memory is not None:
            memory.wake.set()

    @kopf.on.delete(GROUP, VERSION, "taskqueues", registry=registry, backoff=2.0)
    async def taskqueue_deleted(
        body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, **_: Any
    ) -> None:
        assert namespace is not None
        try:
            dropped = await delete_taskqueue(
                runtime, namespace, name, TaskQueueSpec.model_validate(dict(spec))
            )
        except (TaskqError, NotFoundError, NoDatabaseError) as error:
            # kopf keeps the finalizer and retries: the queue is not dropped behind our back
            raise kopf.TemporaryError(f"cannot drop the queue yet: {error}", delay=5) from error
        if dropped:
            kopf.event(
                body,
                type="Normal",
                reason="Dropped",
                message=f"queue {namespace}/{name} and its tasks dropped (Delete policy)",
            )


def _register_workerpool(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.daemon(GROUP, VERSION, "workerpools", registry=registry, cancellation_timeout=5.0)
    async def workerpool_daemon(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        uid: str,
        name: str,
        namespace: str | None,
        stopped: kopf.DaemonStopped,
        **_: Any,
    ) -> None:
        assert namespace is not None  # WorkerPool is namespaced
        memory = runtime.pools.setdefault(uid, PoolMemory())
        pool = PoolRef(name=name, namespace=namespace, uid=uid)
        emit = _emitter(body)
        deletion = _Deletion()

        async def one_pass() -> float | None:
            pool_spec = WorkerPoolSpec.model_validate(dict(spec))
            try:
                async with memory.lock:
                    new = await reconcile_workerpool(
                        runtime,
                        pool,
                        meta.get("generation", 0),
                        pool_spec,
                        _parse_status(WorkerPoolStatus, body.get("status")),
                        memory,
                        emit,
                        datetime.now(UTC),
                    )
            except Exception:
                # in a terminating namespace its Secret and Deployment can no longer be applied
                if await runtime.k8s.deletion_requested("workerpools", namespace, name):
                    await finish_if_orphaned()
                raise
            if await runtime.k8s.patch_status("workerpools", namespace, name, _status_patch(new)):
                await finish_if_orphaned()
            return float(pool_spec.autoscaling.poll_interval_seconds)

        async def finish_if_orphaned() -> None:
            # nothing of its own to clean up: its Deployment and Secret go with it
            await _finish_if_orphaned(runtime, "workerpools", namespace, name, deletion, _nothing)

        finished = False
        try:
            finished = await _reconcile_forever(
                runtime, "WorkerPool", f"{namespace}/{name}", memory.wake, stopped, one_pass
            )
        finally:
            runtime.databases.unsubscribe(uid)
            if stopped or finished:
                runtime.pools.pop(uid, None)
                runtime.metrics.pool_deleted(namespace, name)

    @kopf.on.update(GROUP, VERSION, "workerpools", field="spec", registry=registry)
    def workerpool_changed(uid: str, **_: Any) -> None:
        memory = runtime.pools.get(uid)
        if memory is not None:
            memory.wake.set()
