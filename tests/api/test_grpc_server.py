"""The gRPC server around the methods: the log line, the correlation id, the metrics, failures
of the server and of the database, one service layer shared with REST, and `taskq api`
serving gRPC for real as a command until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest
from devenv.postgres import free_port

from taskq import auth
from taskq.client import Client
from taskq.models import QueueInfo
from taskq.store.keys import PgKeyStore
from taskq.worker.logs import JsonFormatter
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc
from taskq_api.server.process import ApiServer, open_service
from taskq_api.server.settings import ApiSettings
from taskq_api.service import ApiService
from tests.api.conftest import MakeKey, RunningApi, running_api
from tests.api.helpers import bearer, grpc_key, grpc_refusal, queue_path
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

_BIN = Path(sys.executable).parent
_ENQUEUE = "/taskq.v1.TaskqService/Enqueue"


async def test_one_json_log_line_per_call_without_secrets_or_payloads(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    with caplog.at_level(logging.INFO, logger="taskq_api.access"):
        call = grpc_stub.Enqueue(pb.EnqueueRequest(
            namespace=queue.namespace, name=queue.name,
            task=pb.TaskSubmission(task_name="t", payload_json='{"card": "4111-1111"}')),
            metadata=(*grpc_key(secret), ("x-correlation-id", "order-42")))
        await call
        sent_back = dict(await call.initial_metadata() or ())
    [record] = [r for r in caplog.records if r.name == "taskq_api.access"]
    line = JsonFormatter().format(record)
    entry = json.loads(line)

    assert sent_back["x-correlation-id"] == "order-42"
    assert (entry["method"], entry["code"]) == (_ENQUEUE, "OK")
    assert entry["key_prefix"] == auth.parse_prefix(secret)
    assert entry["correlation_id"] == "order-42"
    assert isinstance(entry["duration_ms"], float)
    assert secret not in line
    assert secret.split("_", 2)[2] not in line  # the secret part (it may hold "_" itself)
    assert "4111" not in line
    assert queue.namespace not in line  # the method, not what the request named


async def test_a_refused_call_is_logged_with_its_code_and_a_new_correlation_id(
    grpc_stub: GrpcStub, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="taskq_api.access"), \
            pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.ListQueues(pb.ListQueuesRequest(),
                                   metadata=(("x-correlation-id", "a b;injected=1"),))
    [record] = [r for r in caplog.records if r.name == "taskq_api.access"]
    entry = json.loads(JsonFormatter().format(record))
    sent_back = dict(raised.value.initial_metadata() or ())

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (entry["code"], entry["key_prefix"]) == ("UNAUTHENTICATED", None)
    assert len(entry["correlation_id"]) == 32
    assert sent_back["x-correlation-id"] == entry["correlation_id"]


async def test_metrics_count_calls_by_method_and_code_beside_rest(
    api: RunningApi, grpc_stub: GrpcStub, http: httpx.AsyncClient, make_queue: MakeQueue,
    make_key: MakeKey, client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("viewer", [queue.namespace]))
    created = await client.enqueue(queue.full_name, "t")
    labels = {"method": "/taskq.v1.TaskqService/GetTask", "code": "OK"}
    before = api.registry.get_sample_value("taskq_api_grpc_calls_total", labels) or 0.0

    for _ in range(3):
        await grpc_stub.GetTask(pb.GetTaskRequest(task_id=created.id), metadata=key)
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_stub.GetTask(pb.GetTaskRequest(task_id=created.id))
    text = (await http.get("/metrics")).text

    assert api.registry.get_sample_value("taskq_api_grpc_calls_total", labels) == before + 3
    assert ('taskq_api_grpc_calls_total{code="UNAUTHENTICATED",'
            'method="/taskq.v1.TaskqService/GetTask"}') in text
    assert "taskq_api_grpc_call_duration_seconds_bucket" in text
    assert "taskq_api_requests_total" in text  # REST's, in the same registry


class FailingService(ApiService):
    """The real service, but listing queues fails as a bug would."""

    async def queues(self, key: auth.ApiKey) -> list[QueueInfo]:
        raise RuntimeError("password=hunter2 at line 3")


async def test_an_unexpected_error_is_internal_without_its_message(
    dsn: str, pool: asyncpg.Pool, make_key: MakeKey, caplog: pytest.LogCaptureFixture,
) -> None:
    key = grpc_key(await make_key("viewer", None))
    service = FailingService(Client(pool), PgKeyStore(pool))
    async with running_api(dsn, service) as api, \
            grpc.aio.insecure_channel(api.grpc_target) as channel:
        stub = pb_grpc.TaskqServiceStub(channel)
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListQueues(pb.ListQueuesRequest(), metadata=key)

    details = grpc_refusal(raised, grpc.StatusCode.INTERNAL)
    assert "hunter2" not in details
    assert "correlation id" in details
    [logged] = [r for r in caplog.records if r.name == "taskq_api.errors"]
    assert logged.exc_info is not None  # the traceback is in the log


async def test_without_a_database_calls_are_unavailable_without_the_cause() -> None:
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    async with running_api(unreachable) as api, \
            grpc.aio.insecure_channel(api.grpc_target) as channel:
        stub = pb_grpc.TaskqServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListQueues(pb.ListQueuesRequest(), metadata=grpc_key(
                auth.new_key().secret))

    details = grpc_refusal(raised, grpc.StatusCode.UNAVAILABLE)
    assert "retry later" in details
    assert "127.0.0.1" not in details  # the cause is for the log, not the caller


class RecordingService(ApiService):
    """The real service, noting which of its operations each call reaches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reached: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in OPERATIONS:
            object.__getattribute__(self, "reached").append(name)
        return super().__getattribute__(name)


# The dashboard's own operations (docs/dashboard.md): its overview of every queue's counts, a
# queue's throughput and wait charts and worker pools, key management, and bulk cancel and
# retry of a search's tasks, which REST and gRPC do not offer (yet).
DASHBOARD_ONLY = frozenset({
    "authenticate_digest", "overview", "throughput", "throughputs", "wait", "worker_pools",
    "keys", "create_key", "revoke_key", "writable_queue", "cancel_tasks", "retry_tasks",
})
# Every operation of the service, but the two every call and /readyz make.
OPERATIONS = frozenset(
    name for name in vars(ApiService)
    if not name.startswith("_") and callable(getattr(ApiService, name))
    and name not in ("authenticate", "schema_version", *DASHBOARD_ONLY)
)


async def test_rest_and_grpc_reach_the_same_service_operations(
    dsn: str, pool: asyncpg.Pool, make_queue: MakeQueue, make_key: MakeKey, client: Client,
) -> None:
    queue = await make_queue(max_attempts=1)
    secret = await make_key("operator", [queue.namespace])
    dead = await client.enqueue(queue.full_name, "t")
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")
    task = await client.enqueue(queue.full_name, "t")
    where: dict[str, Any] = {"namespace": queue.namespace, "name": queue.name}
    named: dict[str, Any] = {"namespace": queue.namespace, "name": "nightly"}
    schedule = f"/v1/schedules/{queue.namespace}/nightly"
    service = RecordingService(Client(pool), PgKeyStore(pool), max_wait=5)

    async with running_api(dsn, service) as api, \
            httpx.AsyncClient(base_url=api.url, headers=bearer(secret)) as http, \
            grpc.aio.insecure_channel(api.grpc_target) as channel:
        stub: GrpcStub = pb_grpc.TaskqServiceStub(channel)
        key = grpc_key(secret)

        async def watch() -> None:  # of `task`, canceled by the last pair: one message
            async for _ in stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=key):
                pass

        # each REST request beside the gRPC call that does the same
        pairs: list[tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
            (lambda: http.post(queue_path(queue, "/tasks"), json={"task_name": "t"}),
             lambda: stub.Enqueue(pb.EnqueueRequest(
                 **where, task=pb.TaskSubmission(task_name="t")), metadata=key)),
            (lambda: http.post(queue_path(queue, "/tasks:batch"),
                               json={"tasks": [{"task_name": "t"}]}),
             lambda: stub.EnqueueBatch(pb.EnqueueBatchRequest(
                 **where, tasks=[pb.TaskSubmission(task_name="t")]), metadata=key)),
            (lambda: http.get(f"/v1/tasks/{task.id}", params={"wait": "0.1"}),
             lambda: stub.GetTask(pb.GetTaskRequest(task_id=task.id, wait_seconds=0.1),
                                  metadata=key)),
            (lambda: http.get("/v1/tasks", params={"queue": queue.full_name}),
             lambda: stub.ListTasks(pb.ListTasksRequest(queue=queue.full_name), metadata=key)),
            (lambda: http.get("/v1/queues"),
             lambda: stub.ListQueues(pb.ListQueuesRequest(), metadata=key)),
            (lambda: http.get(queue_path(queue)),
             lambda: stub.GetQueue(pb.GetQueueRequest(**where), metadata=key)),
            (lambda: http.post(queue_path(queue, "/pause")),
             lambda: stub.PauseQueue(pb.PauseQueueRequest(**where), metadata=key)),
            (lambda: http.post(queue_path(queue, "/resume")),
             lambda: stub.ResumeQueue(pb.ResumeQueueRequest(**where), metadata=key)),
            (lambda: http.post(f"/v1/tasks/{dead.id}/retry"),
             lambda: stub.RetryTask(pb.RetryTaskRequest(task_id=dead.id), metadata=key)),
            (lambda: http.post(queue_path(queue, "/dead:replay"), json={"all": True}),
             lambda: stub.ReplayDead(pb.ReplayDeadRequest(**where, all=True), metadata=key)),
            (lambda: http.post(f"/v1/tasks/{task.id}/cancel"),
             lambda: stub.CancelTask(pb.CancelTaskRequest(task_id=task.id), metadata=key)),
            (lambda: http.put(schedule, json={"queue": "q", "task_name": "t", "cron": "@daily"}),
             lambda: stub.PutSchedule(pb.PutScheduleRequest(**named, spec=pb.ScheduleSpec(
                 queue="q", task_name="t", cron="@daily")), metadata=key)),
            (lambda: http.get(schedule),
             lambda: stub.GetSchedule(pb.GetScheduleRequest(**named), metadata=key)),
            (lambda: http.get("/v1/schedules"),
             lambda: stub.ListSchedules(pb.ListSchedulesRequest(), metadata=key)),
            (lambda: http.post(f"{schedule}:suspend"),
             lambda: stub.SuspendSchedule(pb.SuspendScheduleRequest(**named), metadata=key)),
            (lambda: http.post(f"{schedule}:resume"),
             lambda: stub.ResumeSchedule(pb.ResumeScheduleRequest(**named), metadata=key)),
            (lambda: http.delete(schedule),
             lambda: stub.DeleteSchedule(pb.DeleteScheduleRequest(**named), metadata=key)),
        ]
        reached: list[str] = []
        for rest, rpc in pairs:
            service.reached.clear()
            await rest()
            by_rest = list(service.reached)
            service.reached.clear()
            with contextlib.suppress(grpc.aio.AioRpcError):  # retrying what REST retried
                await rpc()
            assert service.reached == by_rest != [], (by_rest, service.reached)
            reached += by_rest
        service.reached.clear()
        await watch()  # REST waits with ?wait= (the `task` operation); gRPC also streams
        assert service.reached == ["watch"]

    assert set(reached) | {"watch"} == OPERATIONS  # a new operation must be served by both


async def test_grpc_port_0_serves_no_grpc(dsn: str) -> None:
    settings = ApiSettings(dsn=dsn, grpc_port=0)
    async with open_service(settings) as service:
        server = ApiServer(settings, service)
    assert (server.grpc, server.grpc_port) == (None, None)


def _environment(dsn: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")},
            "TASKQ_DSN": dsn}


async def test_taskq_api_serves_grpc_and_drains_a_call_in_flight_on_sigterm(
    dsn: str, make_queue: MakeQueue, make_key: MakeKey, client: Client, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))
    grpc_port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(_BIN / "taskq"), "api", "--port", str(free_port()), "--grpc-port", str(grpc_port),
        "--shutdown-grace", "30", env=_environment(dsn),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub: GrpcStub = pb_grpc.TaskqServiceStub(channel)
            await asyncio.wait_for(channel.channel_ready(), 30)  # it starts in about a second
            created = await stub.Enqueue(pb.EnqueueRequest(
                namespace=queue.namespace, name=queue.name,
                task=pb.TaskSubmission(task_name="t")), metadata=key)
            watch = stub.WatchTask(pb.WatchTaskRequest(task_id=created.task.id), metadata=key)
            first = await watch.read()  # the call is in flight

            process.send_signal(signal.SIGTERM)
            refused = await _refused(lambda: stub.ListQueues(
                pb.ListQueuesRequest(), metadata=key, timeout=5))
            [claimed] = await claim(pool, queue)
            await finish(pool, claimed, "succeeded", result="drained")
            rest = []
            while (message := await watch.read()) is not grpc.aio.EOF:
                rest.append(message)
            code = await watch.code()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), 60)

    assert isinstance(first, pb.Task) and first.state == pb.TASK_STATE_READY
    assert refused == grpc.StatusCode.UNAVAILABLE  # no new calls once stopping
    assert code == grpc.StatusCode.OK
    assert isinstance(rest[-1], pb.Task)
    assert rest[-1].state == pb.TASK_STATE_SUCCEEDED
    assert rest[-1].result_json == '"drained"'
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    access = [(e.get("method"), e.get("code")) for e in lines if e["logger"] == "taskq_api.access"]
    assert (_ENQUEUE, "OK") in access
    assert ("/taskq.v1.TaskqService/WatchTask", "OK") in access
    assert "Traceback" not in err.decode()


async def _refused(call: Callable[[], Awaitable[Any]]) -> grpc.StatusCode:
    """The code of the first refused call, calling again until one is (bounded)."""
    for _ in range(100):
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            return error.code()
        await asyncio.sleep(0.05)
    raise AssertionError("calls were still served after SIGTERM")


async def test_a_grpc_port_in_use_stops_taskq_api_naming_the_setting(dsn: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = await asyncio.create_subprocess_exec(
            str(_BIN / "taskq"), "api", "--port", str(free_port()),
            "--grpc-port", str(busy.getsockname()[1]), env=_environment(dsn),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 1
    assert "cannot serve gRPC on 127.0.0.1:" in err.decode()
    assert "TASKQ_API_GRPC_PORT (--grpc-port)" in err.decode()
    assert "Traceback" not in err.decode()
