"""What every reconcile pass needs: the ports, the settings, and the operator's memory of
things the API does not store (autoscaling history, what was provisioned)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from taskq_operator.autoscaling import Recommendation
from taskq_operator.databases import Databases
from taskq_operator.k8s import KubernetesPort, NotFoundError
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.settings import OperatorSettings

# (type Normal|Warning, reason, message): posts a Kubernetes Event on the object reconciled
Emit = Callable[[str, str, str], None]


class NoDatabaseError(LookupError):
    """The resource names no database and the operator has no default one."""


@dataclass
class PoolMemory:
    history: tuple[Recommendation, ...] = ()
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class QueueMemory:
    provisioned_generation: int | None = None
    last_maintenance: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Runtime:
    settings: OperatorSettings
    k8s: KubernetesPort
    databases: Databases
    metrics: OperatorMetrics
    pools: dict[str, PoolMemory] = field(default_factory=dict)  # by WorkerPool uid
    queues: dict[str, QueueMemory] = field(default_factory=dict)  # by TaskQueue uid

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


__all__ = ["Emit", "NoDatabaseError", "NotFoundError", "PoolMemory", "QueueMemory", "Runtime"]
