"""What the reconcilers reach the world through: narrow ports that the real implementations
(k8s.KubernetesPort, databases.Databases) satisfy, so unit tests can pass in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from taskq.auth import ApiKey, Grants
from taskq.models import PoolReport, QueueInfo, QueueSettings, QueueStats, ScalingDecision
from taskq.schedules import ScheduleSpec
from taskq.store.keys import DeclaredKey
from taskq.store.schedules import ScheduleInfo
from taskq.webhooks import WebhookSpec
from taskq_operator.k8s import DeploymentState, Manifest, SecretState
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

    async def read_secret(self, namespace: str, name: str) -> SecretState | None: ...

    async def task_queue(self, namespace: str, name: str) -> Manifest | None: ...

    async def deployment_state(self, namespace: str, name: str) -> DeploymentState | None: ...

    async def apply(self, manifest: Manifest) -> None:
        """Server-side apply of a namespaced Deployment or Secret; k8s.InvalidObjectError
        when the API server refuses its content."""
        ...

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas alone, leaving its template."""
        ...


class QueueDatabase(Protocol):
    """The queues of one database; failures are raised as TaskqError subclasses."""

    async def ensure_queue(self, queue: str, settings: QueueSettings) -> QueueInfo: ...

    async def get_queue(self, queue: str) -> QueueInfo:
        """UnknownQueueError when the queue does not exist."""
        ...

    async def queue_stats(self, queue: QueueInfo, cap: int) -> QueueStats:
        """Each count stops at `cap` tasks (QueueStats.capped)."""
        ...

    def status_interval(self, configured: float) -> float:
        """Seconds until a queue's next status reading: `configured`, or longer when the
        database's queues would offer more readings than the operator's connections serve."""
        ...

    async def drop_queue(self, queue: str) -> bool: ...

    async def declare_webhooks(
        self, queue: str, declared_by: str, webhooks: dict[str, WebhookSpec]
    ) -> None:
        """The queue's webhooks declared by `declared_by` become exactly these (by name)."""
        ...

    async def record_pool(self, pool: PoolReport, decisions: Sequence[ScalingDecision]) -> None:
        """Record the pool as it is now in taskq.worker_pools, with these new decisions
        (newest first), for the dashboard."""
        ...

    async def forget_pool(self, namespace: str, name: str) -> None:
        """Remove the pool's record (it was deleted, or its queues moved to another
        database)."""
        ...


class KeyDatabase(Protocol):
    """The API keys of one database (taskq.store.keys); failures are raised as TaskqError
    subclasses. Keys are found by the object declaring them, `namespace/name`."""

    async def declared_key(self, declared_by: str) -> DeclaredKey | None: ...

    async def declare_key(self, declared_by: str, grants: Grants) -> tuple[ApiKey, str]:
        """A new key and its secret; the object's key before it is revoked with it."""
        ...

    async def set_grants(self, key: ApiKey, grants: Grants) -> ApiKey: ...

    async def revoke_declared(self, declared_by: str) -> ApiKey | None: ...


class ScheduleDatabase(Protocol):
    """The schedules of one database (taskq.store.schedules); failures are raised as TaskqError
    subclasses."""

    async def put_schedule(self, namespace: str, name: str, spec: ScheduleSpec) -> ScheduleInfo:
        ...

    async def get_schedule(self, namespace: str, name: str) -> ScheduleInfo | None: ...

    async def delete_schedule(self, namespace: str, name: str) -> bool: ...

    async def task_state(self, namespace: str, queue: str, task_id: int) -> str | None:
        """The state of a schedule's last task, in the schedule's queue (namespace/queue);
        None once it is gone."""
        ...


class Databases(Protocol):
    async def database(self, dsn: str) -> QueueDatabase:
        """The database, its schema migrated; DatabaseUnavailableError if unreachable."""
        ...

    async def keys(self, dsn: str) -> KeyDatabase:
        """The database's API keys, its schema migrated; DatabaseUnavailableError if
        unreachable."""
        ...

    async def schedules(self, dsn: str) -> ScheduleDatabase:
        """The database's schedules, its schema migrated; DatabaseUnavailableError if
        unreachable."""
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
