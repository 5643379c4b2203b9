"""The WorkerPool reconciler's decisions, on in-memory fakes of its ports: the Deployment it
applies and with how many replicas, the Ready condition's reasons, one Event per problem, and
holding replicas (never scaling to zero) when anything cannot be read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from taskq.errors import DatabaseUnavailableError
from taskq_operator.api import WorkerPoolSpec, WorkerPoolStatus
from taskq_operator.k8s import DeploymentState
from taskq_operator.reconcile.context import Context, WorkerPoolContext
from taskq_operator.reconcile.runtime import PoolMemory
from taskq_operator.reconcile.workerpool import reconcile_workerpool

from .fakes import DEFAULT_DSN, NOW, World, stats

NS, POOL, UID = "shop", "mailers", "pool-uid"
SHOP_DSN = "postgresql://shop@db/shop"


def pool_spec(**fields: Any) -> WorkerPoolSpec:
    values: dict[str, Any] = {"queues": ["emails"], "image": "shop:1", "app": "shop.tasks"}
    return WorkerPoolSpec.model_validate(values | fields)


def scaling(**fields: Any) -> dict[str, Any]:
    return {"minReplicas": 0, "maxReplicas": 10, "targetBacklogPerReplica": 5} | fields


class Pool:
    """One WorkerPool across passes: its status and memory carry over as in the daemon."""

    def __init__(self, world: World, spec: WorkerPoolSpec, generation: int = 1) -> None:
        self.world = world
        self.spec = spec
        self.generation = generation
        self.status = WorkerPoolStatus()
        self.memory = PoolMemory()

    def context(self, now: Any = NOW) -> WorkerPoolContext:
        return Context(
            ports=self.world.ports,
            namespace=NS,
            name=POOL,
            uid=UID,
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            memory=self.memory,
            emit=self.world.events,
            now=now,
        )

    async def reconcile(self, now: Any = NOW) -> WorkerPoolStatus:
        self.status = await reconcile_workerpool(self.context(now))
        return self.status

    def ready(self) -> tuple[str, str, str]:
        (condition,) = [c for c in self.status.conditions if c.type == "Ready"]
        return condition.status, condition.reason, condition.message


def world_with_queue(ready: int = 0, running: int = 0, **queue_spec: Any) -> World:
    """A TaskQueue `emails` in the default database, with that depth."""
    world = World()
    world.k8s.add_task_queue(NS, "emails", **queue_spec)
    world.databases[DEFAULT_DSN].add(f"{NS}/emails", stats(ready=ready, running=running))
    return world


def deployment_replicas(world: World) -> int:
    return world.k8s.deployments[NS, POOL].spec_replicas


async def test_a_pool_at_zero_wakes_with_the_replicas_its_depth_needs() -> None:
    world = world_with_queue(ready=12, running=3)
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    status = await pool.reconcile()

    # the default database's DSN is copied next to the pods, then the Deployment is applied
    assert world.k8s.applied_kinds() == ["Secret", "Deployment"]
    secret = world.k8s.applied[0]
    assert secret["metadata"]["name"] == f"{POOL}-taskq-dsn"
    assert deployment_replicas(world) == 3  # 15 tasks at 5 per replica
    assert world.events.posted == [("Normal", "WakeFromZero", status.last_scale_message)]
    assert status.desired_replicas == 3
    assert status.replicas == 0
    assert status.ready_replicas == 0
    assert (
        status.selector == "app.kubernetes.io/instance=mailers,app.kubernetes.io/name=taskq-worker"
    )
    assert status.observed_generation == 1
    assert status.last_scale_reason == "WakeFromZero"
    assert status.last_scale_time == NOW
    assert "15 tasks (ready 12 + running 3)" in (status.last_scale_message or "")
    assert pool.ready() == ("False", "ReplicasNotReady", "0 of 3 workers ready")
    # ready tasks in the queue wake this pool's daemon
    (subscribers,) = world.databases.subscriptions.values()
    assert subscribers == {UID: pool.memory.wake.set}
    assert [r.replicas for r in pool.memory.history] == [0, 3]


async def test_ready_replicas_make_the_pool_ready_and_a_steady_pass_keeps_its_scale_record() -> (
    None
):
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()
    world.k8s.deployments[NS, POOL] = DeploymentState(2, 2, 2)

    later = NOW + timedelta(seconds=10)
    status = await pool.reconcile(now=later)

    assert pool.ready() == ("True", "ReplicasReady", "2 of 2 workers ready")
    assert status.replicas == 2
    assert status.ready_replicas == 2
    # nothing changed: no Event, and the last scaling is still the wake-up
    assert world.events.reasons() == ["WakeFromZero"]
    assert status.last_scale_reason == "WakeFromZero"
    assert status.last_scale_time == NOW
    assert deployment_replicas(world) == 2


async def test_scale_down_waits_for_its_window_then_reaches_the_deployment() -> None:
    world = world_with_queue(ready=20)
    pool = Pool(world, pool_spec(autoscaling=scaling(scaleDownStabilizationSeconds=60)))
    await pool.reconcile()
    assert deployment_replicas(world) == 4
    world.databases[DEFAULT_DSN].depth[f"{NS}/emails"] = stats(ready=5)

    await pool.reconcile(now=NOW + timedelta(seconds=30))
    assert deployment_replicas(world) == 4
    assert pool.status.last_scale_reason == "WakeFromZero"  # holding is not a scaling

    status = await pool.reconcile(now=NOW + timedelta(seconds=61))
    assert deployment_replicas(world) == 1
    assert status.desired_replicas == 1
    assert status.last_scale_reason == "ScaleDown"
    assert world.events.reasons() == ["WakeFromZero", "ScaleDown"]


async def test_a_paused_queues_ready_tasks_are_not_demand() -> None:
    world = world_with_queue(ready=50, running=5, paused=True)
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    await pool.reconcile()

    assert deployment_replicas(world) == 1  # the 5 running only


async def test_unreadable_depth_holds_the_replicas_instead_of_scaling_to_zero() -> None:
    world = world_with_queue(ready=30)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()
    assert deployment_replicas(world) == 6
    world.databases[DEFAULT_DSN].error = DatabaseUnavailableError("connection refused")

    status = await pool.reconcile(now=NOW + timedelta(minutes=5))

    assert deployment_replicas(world) == 6
    assert status.desired_replicas == 6
    assert world.events.reasons() == ["WakeFromZero"]  # a held pool did not scale
    metric = world.metrics.registry.get_sample_value(
        "taskq_scaling_decisions_total",
        {"namespace": NS, "pool": POOL, "direction": "hold", "reason": "DepthUnavailable"},
    )
    assert metric == 1


async def test_a_database_that_cannot_be_opened_holds_the_replicas() -> None:
    world = world_with_queue(ready=30)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()
    world.databases.errors[DEFAULT_DSN] = DatabaseUnavailableError("no route to host")

    status = await pool.reconcile(now=NOW + timedelta(minutes=5))

    assert deployment_replicas(world) == 6
    assert status.desired_replicas == 6


async def test_a_missing_queue_in_the_database_holds_the_replicas() -> None:
    world = world_with_queue(ready=30)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()
    world.databases[DEFAULT_DSN].queues.clear()

    await pool.reconcile(now=NOW + timedelta(minutes=5))

    assert deployment_replicas(world) == 6


async def test_a_missing_taskqueue_is_reported_once_and_the_deployment_left_alone() -> None:
    world = World()
    world.k8s.deployments[NS, POOL] = DeploymentState(4, 4, 3)
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    status = await pool.reconcile()
    await pool.reconcile(now=NOW + timedelta(seconds=10))

    assert world.k8s.applied == []  # without its queues' database nothing can be built
    assert deployment_replicas(world) == 4
    assert status.desired_replicas == 4
    assert status.replicas == 4
    assert status.ready_replicas == 3
    assert status.last_scale_reason == "DepthUnavailable"
    state, reason, message = pool.ready()
    assert (state, reason) == ("False", "QueueNotFound")
    assert message == (
        f"TaskQueue {NS}/emails does not exist: create it, or remove it from spec.queues"
    )
    assert world.events.posted == [("Warning", "QueueNotFound", message)]
    assert world.errors("WorkerPool", "QueueNotFound") == 2  # counted on every pass


async def test_a_second_problem_is_one_more_event_and_recovery_clears_the_condition() -> None:
    world = World()
    pool = Pool(world, pool_spec(queues=["emails", "invoices"], autoscaling=scaling()))
    world.k8s.add_task_queue(NS, "emails")
    await pool.reconcile()
    world.k8s.add_task_queue(
        NS, "invoices", database={"secretKeyRef": {"name": "shop-db", "key": "url"}}
    )

    await pool.reconcile(now=NOW + timedelta(seconds=1))
    await pool.reconcile(now=NOW + timedelta(seconds=2))

    assert world.events.reasons() == ["QueueNotFound", "MixedDatabases"]
    assert pool.ready()[:2] == ("False", "MixedDatabases")
    assert world.k8s.applied == []

    world.k8s.add_task_queue(NS, "emails", database={"secretKeyRef": {"name": "shop-db"}})
    world.k8s.add_task_queue(
        NS, "invoices", database={"secretKeyRef": {"name": "shop-db", "key": "dsn"}}
    )
    world.k8s.secrets[NS, "shop-db"] = {"dsn": SHOP_DSN}
    for queue in ("emails", "invoices"):
        world.databases[SHOP_DSN].add(f"{NS}/{queue}")

    await pool.reconcile(now=NOW + timedelta(seconds=3))

    # the pool's own database: pods read its Secret, nothing is copied
    assert world.k8s.applied_kinds() == ["Deployment"]
    assert pool.ready() == ("True", "ReplicasReady", "0 of 0 workers ready")
    assert world.events.reasons() == ["QueueNotFound", "MixedDatabases"]
    container = world.k8s.applied[0]["spec"]["template"]["spec"]["containers"][0]
    (dsn_env,) = [e for e in container["env"] if e["name"] == "TASKQ_DSN"]
    assert dsn_env["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "dsn"}


async def test_without_any_database_the_pool_reports_no_database() -> None:
    world = World(default_dsn=None)
    world.k8s.add_task_queue(NS, "emails")
    pool = Pool(world, pool_spec())

    await pool.reconcile()

    state, reason, message = pool.ready()
    assert (state, reason) == ("False", "NoDatabase")
    assert "TASKQ_OPERATOR_DEFAULT_DSN" in message
    assert world.events.posted == [("Warning", "NoDatabase", message)]
    assert world.k8s.applied == []


async def test_a_missing_secret_is_no_database() -> None:
    world = World()
    world.k8s.add_task_queue(NS, "emails", database={"secretKeyRef": {"name": "shop-db"}})
    pool = Pool(world, pool_spec())

    await pool.reconcile()

    assert pool.ready() == ("False", "NoDatabase", f"Secret {NS}/shop-db not found")


async def test_external_mode_applies_spec_replicas_without_reading_depth() -> None:
    world = world_with_queue(ready=1000)
    world.k8s.deployments[NS, POOL] = DeploymentState(2, 2, 2)
    pool = Pool(world, pool_spec(replicas=7, autoscaling={"mode": "External"}))

    status = await pool.reconcile()

    assert deployment_replicas(world) == 7
    assert status.last_scale_reason == "External"
    assert status.last_scale_message == "spec.replicas is 7"
    assert world.events.posted == [("Normal", "External", "spec.replicas is 7")]
    assert world.databases.subscriptions == {}  # depth is not the operator's business here
    assert pool.memory.history == ()


async def test_external_mode_starts_at_min_replicas_until_something_scales_it() -> None:
    world = world_with_queue()
    pool = Pool(world, pool_spec(autoscaling={"mode": "External", "minReplicas": 2}))

    await pool.reconcile()

    assert deployment_replicas(world) == 2
    assert pool.status.last_scale_message == "autoscaling.minReplicas is 2"


REQUESTS_ABOVE_LIMITS = (
    "spec.template.spec.containers[0].resources.requests",
    'Invalid value: "2": must be less than or equal to cpu limit of 1',
)


async def test_a_refused_deployment_is_a_condition_naming_the_pools_field_and_one_event() -> None:
    world = world_with_queue(ready=10)
    world.k8s.refuse_deployments = [REQUESTS_ABOVE_LIMITS]
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    status = await pool.reconcile()
    await pool.reconcile(now=NOW + timedelta(seconds=1))

    state, reason, message = pool.ready()
    assert (state, reason) == ("False", "InvalidPodTemplate")
    assert 'spec.resources.requests: Invalid value: "2": must be less than' in message
    assert "containers[0]" not in message
    assert world.events.posted == [("Warning", "InvalidPodTemplate", message)]
    assert world.errors("WorkerPool", "InvalidPodTemplate") == 2
    # nothing was scaled: no Deployment exists to carry the replicas
    assert (NS, POOL) not in world.k8s.deployments
    assert status.last_scale_reason is None


async def test_a_refused_template_is_retried_with_backoff_and_at_once_after_a_spec_change() -> (
    None
):
    world = world_with_queue()
    world.k8s.refuse_deployments = [REQUESTS_ABOVE_LIMITS]
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    for second in (0, 1, 4, 6, 10, 14, 16):
        await pool.reconcile(now=NOW + timedelta(seconds=second))

    # sent at 0 s, again once 5 s had passed (6 s), then once 10 more had (16 s)
    assert world.k8s.applied_kinds().count("Deployment") == 3
    pool.spec = pool_spec(autoscaling=scaling(), image="shop:2")
    await pool.reconcile(now=NOW + timedelta(seconds=17))
    assert world.k8s.applied_kinds().count("Deployment") == 4

    world.k8s.refuse_deployments = []
    pool.spec = pool_spec(autoscaling=scaling(), image="shop:3")
    await pool.reconcile(now=NOW + timedelta(seconds=18))
    assert pool.ready()[:2] == ("True", "ReplicasReady")
    assert pool.memory.refused is None


async def test_a_distinct_refusal_is_one_more_event() -> None:
    world = world_with_queue()
    world.k8s.refuse_deployments = [REQUESTS_ABOVE_LIMITS]
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()

    world.k8s.refuse_deployments = [
        ("spec.template.spec.containers[0].env[9].valueFrom.secretKeyRef.name", "Required value")
    ]
    pool.spec = pool_spec(autoscaling=scaling(), image="shop:2")
    await pool.reconcile(now=NOW + timedelta(seconds=1))
    await pool.reconcile(now=NOW + timedelta(seconds=2))

    assert world.events.reasons() == ["InvalidPodTemplate", "InvalidPodTemplate"]
    # the user's second env entry, not the tenth variable of the container
    assert "spec.env[1].valueFrom.secretKeyRef.name: Required value" in pool.ready()[2]


async def test_a_refused_template_keeps_the_running_workers_scaling() -> None:
    world = world_with_queue(ready=30)
    world.k8s.deployments[NS, POOL] = DeploymentState(1, 1, 1)
    world.k8s.refuse_deployments = [REQUESTS_ABOVE_LIMITS]
    pool = Pool(world, pool_spec(autoscaling=scaling()))

    status = await pool.reconcile()

    assert world.k8s.scaled == [6]
    assert deployment_replicas(world) == 6
    assert status.desired_replicas == 6
    assert pool.ready()[1] == "InvalidPodTemplate"
    assert world.events.reasons() == ["ScaleUp", "InvalidPodTemplate"]
