"""Queue depth counted up to a cap (migration 0030): a queue deeper than the cap reports the
cap and names the count as capped, below it every count is exact, and the operator's pools
read at a cap that still scales them to maxReplicas."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import SecretStr

from taskq import TaskRequest
from taskq.client import Client
from taskq.errors import InvalidArgumentError
from taskq.models import QueueInfo
from taskq_operator.api import TaskQueueSpec, TaskQueueStatus, WorkerPoolSpec, WorkerPoolStatus
from taskq_operator.databases import Databases
from taskq_operator.metrics import OperatorMetrics
from taskq_operator.reconcile.context import Context
from taskq_operator.reconcile.ports import Ports
from taskq_operator.reconcile.runtime import PoolMemory, QueueMemory
from taskq_operator.reconcile.taskqueue import reconcile_taskqueue
from taskq_operator.reconcile.workerpool import reconcile_workerpool
from taskq_operator.settings import OperatorSettings
from tests.conftest import MakeQueue
from tests.unit.operator.fakes import NOW, Events, FakeKubernetes

READY = 1_500


async def fill(client: Client, queue: QueueInfo, ready: int) -> None:
    await client.enqueue_many(queue.full_name, [TaskRequest("t", {}) for _ in range(ready)])


async def test_a_count_past_the_cap_reports_the_cap_and_says_so(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await fill(client, queue, READY)
    await client.enqueue(queue.full_name, "later", delay=3600)

    capped = await client.queue_stats(queue, cap=1000)
    assert (capped.ready, capped.scheduled, capped.count_cap) == (1000, 1, 1000)
    assert capped.capped == ("ready",)
    assert capped.shown("ready") == "≥ 1000"
    assert capped.shown("scheduled") == "1"
    assert capped.model_dump(mode="json")["capped"] == ["ready"]

    exact = await client.queue_stats(queue, cap=READY + 1)
    assert (exact.ready, exact.capped) == (READY, ())
    # the default cap is far above this queue: exact
    assert (await client.queue_stats(queue)).ready == READY


async def test_due_tasks_count_with_ready_ones_within_the_same_cap(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await fill(client, queue, 600)
    await client.enqueue_many(
        queue.full_name, [TaskRequest("t", {}, delay=3600) for _ in range(600)]
    )
    # their time has come, not yet promoted by a claim
    await pool.execute(
        "UPDATE taskq.tasks SET run_at = now() - interval '1 minute' "
        "WHERE queue_id = $1 AND state = 'scheduled'",
        queue.id,
    )
    stats = await client.queue_stats(queue, cap=1000)
    assert (stats.ready, stats.scheduled, stats.capped) == (1000, 0, ("ready",))
    assert (await client.queue_stats(queue, cap=1201)).ready == 1200


async def test_the_oldest_ready_time_is_the_oldest_over_every_priority(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Read from one index probe per priority present, not a scan of the backlog."""
    queue = await make_queue()
    for priority in (90, 50, 10):
        await client.enqueue_many(
            queue.full_name, [TaskRequest("t", {}, priority=priority) for _ in range(20)]
        )
    # the oldest ready task has the lowest priority; a due scheduled one is older still
    await pool.execute(
        "UPDATE taskq.tasks SET run_at = now() - interval '1 hour' "
        "WHERE id = (SELECT max(id) FROM taskq.tasks WHERE queue_id = $1)",
        queue.id,
    )
    expected = await pool.fetchval(
        "SELECT min(run_at) FROM taskq.tasks WHERE queue_id = $1 AND state = 'ready'", queue.id
    )
    assert (await client.queue_stats(queue, cap=10)).oldest_ready_at == expected
    due = await client.enqueue(queue.full_name, "t", delay=3600)
    await pool.execute(
        "UPDATE taskq.tasks SET run_at = now() - interval '2 hours' WHERE id = $1", due.id
    )
    older = await pool.fetchval("SELECT run_at FROM taskq.tasks WHERE id = $1", due.id)
    assert (await client.queue_stats(queue, cap=10)).oldest_ready_at == older


async def test_a_cap_out_of_range_is_refused(client: Client, make_queue: MakeQueue) -> None:
    queue = await make_queue()
    for cap in (0, 1_000_000_001):
        with pytest.raises(InvalidArgumentError, match="p_cap"):
            await client.queue_stats(queue, cap=cap)


def operator_ports(dsn: str, count_cap: int) -> tuple[Ports, FakeKubernetes, Databases]:
    """The reconcilers' ports: this database (the real one), an in-memory API server."""
    k8s, databases = FakeKubernetes(), Databases()
    settings = OperatorSettings(default_dsn=SecretStr(dsn), count_cap=count_cap)
    return Ports(settings, k8s, databases, OperatorMetrics()), k8s, databases


async def test_a_pool_reading_at_its_cap_scales_to_max_replicas(
    dsn: str, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await fill(client, queue, READY)
    ports, k8s, databases = operator_ports(dsn, count_cap=10)
    k8s.add_task_queue(queue.namespace, queue.name)
    # 10 replicas x 100 tasks: the pool counts at most 1,000 of the 1,500
    spec = WorkerPoolSpec.model_validate(
        {
            "queues": [queue.name],
            "image": "app:1",
            "app": "app.tasks",
            "autoscaling": {"minReplicas": 0, "maxReplicas": 10, "targetBacklogPerReplica": 100},
        }
    )
    events = Events()
    try:
        status = await reconcile_workerpool(
            Context(
                ports=ports,
                namespace=queue.namespace,
                name="workers",
                uid="pool-uid",
                generation=1,
                spec=spec,
                status=WorkerPoolStatus(),
                memory=PoolMemory(),
                emit=events,
                now=NOW,
            )
        )
    finally:
        await databases.close()
    assert k8s.deployments[queue.namespace, "workers"].spec_replicas == 10
    assert status.desired_replicas == 10
    (scaled,) = events.posted
    assert scaled[1] == "WakeFromZero"
    assert scaled[2].startswith("at least 1000 tasks (ready 1000 + running 0)"), scaled


async def test_a_task_queue_status_names_its_capped_counts(
    dsn: str, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    await fill(client, queue, 30)
    ports, _, databases = operator_ports(dsn, count_cap=25)
    try:
        status = await reconcile_taskqueue(
            Context(
                ports=ports,
                namespace=queue.namespace,
                name=queue.name,
                uid="queue-uid",
                generation=1,
                spec=TaskQueueSpec(),
                status=TaskQueueStatus(),
                memory=QueueMemory(),
                emit=Events(),
                now=NOW,
            )
        )
    finally:
        await databases.close()
    written = status.to_k8s()
    assert written["tasks"]["ready"] == 25
    assert (written["countCap"], written["capped"]) == (25, ["tasks.ready"])
    capped = ports.metrics.registry.get_sample_value(
        "taskq_queue_count_capped",
        {"namespace": queue.namespace, "queue": queue.name, "count": "ready"},
    )
    assert capped == 1.0
