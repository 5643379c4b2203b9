"""In-memory fakes of the reconcilers' ports (taskq_operator.reconcile.ports), never of
Kubernetes or PostgreSQL themselves: they hold what a reconciler reads and record what it
writes, and can be told to fail the way the real ones do."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from taskq.errors import TaskqError, UnknownQueueError
from taskq.models import QueueInfo, QueueSettings, QueueStats
from taskq_operator.k8s import DeploymentState, Manifest, NotFoundError
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.reconcile.ports import Ports
from taskq_operator.settings import OperatorSettings

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DEFAULT_DSN = "postgresql://operator@default/taskq"


class FakeKubernetes:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}  # (namespace, name): data
        self.task_queues: dict[tuple[str, str], Manifest] = {}
        self.deployments: dict[tuple[str, str], DeploymentState] = {}
        self.applied: list[Manifest] = []

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        data = self.secrets.get((namespace, name))
        if data is None:
            raise NotFoundError(f"Secret {namespace}/{name} not found")
        if key not in data:
            raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    async def task_queue(self, namespace: str, name: str) -> Manifest | None:
        return self.task_queues.get((namespace, name))

    async def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        return self.deployments.get((namespace, name))

    async def apply(self, manifest: Manifest) -> None:
        """Recorded; a Deployment's spec.replicas takes effect as on the API server (its
        pods, replicas and readyReplicas, are left to each test)."""
        self.applied.append(manifest)
        if manifest["kind"] == "Deployment":
            key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
            old = self.deployments.get(key, DeploymentState(0, 0, 0))
            self.deployments[key] = DeploymentState(
                manifest["spec"]["replicas"], old.replicas, old.ready_replicas
            )

    def applied_kinds(self) -> list[str]:
        return [manifest["kind"] for manifest in self.applied]

    def add_task_queue(self, namespace: str, name: str, **spec: Any) -> None:
        self.task_queues[namespace, name] = {
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }


def stats(ready: int = 0, running: int = 0, **more: Any) -> QueueStats:
    values: dict[str, Any] = {
        "ready": ready,
        "scheduled": 0,
        "running": running,
        "dead": 0,
        "oldest_ready_at": None,
        "succeeded_last_minute": 0,
        "dead_last_minute": 0,
        "observed_at": NOW,
    }
    return QueueStats.model_validate(values | more)


class FakeQueueDatabase:
    def __init__(self) -> None:
        self.queues: dict[str, QueueInfo] = {}  # by "namespace/name"
        self.depth: dict[str, QueueStats] = {}  # by "namespace/name"; absent: empty
        self.ensured: list[tuple[str, QueueSettings]] = []
        self.error: TaskqError | None = None
        """Raised by every call from now on: the database failing under the operator."""
        self._ids = itertools.count(1)

    def _answer(self) -> None:
        if self.error is not None:
            raise self.error

    def add(self, queue: str, depth: QueueStats | None = None) -> QueueInfo:
        """A queue that is in the database already, with that depth."""
        if depth is not None:
            self.depth[queue] = depth
        return self._put(queue, QueueSettings())

    def _put(self, queue: str, settings: QueueSettings) -> QueueInfo:
        namespace, name = queue.split("/")
        old = self.queues.get(queue)
        self.queues[queue] = QueueInfo(
            id=old.id if old else next(self._ids),
            namespace=namespace,
            name=name,
            settings=settings,
            created_at=old.created_at if old else NOW,
        )
        return self.queues[queue]

    async def ensure_queue(self, queue: str, settings: QueueSettings) -> QueueInfo:
        self._answer()
        self.ensured.append((queue, settings))
        return self._put(queue, settings)

    async def get_queue(self, queue: str) -> QueueInfo:
        self._answer()
        if queue not in self.queues:
            raise UnknownQueueError(queue)
        return self.queues[queue]

    async def queue_stats(self, queue: QueueInfo) -> QueueStats:
        self._answer()
        return self.depth.get(queue.full_name, stats())

    async def drop_queue(self, queue: str) -> bool:
        self._answer()
        return self.queues.pop(queue, None) is not None


class FakeDatabases:
    def __init__(self) -> None:
        self.databases: dict[str, FakeQueueDatabase] = {}
        self.errors: dict[str, TaskqError] = {}
        """By DSN: raised when the database is opened (unreachable, a schema conflict)."""
        self.subscriptions: dict[tuple[str, int], dict[object, Callable[[], None]]] = {}

    def __getitem__(self, dsn: str) -> FakeQueueDatabase:
        return self.databases.setdefault(dsn, FakeQueueDatabase())

    async def database(self, dsn: str) -> FakeQueueDatabase:
        if dsn in self.errors:
            raise self.errors[dsn]
        return self[dsn]

    def subscribe(self, dsn: str, queue_id: int, key: object, wake: Callable[[], None]) -> None:
        self.subscriptions.setdefault((dsn, queue_id), {})[key] = wake


class Events:
    """The Emit port: the Kubernetes Events a reconciler posted, as (type, reason, message)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, reason: str, message: str) -> None:
        self.posted.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.posted]


class World:
    """The ports of one test, with the fakes behind them at hand."""

    def __init__(self, default_dsn: str | None = DEFAULT_DSN) -> None:
        self.k8s = FakeKubernetes()
        self.databases = FakeDatabases()
        self.metrics = OperatorMetrics()
        self.events = Events()
        settings = OperatorSettings(
            default_dsn=SecretStr(default_dsn) if default_dsn else None,
            status_interval=2.0,
            min_reconcile_gap=0.5,
        )
        self.ports = Ports(settings, self.k8s, self.databases, self.metrics)

    def errors(self, kind: str, reason: str) -> float:
        """taskq_reconcile_errors_total{kind, reason}."""
        value = self.metrics.registry.get_sample_value(
            "taskq_reconcile_errors_total", {"kind": kind, "reason": reason}
        )
        return value or 0.0
