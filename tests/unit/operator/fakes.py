"""In-memory fakes of the reconcilers' ports (taskq_operator.reconcile.ports), never of
Kubernetes or PostgreSQL themselves: they hold what a reconciler reads and record what it
writes, and can be told to fail the way the real ones do."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from taskq import auth
from taskq.auth import ApiKey, Grants
from taskq.errors import ApiKeyConflictError, TaskqError, UnknownQueueError
from taskq.models import COUNTS, PoolReport, QueueInfo, QueueSettings, QueueStats, ScalingDecision
from taskq.schedules import ScheduleSpec, next_tick
from taskq.store.keys import DeclaredKey, declared_name
from taskq.store.pools import KEPT_DECISIONS
from taskq.store.schedules import ScheduleInfo
from taskq.webhooks import WebhookSpec
from taskq_operator.k8s import (
    DeploymentState,
    FieldError,
    InvalidObjectError,
    Manifest,
    NotFoundError,
    SecretState,
)
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.reconcile.ports import Ports
from taskq_operator.settings import OperatorSettings

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DEFAULT_DSN = "postgresql://operator@default/taskq"


class FakeKubernetes:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}  # (namespace, name): data
        self.secret_owners: dict[tuple[str, str], str] = {}  # (namespace, name): controller uid
        self.task_queues: dict[tuple[str, str], Manifest] = {}
        self.deployments: dict[tuple[str, str], DeploymentState] = {}
        self.applied: list[Manifest] = []
        self.scaled: list[int] = []
        # (field, message) the API server finds wrong with every Deployment applied
        self.refuse_deployments: list[tuple[str, str]] = []

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        data = self.secrets.get((namespace, name))
        if data is None:
            raise NotFoundError(f"Secret {namespace}/{name} not found")
        if key not in data:
            raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    async def read_secret(self, namespace: str, name: str) -> SecretState | None:
        data = self.secrets.get((namespace, name))
        if data is None:
            return None
        return SecretState(dict(data), self.secret_owners.get((namespace, name)))

    async def task_queue(self, namespace: str, name: str) -> Manifest | None:
        return self.task_queues.get((namespace, name))

    async def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        return self.deployments.get((namespace, name))

    async def apply(self, manifest: Manifest) -> None:
        """Recorded; a Deployment's spec.replicas takes effect as on the API server (its
        pods, replicas and readyReplicas, are left to each test)."""
        self.applied.append(manifest)
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if manifest["kind"] == "Deployment" and self.refuse_deployments:
            errors = tuple(FieldError(f, m) for f, m in self.refuse_deployments)
            raise InvalidObjectError("Deployment", "/".join(key), errors)
        if manifest["kind"] == "Secret":
            # a server-side apply merges the keys it sets into the Secret's data
            data = {k: base64.b64decode(v).decode() for k, v in manifest["data"].items()}
            self.secrets[key] = {**self.secrets.get(key, {}), **data}
            owners = manifest["metadata"].get("ownerReferences", [])
            controller = next((o["uid"] for o in owners if o.get("controller")), None)
            if controller is not None:
                self.secret_owners[key] = controller
        if manifest["kind"] == "Deployment":
            old = self.deployments.get(key, DeploymentState(0, 0, 0))
            self.deployments[key] = DeploymentState(
                manifest["spec"]["replicas"], old.replicas, old.ready_replicas
            )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append(replicas)
        old = self.deployments[namespace, name]
        self.deployments[namespace, name] = dataclasses.replace(old, spec_replicas=replicas)

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
        "count_cap": 1_000_000_000,  # the true depth: queue_stats caps it as asked
    }
    return QueueStats.model_validate(values | more)


class FakeQueueDatabase:
    def __init__(self) -> None:
        self.queues: dict[str, QueueInfo] = {}  # by "namespace/name"
        self.depth: dict[str, QueueStats] = {}  # by "namespace/name"; absent: empty
        self.caps: list[int] = []  # of every queue_stats call
        self.ensured: list[tuple[str, QueueSettings]] = []
        # (queue, name): (declared_by, spec)
        self.webhooks: dict[tuple[str, str], tuple[str, WebhookSpec]] = {}
        self.declarations = 0
        # taskq.worker_pools: (namespace, name): (the pool, its decisions newest first)
        self.pools: dict[tuple[str, str], tuple[PoolReport, list[ScalingDecision]]] = {}
        self.pool_writes = 0
        self.record_error: TaskqError | None = None
        """Raised by record_pool alone (the depth still reads)."""
        self.paced_interval = 0.0
        """The interval the database's readings need (status_pace.ReadingPace's answer)."""
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

    async def queue_stats(self, queue: QueueInfo, cap: int) -> QueueStats:
        self._answer()
        self.caps.append(cap)
        found = self.depth.get(queue.full_name, stats())
        # as the database counts: at most `cap` of each
        return found.model_copy(
            update={c: min(getattr(found, c), cap) for c in COUNTS} | {"count_cap": cap}
        )

    def status_interval(self, configured: float) -> float:
        return max(configured, self.paced_interval)

    async def drop_queue(self, queue: str) -> bool:
        self._answer()
        return self.queues.pop(queue, None) is not None

    async def declare_webhooks(
        self, queue: str, declared_by: str, webhooks: dict[str, WebhookSpec]
    ) -> None:
        self._answer()
        self.declarations += 1
        kept = {k: v for k, v in self.webhooks.items() if v[0] != declared_by or k[0] != queue}
        self.webhooks = kept | {(queue, n): (declared_by, s) for n, s in webhooks.items()}

    async def record_pool(self, pool: PoolReport, decisions: Sequence[ScalingDecision]) -> None:
        self._answer()
        if self.record_error is not None:
            raise self.record_error
        self.pool_writes += 1
        key = (pool.namespace, pool.name)
        kept = self.pools.get(key, (pool, []))[1]
        self.pools[key] = (pool, [*decisions, *kept][:KEPT_DECISIONS])

    async def forget_pool(self, namespace: str, name: str) -> None:
        self._answer()
        self.pools.pop((namespace, name), None)


class FakeKeyDatabase:
    """The API keys of one database: what taskq.store.keys keeps, with real key secrets."""

    def __init__(self) -> None:
        self.keys: list[tuple[ApiKey, bytes]] = []  # every key ever made, with its digest
        self.error: TaskqError | None = None
        """Raised by every call from now on: the database failing under the operator."""
        self._ids = itertools.count(1)
        self.now = NOW
        self.pause: asyncio.Event | None = None
        """When set to an Event, declared_key waits for it (a pass held up mid-way)."""
        self.paused = asyncio.Event()  # set once a call waits on `pause`

    def _answer(self) -> None:
        if self.error is not None:
            raise self.error

    def _unrevoked(self, declared_by: str) -> int | None:
        return next(
            (
                i
                for i, (key, _) in enumerate(self.keys)
                if key.declared_by == declared_by and key.revoked_at is None
            ),
            None,
        )

    def usable(self, declared_by: str) -> ApiKey | None:
        index = self._unrevoked(declared_by)
        return None if index is None else self.keys[index][0]

    def authenticates(self, secret: str) -> ApiKey | None:
        """The unrevoked key whose secret this is (expiry aside)."""
        return next(
            (k for k, d in self.keys if k.revoked_at is None and auth.matches(secret, d)), None
        )

    def revoke(self, declared_by: str) -> ApiKey | None:
        """As `taskq keys revoke` would, or the object's deletion."""
        index = self._unrevoked(declared_by)
        if index is None:
            return None
        key, digest = self.keys[index]
        self.keys[index] = (dataclasses.replace(key, revoked_at=self.now), digest)
        return self.keys[index][0]

    async def declared_key(self, declared_by: str) -> DeclaredKey | None:
        self._answer()
        if self.pause is not None:
            self.paused.set()
            await self.pause.wait()
        index = self._unrevoked(declared_by)
        return None if index is None else DeclaredKey(*self.keys[index])

    async def declare_key(self, declared_by: str, grants: Grants) -> tuple[ApiKey, str]:
        self._answer()
        self.revoke(declared_by)
        made = auth.new_key()
        key = ApiKey(
            id=next(self._ids),
            name=declared_name(declared_by, made.prefix),
            prefix=made.prefix,
            role=grants.role,
            namespaces=grants.namespaces,
            reads_payloads=grants.reads_payloads,
            created_at=self.now,
            expires_at=grants.expires_at,
            revoked_at=None,
            last_used_at=None,
            declared_by=declared_by,
        )
        self.keys.append((key, made.digest))
        return key, made.secret

    async def set_grants(self, key: ApiKey, grants: Grants) -> ApiKey:
        self._answer()
        index = next(i for i, (k, _) in enumerate(self.keys) if k.id == key.id)
        stored, digest = self.keys[index]
        if stored.revoked_at is not None:
            raise ApiKeyConflictError(key.name, "was revoked meanwhile")
        changed = dataclasses.replace(
            stored,
            role=grants.role,
            namespaces=grants.namespaces,
            reads_payloads=grants.reads_payloads,
            expires_at=grants.expires_at,
        )
        self.keys[index] = (changed, digest)
        return changed

    async def revoke_declared(self, declared_by: str) -> ApiKey | None:
        self._answer()
        return self.revoke(declared_by)


class FakeScheduleDatabase:
    """Schedules as taskq.store.schedules keeps them; `now` is the database's clock."""

    def __init__(self) -> None:
        self.now = NOW
        self.schedules: dict[tuple[str, str], ScheduleInfo] = {}
        # (namespace, queue, task id) -> state: a task is looked for in its schedule's queue
        self.task_states: dict[tuple[str, str, int], str] = {}
        self.puts = 0

    async def put_schedule(self, namespace: str, name: str, spec: ScheduleSpec) -> ScheduleInfo:
        self.puts += 1
        old = self.schedules.get((namespace, name))
        moved = old is None or (old.spec.cron, old.spec.time_zone) != (spec.cron, spec.time_zone)
        info = ScheduleInfo(
            namespace=namespace,
            name=name,
            spec=spec,
            next_run_at=next_tick(spec.cron, spec.time_zone, self.now)
            if moved or old is None
            else old.next_run_at,
            last_schedule_time=old.last_schedule_time if old else None,
            last_task_id=old.last_task_id if old else None,
            last_skipped_time=None,
            last_skipped_reason=None,
            last_error=old.last_error if old else None,
            created_at=old.created_at if old else self.now,
        )
        self.schedules[namespace, name] = info
        return info

    async def get_schedule(self, namespace: str, name: str) -> ScheduleInfo | None:
        return self.schedules.get((namespace, name))

    async def delete_schedule(self, namespace: str, name: str) -> bool:
        return self.schedules.pop((namespace, name), None) is not None

    async def task_state(self, namespace: str, queue: str, task_id: int) -> str | None:
        return self.task_states.get((namespace, queue, task_id))


class FakeDatabases:
    def __init__(self) -> None:
        self.databases: dict[str, FakeQueueDatabase] = {}
        self.key_databases: dict[str, FakeKeyDatabase] = {}
        self.schedule_databases: dict[str, FakeScheduleDatabase] = {}
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

    def key_database(self, dsn: str) -> FakeKeyDatabase:
        return self.key_databases.setdefault(dsn, FakeKeyDatabase())

    async def keys(self, dsn: str) -> FakeKeyDatabase:
        if dsn in self.errors:
            raise self.errors[dsn]
        return self.key_database(dsn)

    def schedule_database(self, dsn: str) -> FakeScheduleDatabase:
        return self.schedule_databases.setdefault(dsn, FakeScheduleDatabase())

    async def schedules(self, dsn: str) -> FakeScheduleDatabase:
        if dsn in self.errors:
            raise self.errors[dsn]
        return self.schedule_database(dsn)


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

    def __init__(
        self, default_dsn: str | None = DEFAULT_DSN, keys_namespace: str | None = None
    ) -> None:
        self.k8s = FakeKubernetes()
        self.databases = FakeDatabases()
        self.metrics = OperatorMetrics()
        self.events = Events()
        settings = OperatorSettings(
            default_dsn=SecretStr(default_dsn) if default_dsn else None,
            status_interval=2.0,
            min_reconcile_gap=0.5,
            keys_namespace=keys_namespace,
        )
        self.ports = Ports(settings, self.k8s, self.databases, self.metrics)

    def errors(self, kind: str, reason: str) -> float:
        """taskq_reconcile_errors_total{kind, reason}."""
        value = self.metrics.registry.get_sample_value(
            "taskq_reconcile_errors_total", {"kind": kind, "reason": reason}
        )
        return value or 0.0
