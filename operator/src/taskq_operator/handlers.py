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
        failures = 0
        try:
            while not stopped:
                status = _parse_status(TaskQueueStatus, body.get("status"))
                try:
                    queue_spec = TaskQueueSpec.model_validate(dict(spec))
                    new = await reconcile_taskqueue(
                        runtime,
                        namespace,
                        name,
                        meta.get("generation", 0),
                        queue_spec,
                        status,
                        memory,
                        emit,
                        datetime.now(UTC),
                    )
                    await runtime.k8s.patch_status(
                        "taskqueues", namespace, name, _status_patch(new)
                    )
                    ready = any(c.type == "Ready" and c.status == "True" for c in new.conditions)
                    failures = 0 if ready else failures + 1
                except ValidationError as error:
                    log.error("TaskQueue %s/%s has an invalid spec: %s", namespace, name, error)
                    failures += 1
                except Exception:
                    log.exception("reconciling TaskQueue %s/%s failed", namespace, name)
                    runtime.metrics.reconcile_error("TaskQueue", "Exception")
                    failures += 1
                delay = (
                    RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
                    if failures
                    else runtime.settings.status_interval
                )
                await _wait(memory.wake, stopped, min(delay, runtime.settings.status_interval))
        finally:
            if stopped:
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
        failures = 0
        try:
            while not stopped:
                started = asyncio.get_running_loop().time()
                pool_spec: WorkerPoolSpec | None = None
                try:
                    pool_spec = WorkerPoolSpec.model_validate(dict(spec))
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
                    await runtime.k8s.patch_status(
                        "workerpools", namespace, name, _status_patch(new)
                    )
                    failures = 0
                except ValidationError as error:
                    log.error("WorkerPool %s/%s has an invalid spec: %s", namespace, name, error)
                    failures += 1
                except Exception:
                    log.exception("reconciling WorkerPool %s/%s failed", namespace, name)
                    runtime.metrics.reconcile_error("WorkerPool", "Exception")
                    failures += 1
                period = pool_spec.autoscaling.poll_interval_seconds if pool_spec else 5.0
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1] if failures else period
                await _wait(memory.wake, stopped, delay)
                # a burst of notifications is one pass, not one per notification
                gap = runtime.settings.min_reconcile_gap
                elapsed = asyncio.get_running_loop().time() - started
                if elapsed < gap and not stopped:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await stopped.wait(gap - elapsed)
        finally:
            runtime.databases.unsubscribe(uid)
            if stopped:
                runtime.pools.pop(uid, None)
                runtime.metrics.pool_deleted(namespace, name)

    @kopf.on.update(GROUP, VERSION, "workerpools", field="spec", registry=registry)
    def workerpool_changed(uid: str, **_: Any) -> None:
        memory = runtime.pools.get(uid)
        if memory is not None:
            memory.wake.set()
