"""What the reconcilers reach the world through: narrow ports that the real implementations
(k8s.KubernetesPort, databases.Databases) satisfy, so unit tests can pass in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from taskq.models import QueueInfo, QueueSettings, QueueStats
from taskq_operator.k8s import DeploymentState, Manifest
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.settings import OperatorSettings

# (type Normal|Warning, reason, message): posts a Kubernetes Event on the object reconciled
Emit = Callable[[str, str, str], None]


class NoDatabaseError(LookupError):
    """The resource names no database and the operator has no default one."""


class Kubernetes(Protocol):
    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value; k8s.NotFoundError when the Secret or its key is missing."""
        ...

    async def task_queue(self, namespace: str, name: str) -> Manifest | None: ...

    async def deployment_state(self, namespace: str, name: str) -> DeploymentState | None: ...

    async def apply(self, manifest: Manifest) -> None:
        """Server-side apply of a namespaced Deployment or Secret."""
        ...


class QueueDatabase(Protocol):
    """The queues of one database; failures are raised as TaskqError subclasses."""

    async def ensure_queue(self, queue: str, settings: QueueSettings) -> QueueInfo: ...

    async def get_queue(self, queue: str) -> QueueInfo:
        """UnknownQueueError when the queue does not exist."""
        ...

    async def queue_stats(self, queue: QueueInfo) -> QueueStats: ...

    async def drop_queue(self, queue: str) -> bool: ...


class Databases(Protocol):
    async def database(self, dsn: str) -> QueueDatabase:
        """The database, its schema migrated; DatabaseUnavailableError if unreachable."""
        ...

    def subscribe(self, dsn: str, queue_id: int, key: object, wake: Callable[[], None]) -> None:
        """Call `wake` when tasks become ready in the queue (a hint: also poll)."""
        ...


@dataclass(frozen=True)
class Ports:
    settings: OperatorSettings
    k8s: Kubernetes
    databases: Databases
    metrics: OperatorMetrics

    async def dsn(self, namespace: str, secret: tuple[str, str] | None) -> str:
        """The DSN in Secret (name, key) of the namespace, or the operator's default."""
        if secret is not None:
            return await self.k8s.secret_value(namespace, *secret)
        if self.settings.default_dsn is None:
            raise NoDatabaseError(
                "spec.database is not set and the operator has no default database: set "
                "spec.database.secretKeyRef, or install the operator with a default database "
                "(TASKQ_OPERATOR_DEFAULT_DSN)"
            )
        return self.settings.default_dsn.get_secret_value()
