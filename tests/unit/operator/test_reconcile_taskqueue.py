"""The TaskQueue reconciler's decisions, on in-memory fakes of its ports: when it provisions,
the Ready condition's reason for each failure, one Event per reason (not one per pass),
Provisioned versus Configured, and the status it writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from taskq.errors import DatabaseUnavailableError
from taskq.store.migrations import MigrationChecksumError
from taskq_operator.api import TaskQueueSpec, TaskQueueStatus
from taskq_operator.k8s import NotFoundError
from taskq_operator.reconcile.context import Context, TaskQueueContext
from taskq_operator.reconcile.runtime import QueueMemory
from taskq_operator.reconcile.taskqueue import delete_taskqueue, reconcile_taskqueue

from .fakes import DEFAULT_DSN, NOW, World, stats

NS, NAME = "shop", "thumbs"
QUEUE = f"{NS}/{NAME}"
SHOP_DSN = "postgresql://shop@db/shop"
SHOP_DB = {"secretKeyRef": {"name": "shop-db", "key": "url"}}


class Queue:
    """One TaskQueue across passes: its status and memory carry over as in the daemon."""

    def __init__(self, world: World, generation: int = 1, **spec: Any) -> None:
        self.world = world
        self.spec = TaskQueueSpec.model_validate(spec)
        self.generation = generation
        self.status = TaskQueueStatus()
        self.memory = QueueMemory()
        self.now = NOW

    def context(self) -> TaskQueueContext:
        return Context(
            ports=self.world.ports,
            namespace=NS,
            name=NAME,
            uid="queue-uid",
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            memory=self.memory,
            emit=self.world.events,
            now=self.now,
        )

    async def reconcile(self, after: float = 2.0) -> TaskQueueStatus:
        """One pass, `after` seconds after the previous one."""
        if self.status.conditions:
            self.now += timedelta(seconds=after)
        self.status = await reconcile_taskqueue(self.context())
        return self.status

    def ready(self) -> tuple[str, str, str]:
        (condition,) = [c for c in self.status.conditions if c.type == "Ready"]
        return condition.status, condition.reason, condition.message

    def ready_since(self) -> Any:
        (condition,) = [c for c in self.status.conditions if c.type == "Ready"]
        return condition.last_transition_time


def gauge(world: World, name: str, **labels: str) -> float | None:
    return world.metrics.registry.get_sample_value(name, {"namespace": NS, "queue": NAME} | labels)


async def test_a_new_queue_is_provisioned_once_with_its_settings_and_reports_its_depth() -> None:
    world = World()
    queue = Queue(world, paused=True)
    oldest = NOW - timedelta(seconds=30)
    world.databases[DEFAULT_DSN].depth[QUEUE] = stats(
        ready=3, running=2, scheduled=4, dead=1, oldest_ready_at=oldest, succeeded_last_minute=9
    )

    status = await queue.reconcile()

    ((name, settings),) = world.databases[DEFAULT_DSN].ensured
    assert name == QUEUE
    assert settings.paused
    assert world.events.posted == [
        ("Normal", "Provisioned", f"queue {QUEUE} created in its database")
    ]
    assert queue.ready() == ("True", "Provisioned", f"queue {QUEUE} is ready")
    assert queue.ready_since() == NOW
    assert status.conditions[0].observed_generation == 1
    assert status.observed_generation == 1
    assert status.tasks is not None
    assert (
        status.tasks.ready,
        status.tasks.scheduled,
        status.tasks.running,
        status.tasks.dead,
    ) == (
        3,
        4,
        2,
        1,
    )
    assert status.oldest_ready_time == oldest
    assert status.throughput is not None
    assert status.throughput.succeeded_last_minute == 9
    assert status.throughput.dead_last_minute == 0
    assert status.observed_at == NOW
    assert gauge(world, "taskq_queue_tasks", state="ready") == 3
    assert gauge(world, "taskq_queue_oldest_ready_age_seconds") == 30

    world.databases[DEFAULT_DSN].depth[QUEUE] = stats(ready=1)
    status = await queue.reconcile()

    assert len(world.databases[DEFAULT_DSN].ensured) == 1  # the same generation: only read
    assert world.events.reasons() == ["Provisioned"]
    assert status.tasks is not None
    assert status.tasks.ready == 1
    assert queue.ready_since() == NOW  # still Ready: the transition time stays


async def test_the_next_reading_comes_when_the_database_can_serve_it() -> None:
    world = World()
    queue = Queue(world)
    await queue.reconcile()
    assert queue.memory.status_every == world.ports.settings.status_interval
    world.databases[DEFAULT_DSN].paced_interval = 7.5  # its many queues' readings
    await queue.reconcile()
    assert queue.memory.status_every == 7.5


async def test_a_spec_change_is_applied_and_announced_as_configured() -> None:
    world = World()
    queue = Queue(world)
    await queue.reconcile()

    queue.generation, queue.spec = 2, TaskQueueSpec.model_validate({"paused": True})
    status = await queue.reconcile()

    ensured = world.databases[DEFAULT_DSN].ensured
    assert [settings.paused for _, settings in ensured] == [False, True]
    assert world.events.posted[1:] == [("Normal", "Configured", f"queue {QUEUE} settings applied")]
    assert status.observed_generation == 2


async def test_after_an_operator_restart_the_spec_is_applied_again_without_an_event() -> None:
    world = World()
    queue = Queue(world)
    await queue.reconcile()
    queue.memory = QueueMemory()  # a new operator process remembers nothing

    await queue.reconcile()

    assert len(world.databases[DEFAULT_DSN].ensured) == 2  # provisioning is idempotent
    assert world.events.reasons() == ["Provisioned"]
    assert queue.ready()[:2] == ("True", "Provisioned")


async def test_a_queue_dropped_behind_the_operators_back_is_reported_then_recreated() -> None:
    world = World()
    queue = Queue(world)
    await queue.reconcile()
    world.databases[DEFAULT_DSN].queues.clear()

    await queue.reconcile()

    message = f"queue {QUEUE} was dropped from its database; recreating it"
    assert queue.ready() == ("False", "QueueMissing", message)
    assert world.events.posted[1:] == [("Warning", "QueueMissing", message)]
    assert queue.memory.provisioned_generation is None
    assert world.errors("TaskQueue", "QueueMissing") == 1

    status = await queue.reconcile()

    assert QUEUE in world.databases[DEFAULT_DSN].queues
    assert queue.ready()[:2] == ("True", "Provisioned")
    assert status.observed_generation == 1
    # recreating is not a new queue for the user: no second Provisioned
    assert world.events.reasons() == ["Provisioned", "QueueMissing"]


async def test_an_unreachable_database_is_one_warning_however_many_passes_fail() -> None:
    world = World()
    queue = Queue(world)
    world.databases[DEFAULT_DSN].depth[QUEUE] = stats(ready=5)
    await queue.reconcile()
    provisioned_at = queue.now
    world.databases.errors[DEFAULT_DSN] = DatabaseUnavailableError("connection refused")

    for _ in range(3):
        status = await queue.reconcile()

    assert queue.ready() == ("False", "DatabaseUnavailable", "connection refused")
    assert queue.ready_since() == provisioned_at + timedelta(seconds=2)
    assert world.events.posted[1:] == [("Warning", "DatabaseUnavailable", "connection refused")]
    assert world.errors("TaskQueue", "DatabaseUnavailable") == 3
    # the last observation stays, with its time; the applied generation too
    assert status.tasks is not None
    assert status.tasks.ready == 5
    assert status.observed_at == NOW
    assert status.observed_generation == 1


async def test_each_new_reason_is_one_more_event_and_a_recovery_ends_the_streak() -> None:
    world = World()
    queue = Queue(world)
    db = world.databases[DEFAULT_DSN]
    await queue.reconcile()

    db.error = DatabaseUnavailableError("server closed the connection")  # fails mid-pass
    await queue.reconcile()
    await queue.reconcile()
    db.error = None
    await queue.reconcile()
    assert queue.ready()[:2] == ("True", "Provisioned")
    db.error = DatabaseUnavailableError("server closed the connection")
    await queue.reconcile()

    assert world.events.reasons() == [
        "Provisioned",
        "DatabaseUnavailable",
        "DatabaseUnavailable",  # after a recovery it is news again
    ]


async def test_a_missing_secret_is_reported_until_it_appears() -> None:
    world = World()
    queue = Queue(world, database=SHOP_DB)

    await queue.reconcile()
    await queue.reconcile()

    message = f"Secret {NS}/shop-db not found"
    assert queue.ready() == ("False", "SecretNotFound", message)
    assert world.events.posted == [("Warning", "SecretNotFound", message)]
    assert world.databases.databases == {}  # the default database was not used instead

    world.k8s.secrets[NS, "shop-db"] = {"dsn": SHOP_DSN}
    await queue.reconcile()
    assert queue.ready() == (
        "False",
        "SecretNotFound",
        f"Secret {NS}/shop-db has no key 'url'",
    )
    assert world.events.reasons() == ["SecretNotFound"]

    world.k8s.secrets[NS, "shop-db"] = {"url": SHOP_DSN}
    status = await queue.reconcile()

    assert QUEUE in world.databases[SHOP_DSN].queues
    assert queue.ready()[:2] == ("True", "Provisioned")
    assert status.observed_generation == 1
    assert world.events.reasons() == ["SecretNotFound", "Provisioned"]


async def test_without_a_database_anywhere_the_queue_reports_no_database() -> None:
    world = World(default_dsn=None)
    queue = Queue(world)

    await queue.reconcile()

    state, reason, message = queue.ready()
    assert (state, reason) == ("False", "NoDatabase")
    assert "spec.database.secretKeyRef" in message
    assert "TASKQ_OPERATOR_DEFAULT_DSN" in message
    assert world.events.posted == [("Warning", "NoDatabase", message)]
    assert queue.status.observed_generation is None
    assert queue.status.tasks is None


async def test_a_schema_that_does_not_match_the_migrations_is_a_schema_conflict() -> None:
    world = World()
    queue = Queue(world)
    problem = "migration 0002_functions.sql was changed after it was applied"
    world.databases.errors[DEFAULT_DSN] = MigrationChecksumError(problem)

    await queue.reconcile()

    assert queue.ready() == ("False", "SchemaConflict", problem)
    assert world.events.posted == [("Warning", "SchemaConflict", problem)]


async def test_deletion_retains_the_queue_by_default_and_forgets_its_metrics() -> None:
    world = World()
    queue = Queue(world)
    await queue.reconcile()
    assert gauge(world, "taskq_queue_tasks", state="ready") == 0

    dropped = await delete_taskqueue(world.ports, NS, NAME, queue.spec)

    assert not dropped
    assert QUEUE in world.databases[DEFAULT_DSN].queues
    assert gauge(world, "taskq_queue_tasks", state="ready") is None


async def test_deletion_with_the_delete_policy_drops_the_queue() -> None:
    world = World()
    queue = Queue(world, deletionPolicy="Delete", database=SHOP_DB)
    world.k8s.secrets[NS, "shop-db"] = {"url": SHOP_DSN}
    await queue.reconcile()

    assert await delete_taskqueue(world.ports, NS, NAME, queue.spec)
    assert QUEUE not in world.databases[SHOP_DSN].queues
    assert not await delete_taskqueue(world.ports, NS, NAME, queue.spec)  # already gone


async def test_a_delete_that_cannot_reach_the_database_raises_for_the_caller_to_retry() -> None:
    world = World()
    spec = TaskQueueSpec.model_validate({"deletionPolicy": "Delete", "database": SHOP_DB})

    with pytest.raises(NotFoundError):
        await delete_taskqueue(world.ports, NS, NAME, spec)

    world.k8s.secrets[NS, "shop-db"] = {"url": SHOP_DSN}
    world.databases.errors[SHOP_DSN] = DatabaseUnavailableError("connection refused")
    with pytest.raises(DatabaseUnavailableError):
        await delete_taskqueue(world.ports, NS, NAME, spec)


SECRET = "whsec_" + "A" * 43 + "="
HOOK = {"name": "billing", "url": "https://billing.example.com/h", "events": ["Dead"],
        "secretRef": {"name": "hooks", "key": "billing"}}  # fmt: skip


async def test_webhooks_are_declared_with_their_secrets_once_and_again_when_one_rotates() -> None:
    world = World()
    world.k8s.secrets[(NS, "hooks")] = {"billing": SECRET + "\n"}
    queue = Queue(world, webhooks=[HOOK, {"name": "cb", "secretRef": HOOK["secretRef"],
                                          "allowHosts": ["127.0.0.1"]}])  # fmt: skip
    await queue.reconcile()
    db = world.databases[DEFAULT_DSN]
    assert queue.ready()[0] == "True"
    by, billing = db.webhooks[(QUEUE, "billing")]
    assert by == f"TaskQueue {QUEUE}"
    assert billing.secret == SECRET
    assert billing.url == HOOK["url"]
    assert [e.value for e in billing.events] == ["Dead"]
    assert db.webhooks[(QUEUE, "cb")][1].url is None
    await queue.reconcile()
    assert db.declarations == 1

    rotated = "whsec_" + "B" * 43 + "="
    world.k8s.secrets[(NS, "hooks")] = {"billing": rotated}
    await queue.reconcile()
    assert db.declarations == 2
    assert db.webhooks[(QUEUE, "billing")][1].secret == rotated

    queue.generation, queue.spec = 2, TaskQueueSpec.model_validate({"webhooks": [HOOK]})
    await queue.reconcile()
    assert sorted(db.webhooks) == [(QUEUE, "billing")]
    await delete_taskqueue(world.ports, NS, NAME, queue.spec)
    assert db.webhooks == {}


async def test_a_missing_webhook_secret_or_a_refused_url_is_not_ready_naming_the_field() -> None:
    world = World()
    queue = Queue(world, webhooks=[HOOK])
    await queue.reconcile()
    status, reason, message = queue.ready()
    assert (status, reason) == ("False", "SecretNotFound")
    assert message.startswith("spec.webhooks[0].secretRef: Secret shop/hooks not found")

    world.k8s.secrets[(NS, "hooks")] = {"billing": SECRET}
    queue.generation = 2
    queue.spec = TaskQueueSpec.model_validate(
        {"webhooks": [HOOK | {"url": "http://billing.example.com/h"}]}
    )
    await queue.reconcile()
    status, reason, message = queue.ready()
    assert (status, reason) == ("False", "InvalidWebhook")
    assert message.startswith("spec.webhooks[0].url: ")
    assert "allowHosts" in message

    world.k8s.secrets[(NS, "hooks")] = {"billing": "hunter2"}
    queue.spec = TaskQueueSpec.model_validate({"webhooks": [HOOK]})
    await queue.reconcile()
    assert queue.ready()[1:] == ("InvalidWebhook", queue.ready()[2])
    assert queue.ready()[2].startswith("spec.webhooks[0].secretRef: ")


def test_webhook_names_are_unique() -> None:
    with pytest.raises(ValueError, match="a name of its own"):
        TaskQueueSpec.model_validate({"webhooks": [HOOK, HOOK]})
