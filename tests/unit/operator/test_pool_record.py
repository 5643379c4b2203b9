"""The WorkerPool's record for the dashboard (taskq.worker_pools), on in-memory fakes: written
when the pool changes and never on a pass that changes nothing, its scaling decisions kept
through a database outage, moved with the pool's queues, removed with the pool."""

from __future__ import annotations

from datetime import timedelta

from taskq.errors import DatabaseUnavailableError
from taskq.store.pools import KEPT_DECISIONS
from taskq_operator.k8s import DeploymentState
from taskq_operator.reconcile.workerpool import forget_workerpool

from .fakes import DEFAULT_DSN, NOW, stats
from .test_reconcile_workerpool import (
    NS,
    POOL,
    SHOP_DSN,
    Pool,
    pool_spec,
    scaling,
    world_with_queue,
)


async def test_a_scaling_is_recorded_with_its_reason_and_steady_passes_write_nothing() -> None:
    world = world_with_queue(ready=12, running=3)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    db = world.databases[DEFAULT_DSN]

    await pool.reconcile()

    report, decisions = db.pools[NS, POOL]
    assert (report.queues, report.autoscaling, report.min_replicas, report.max_replicas) == (
        ("emails",), "Builtin", 0, 10,
    )
    assert (report.desired, report.replicas, report.ready) == (3, 0, 0)
    (decision,) = decisions
    assert (decision.at, decision.from_replicas, decision.to_replicas) == (NOW, 0, 3)
    assert decision.reason == "WakeFromZero"
    assert "15 tasks (ready 12 + running 3)" in decision.message
    assert db.pool_writes == 1

    # ten polls that change nothing write nothing
    for second in range(1, 11):
        await pool.reconcile(now=NOW + timedelta(seconds=second))
    assert db.pool_writes == 1

    # pods becoming ready are a change, without a decision
    world.k8s.deployments[NS, POOL] = DeploymentState(3, 3, 2)
    await pool.reconcile(now=NOW + timedelta(seconds=20))
    report, decisions = db.pools[NS, POOL]
    assert (report.replicas, report.ready) == (3, 2)
    assert len(decisions) == 1
    assert db.pool_writes == 2


async def test_decisions_made_while_the_database_is_down_are_recorded_once_it_is_back() -> None:
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling(scaleDownStabilizationSeconds=0)))
    db = world.databases[DEFAULT_DSN]
    await pool.reconcile()  # 0 -> 2
    db.error = DatabaseUnavailableError("no route to host")
    # the depth cannot be read either: the pool holds, nothing recorded
    await pool.reconcile(now=NOW + timedelta(seconds=10))
    assert len(db.pools[NS, POOL][1]) == 1
    db.error = None
    db.depth[f"{NS}/emails"] = stats(ready=40)
    db.error = None

    await pool.reconcile(now=NOW + timedelta(seconds=20))  # 2 -> 8

    _, decisions = db.pools[NS, POOL]
    assert [(d.from_replicas, d.to_replicas) for d in decisions] == [(2, 8), (0, 2)]


async def test_a_decision_whose_record_failed_is_kept_for_the_next_pass() -> None:
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    db = world.databases[DEFAULT_DSN]
    db.record_error = DatabaseUnavailableError("connection reset")
    await pool.reconcile()  # 0 -> 2, not recorded
    assert (NS, POOL) not in db.pools
    assert len(pool.memory.unrecorded) == 1

    db.record_error = None
    await pool.reconcile(now=NOW + timedelta(seconds=10))

    _, decisions = db.pools[NS, POOL]
    assert [(d.from_replicas, d.to_replicas, d.at) for d in decisions] == [(0, 2, NOW)]
    assert pool.memory.unrecorded == []


async def test_at_most_the_kept_number_of_decisions_waits_in_memory() -> None:
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling(scaleDownStabilizationSeconds=0)))
    db = world.databases[DEFAULT_DSN]
    db.record_error = DatabaseUnavailableError("connection reset")
    for step in range(KEPT_DECISIONS + 5):
        db.depth[f"{NS}/emails"] = stats(ready=10 if step % 2 else 40)
        await pool.reconcile(now=NOW + timedelta(seconds=step))
    assert len(pool.memory.unrecorded) == KEPT_DECISIONS


async def test_a_pool_whose_queues_move_database_is_recorded_there_and_forgotten_here() -> None:
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()
    assert (NS, POOL) in world.databases[DEFAULT_DSN].pools

    world.k8s.secrets[NS, "shop-db"] = {"dsn": SHOP_DSN}
    world.k8s.add_task_queue(
        NS, "emails", database={"secretKeyRef": {"name": "shop-db", "key": "dsn"}}
    )
    world.databases[SHOP_DSN].add(f"{NS}/emails", stats(ready=10))
    await pool.reconcile(now=NOW + timedelta(seconds=10))

    assert (NS, POOL) not in world.databases[DEFAULT_DSN].pools
    assert world.databases[SHOP_DSN].pools[NS, POOL][0].desired == 2


async def test_a_deleted_pool_is_forgotten_where_it_was_recorded() -> None:
    world = world_with_queue(ready=10)
    pool = Pool(world, pool_spec(autoscaling=scaling()))
    await pool.reconcile()

    await forget_workerpool(world.ports, NS, POOL, pool.memory)

    assert world.databases[DEFAULT_DSN].pools == {}
    # a pool never recorded has nothing to forget
    await forget_workerpool(world.ports, NS, "other", pool.memory)
