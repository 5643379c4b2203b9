"""The kopf registrations: which handler runs on which event, bound to a Runtime. The work is
in `daemons` (one reconcile loop per object) and `reconcile` (desired state per kind)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from taskq_operator import daemons
from taskq_operator.api import GROUP, VERSION
from taskq_operator.reconcile.runtime import Runtime


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Attach all handlers to `registry`, bound to `runtime` (tests build their own)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # an explicit registry has no default login: in-cluster account, else KUBECONFIG
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = daemons.FINALIZER
        # kopf's bookkeeping stays in annotations: status belongs to the resources' models
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 60

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await runtime.databases.close()

    for kind in daemons.KINDS:
        _register_daemon(registry, runtime, kind)

    @kopf.on.delete(
        GROUP, VERSION, "taskqueues", registry=registry, backoff=2.0, id="taskqueue_deleted"
    )
    async def taskqueue_deleted(body: kopf.Body, **_: Any) -> None:
        await daemons.taskqueue_deleted(runtime, body)

    @kopf.on.delete(
        GROUP, VERSION, "taskschedules", registry=registry, backoff=2.0, id="taskschedule_deleted"
    )
    async def taskschedule_deleted(body: kopf.Body, **_: Any) -> None:
        await daemons.schedule_deleted(runtime, body)

    @kopf.on.delete(
        GROUP, VERSION, "taskqapikeys", registry=registry, backoff=2.0, id="taskqapikey_deleted"
    )
    async def taskqapikey_deleted(body: kopf.Body, **_: Any) -> None:
        await daemons.api_key_deleted(runtime, body)


def _register_daemon(
    registry: kopf.OperatorRegistry, runtime: Runtime, kind: daemons.Kind[Any, Any, Any]
) -> None:
    singular = kind.name.lower()

    @kopf.daemon(
        GROUP,
        VERSION,
        kind.plural,
        registry=registry,
        cancellation_timeout=5.0,
        id=f"{singular}_daemon",
    )
    async def daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await daemons.run(runtime, kind, body, stopped)

    @kopf.on.update(
        GROUP, VERSION, kind.plural, field="spec", registry=registry, id=f"{singular}_changed"
    )
    def changed(uid: str, **_: Any) -> None:
        daemons.wake(runtime, kind, uid)
