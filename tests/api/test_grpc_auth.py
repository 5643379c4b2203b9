"""Every taskq.v1 method without a key, with unusable keys, with another namespace's key and
with each role: the status code, its details, and that a refused call changed nothing in the
database. The same rules as REST's (test_api_auth.py), from the same service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from google.protobuf.message import Message

from taskq.client import Client
from taskq.models import QueueInfo
from taskq.schedules import ScheduleSpec
from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import grpc_key, grpc_refusal, stored_tasks, unusable_credentials
from tests.api.test_api_schedules import SPEC, stored_schedules
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub


@dataclass
class Scene:
    """A queue with a ready task and a dead one, a schedule in its namespace, and what the
    database held at the start."""

    queue: QueueInfo
    task: int
    dead_task: int
    before: list[dict[str, Any]]
    schedules: list[dict[str, Any]]

    async def unchanged(self, pool: asyncpg.Pool) -> None:
        assert await stored_tasks(pool, self.queue) == self.before
        assert await stored_schedules(pool, self.queue.namespace) == self.schedules
        paused = await pool.fetchval("SELECT paused FROM taskq.queues WHERE id = $1",
                                     self.queue.id)
        assert paused is False


@dataclass(frozen=True)
class Rpc:
    method: str
    request: Callable[[Scene], Message]
    writes: bool = False
    by_queue: bool = True  # names its queue (else a task, or nothing)

    def __str__(self) -> str:
        return self.method

    async def call(self, stub: GrpcStub, scene: Scene, metadata: Any) -> list[Message]:
        """The answers: one, or a stream's (WatchTask of the dead task: one, then its end)."""
        request = self.request(scene)
        if isinstance(request, pb.WatchTaskRequest):
            return [m async for m in stub.WatchTask(request, metadata=metadata)]
        answer: Message = await getattr(stub, self.method)(request, metadata=metadata)
        return [answer]


def _queue(scene: Scene) -> dict[str, str]:
    return {"namespace": scene.queue.namespace, "name": scene.queue.name}


def _schedule(scene: Scene) -> dict[str, str]:
    return {"namespace": scene.queue.namespace, "name": "nightly"}


RPCS = [
    Rpc("Enqueue", lambda s: pb.EnqueueRequest(
        **_queue(s), task=pb.TaskSubmission(task_name="t")), writes=True),
    Rpc("EnqueueBatch", lambda s: pb.EnqueueBatchRequest(
        **_queue(s), tasks=[pb.TaskSubmission(task_name="t")]), writes=True),
    Rpc("GetTask", lambda s: pb.GetTaskRequest(task_id=s.task), by_queue=False),
    Rpc("GetTask", lambda s: pb.GetTaskRequest(task_id=s.task, wait_seconds=0.1),
        by_queue=False),
    Rpc("ListTasks", lambda s: pb.ListTasksRequest(queue=s.queue.full_name)),
    Rpc("CancelTask", lambda s: pb.CancelTaskRequest(task_id=s.task), writes=True,
        by_queue=False),
    Rpc("RetryTask", lambda s: pb.RetryTaskRequest(task_id=s.dead_task), writes=True,
        by_queue=False),
    Rpc("ListQueues", lambda s: pb.ListQueuesRequest(), by_queue=False),
    Rpc("GetQueue", lambda s: pb.GetQueueRequest(**_queue(s))),
    Rpc("PauseQueue", lambda s: pb.PauseQueueRequest(**_queue(s)), writes=True),
    Rpc("ResumeQueue", lambda s: pb.ResumeQueueRequest(**_queue(s)), writes=True),
    Rpc("ReplayDead", lambda s: pb.ReplayDeadRequest(
        namespace=s.queue.namespace, name=s.queue.name, all=True), writes=True),
    Rpc("WatchTask", lambda s: pb.WatchTaskRequest(task_id=s.dead_task), by_queue=False),
    Rpc("ListSchedules", lambda s: pb.ListSchedulesRequest(), by_queue=False),
    Rpc("ListSchedules", lambda s: pb.ListSchedulesRequest(namespace=s.queue.namespace)),
    Rpc("GetSchedule", lambda s: pb.GetScheduleRequest(**_schedule(s))),
    Rpc("PutSchedule", lambda s: pb.PutScheduleRequest(**_schedule(s), spec=pb.ScheduleSpec(
        queue="q", task_name="report", cron="@daily")), writes=True),
    Rpc("DeleteSchedule", lambda s: pb.DeleteScheduleRequest(**_schedule(s)), writes=True),
    Rpc("SuspendSchedule", lambda s: pb.SuspendScheduleRequest(**_schedule(s)), writes=True),
    Rpc("ResumeSchedule", lambda s: pb.ResumeScheduleRequest(**_schedule(s)), writes=True),
]
# The lists across namespaces: another namespace's key gets its own namespaces' items.
_LISTS = {"ListQueues": "queues", "ListSchedules": "schedules"}
ids = [f"{rpc}-{i}" for i, rpc in enumerate(RPCS)]


@pytest.fixture
async def scene(make_queue: MakeQueue, client: Client, pool: asyncpg.Pool) -> Scene:
    queue = await make_queue(max_attempts=1)
    dead = await client.enqueue(queue.full_name, "t", {"n": 1})
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")
    task = await client.enqueue(queue.full_name, "t", {"n": 2})
    await client.create_schedule(f"{queue.namespace}/nightly", ScheduleSpec(**SPEC))
    return Scene(queue, task.id, dead.id, await stored_tasks(pool, queue),
                 await stored_schedules(pool, queue.namespace))


def test_every_method_is_tried() -> None:
    assert {rpc.method for rpc in RPCS} == set(
        pb.DESCRIPTOR.services_by_name["TaskqService"].methods_by_name)


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
async def test_no_key_is_unauthenticated(
    rpc: Rpc, scene: Scene, grpc_stub: GrpcStub, pool: asyncpg.Pool,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await rpc.call(grpc_stub, scene, ())

    details = grpc_refusal(raised, grpc.StatusCode.UNAUTHENTICATED)
    assert "Authorization: Bearer" in details and "gRPC metadata" in details
    await scene.unchanged(pool)


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
@pytest.mark.parametrize("kind", ["unknown", "malformed", "basic", "tampered", "revoked",
                                  "expired"])
async def test_an_unusable_key_is_unauthenticated(
    rpc: Rpc, kind: str, scene: Scene, grpc_stub: GrpcStub, pool: asyncpg.Pool,
    make_key: MakeKey,
) -> None:
    value = await unusable_credentials(kind, make_key, pool, scene.queue.namespace)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await rpc.call(grpc_stub, scene, (("authorization", value),))

    details = grpc_refusal(raised, grpc.StatusCode.UNAUTHENTICATED)
    assert value.split(" ", 1)[1] not in details
    await scene.unchanged(pool)


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
async def test_another_namespaces_key_reaches_nothing_here(
    rpc: Rpc, scene: Scene, grpc_stub: GrpcStub, pool: asyncpg.Pool, make_key: MakeKey,
) -> None:
    key = grpc_key(await make_key("admin", [f"{scene.queue.namespace}x", "elsewhere"]))

    if rpc.method in _LISTS and not rpc.by_queue:
        [answer] = await rpc.call(grpc_stub, scene, key)
        assert all(item.namespace in (f"{scene.queue.namespace}x", "elsewhere")
                   for item in getattr(answer, _LISTS[rpc.method]))
        return
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await rpc.call(grpc_stub, scene, key)

    if rpc.by_queue:
        details = grpc_refusal(raised, grpc.StatusCode.PERMISSION_DENIED)
        assert f"does not reach namespace '{scene.queue.namespace}'" in details
    else:  # a task outside the key's namespaces is not revealed to exist
        assert grpc_refusal(raised, grpc.StatusCode.NOT_FOUND).startswith("no task with id")
    await scene.unchanged(pool)


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
async def test_a_viewer_reads_and_changes_nothing(
    rpc: Rpc, scene: Scene, grpc_stub: GrpcStub, pool: asyncpg.Pool, make_key: MakeKey,
) -> None:
    key = grpc_key(await make_key("viewer", [scene.queue.namespace]))

    if rpc.writes:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rpc.call(grpc_stub, scene, key)
        details = grpc_refusal(raised, grpc.StatusCode.PERMISSION_DENIED)
        assert "needs a key of role operator or higher" in details
        assert "viewer key" in details
    else:
        answers = await rpc.call(grpc_stub, scene, key)
        tasks = [a for a in answers if isinstance(a, pb.Task)]
        assert all(t.payload_hidden and t.payload_json == "null" for t in tasks)
        schedules = [s for a in answers if isinstance(a, pb.ListSchedulesResponse)
                     for s in a.schedules]
        schedules += [a for a in answers if isinstance(a, pb.Schedule)]
        assert all(s.payload_hidden and s.spec.payload_json == "null" for s in schedules)
    await scene.unchanged(pool)


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
@pytest.mark.parametrize("role", ["operator", "admin"])
async def test_operators_and_admins_may_do_everything_in_their_namespaces(
    rpc: Rpc, role: str, scene: Scene, grpc_stub: GrpcStub, make_key: MakeKey,
) -> None:
    key = grpc_key(await make_key(role, [scene.queue.namespace, "elsewhere"]))

    answers = await rpc.call(grpc_stub, scene, key)

    assert len(answers) == 1
