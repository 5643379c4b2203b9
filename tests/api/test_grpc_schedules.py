"""Schedules over gRPC (taskq.v1): PutSchedule creates then updates, Get, List by the key's
namespaces, Suspend and Resume, Delete; a Schedule says what REST's JSON says; payloads hidden
from viewers; bad input INVALID_ARGUMENT naming `spec.<field>` with taskq's message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest

from taskq.client import Client
from taskq.models import QueueInfo
from taskq_api.grpc.v1 import taskq_pb2 as pb
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, grpc_key, grpc_refusal
from tests.api.test_api_schedules import schedule_path, stored_schedules
from tests.conftest import MakeQueue

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

Metadata = tuple[tuple[str, str], ...]


def _put(where: QueueInfo, name: str = "nightly", **fields: Any) -> pb.PutScheduleRequest:
    """A PutSchedule of `where`'s namespace; `fields` of the spec (its queue is `q`)."""
    spec = pb.ScheduleSpec(**{"queue": "q", "task_name": "report", "cron": "@hourly", **fields})
    return pb.PutScheduleRequest(namespace=where.namespace, name=name, spec=spec)


def _where(queue: QueueInfo, name: str = "nightly") -> dict[str, str]:
    return {"namespace": queue.namespace, "name": name}


async def test_put_creates_then_updates_with_defaults_for_fields_left_out(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))

    created = await grpc_stub.PutSchedule(_put(queue, payload_json='{"n": 1.50}'), metadata=key)
    updated = await grpc_stub.PutSchedule(_put(
        queue, priority=0, time_zone="America/New_York", cron="0 9 * * 1-5",
        concurrency_policy=pb.CONCURRENCY_POLICY_REPLACE, starting_deadline_seconds=60,
        max_missed_runs=0), metadata=key)
    read = await grpc_stub.GetSchedule(pb.GetScheduleRequest(**_where(queue)), metadata=key)
    [row] = await stored_schedules(pool, queue.namespace)

    assert created.created is True and updated.created is False
    schedule = created.schedule
    assert (schedule.schedule, schedule.namespace, schedule.name) == (
        f"{queue.namespace}/nightly", queue.namespace, "nightly")
    spec = schedule.spec
    assert json.loads(spec.payload_json) == {"n": 1.5}
    assert (spec.priority, spec.time_zone, spec.suspend, spec.max_missed_runs) == (
        50, "UTC", False, 1)
    assert spec.concurrency_policy == pb.CONCURRENCY_POLICY_ALLOW
    assert not spec.HasField("starting_deadline_seconds")
    assert schedule.HasField("next_run_at") and not schedule.HasField("last_schedule_time")
    assert not schedule.HasField("last_task_id") and not schedule.HasField("last_error")
    assert read == updated.schedule
    assert read.spec.HasField("priority") and read.spec.priority == 0  # 0 is not "left out"
    assert (read.spec.payload_json, read.spec.max_missed_runs) == ("{}", 0)
    assert (row["priority"], row["time_zone"], row["concurrency_policy"]) == (
        0, "America/New_York", "Replace")
    assert (row["starting_deadline_s"], row["max_missed_runs"]) == (60, 0)
    assert read.next_run_at.ToDatetime(tzinfo=UTC) == row["next_run_at"]


async def test_a_schedule_says_what_rests_json_says(
    grpc_stub: GrpcStub, http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    await grpc_stub.PutSchedule(_put(queue, payload_json="[1, 2]", starting_deadline_seconds=9,
                                     concurrency_policy=pb.CONCURRENCY_POLICY_FORBID),
                                metadata=grpc_key(secret))

    message = await grpc_stub.GetSchedule(pb.GetScheduleRequest(**_where(queue)),
                                          metadata=grpc_key(secret))
    body = (await http.get(schedule_path(queue), headers=bearer(secret))).json()

    assert body["spec"]["payload"] == json.loads(message.spec.payload_json) == [1, 2]
    assert body["spec"]["concurrency_policy"] == "Forbid"
    assert message.spec.concurrency_policy == pb.CONCURRENCY_POLICY_FORBID
    assert body["spec"]["starting_deadline_seconds"] == message.spec.starting_deadline_seconds
    assert datetime.fromisoformat(body["next_run_at"]) == message.next_run_at.ToDatetime(
        tzinfo=UTC)
    assert body["created_at"] is not None and message.HasField("created_at")


async def test_the_list_holds_the_keys_namespaces_or_the_one_asked_for(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    mine, other = await make_queue(), await make_queue()
    writer = grpc_key(await make_key("operator", None))
    for queue, name in [(mine, "b"), (mine, "a"), (other, "c")]:
        await grpc_stub.PutSchedule(_put(queue, name), metadata=writer)
    confined = grpc_key(await make_key("viewer", [mine.namespace]))

    listed = await grpc_stub.ListSchedules(pb.ListSchedulesRequest(), metadata=confined)
    filtered = await grpc_stub.ListSchedules(
        pb.ListSchedulesRequest(namespace=other.namespace), metadata=writer)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await grpc_stub.ListSchedules(
            pb.ListSchedulesRequest(namespace=other.namespace), metadata=confined)

    assert [s.schedule for s in listed.schedules] == [f"{mine.namespace}/a",
                                                      f"{mine.namespace}/b"]
    assert [s.schedule for s in filtered.schedules] == [f"{other.namespace}/c"]
    details = grpc_refusal(refused, grpc.StatusCode.PERMISSION_DENIED)
    assert f"does not reach namespace '{other.namespace}'" in details


async def test_suspend_resume_and_delete(
    grpc_stub: GrpcStub, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("admin", [queue.namespace]))
    await grpc_stub.PutSchedule(_put(queue), metadata=key)

    suspended = await grpc_stub.SuspendSchedule(
        pb.SuspendScheduleRequest(**_where(queue)), metadata=key)
    resumed = await grpc_stub.ResumeSchedule(
        pb.ResumeScheduleRequest(**_where(queue)), metadata=key)
    await grpc_stub.DeleteSchedule(pb.DeleteScheduleRequest(**_where(queue)), metadata=key)
    missing = []
    for call in (
        grpc_stub.DeleteSchedule(pb.DeleteScheduleRequest(**_where(queue)), metadata=key),
        grpc_stub.GetSchedule(pb.GetScheduleRequest(**_where(queue)), metadata=key),
        grpc_stub.ResumeSchedule(pb.ResumeScheduleRequest(**_where(queue)), metadata=key),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        missing.append(grpc_refusal(raised, grpc.StatusCode.NOT_FOUND))

    assert suspended.spec.suspend and not suspended.HasField("next_run_at")
    assert not resumed.spec.suspend and resumed.HasField("next_run_at")
    assert all(f"no schedule '{queue.namespace}/nightly'" in d for d in missing), missing
    assert await stored_schedules(pool, queue.namespace) == []


@pytest.mark.parametrize(("reads_payloads", "hidden"), [(False, True), (True, False)])
async def test_a_viewer_sees_the_payload_only_with_reads_payloads(
    reads_payloads: bool, hidden: bool, grpc_stub: GrpcStub, make_queue: MakeQueue,
    make_key: MakeKey,
) -> None:
    queue = await make_queue()
    await grpc_stub.PutSchedule(_put(queue, payload_json='{"card": 4}'),
                                metadata=grpc_key(await make_key("operator", [queue.namespace])))
    viewer = grpc_key(await make_key("viewer", [queue.namespace],
                                     reads_payloads=reads_payloads))

    one = await grpc_stub.GetSchedule(pb.GetScheduleRequest(**_where(queue)), metadata=viewer)
    [listed] = (await grpc_stub.ListSchedules(
        pb.ListSchedulesRequest(namespace=queue.namespace), metadata=viewer)).schedules

    for seen in (one, listed):
        assert seen.payload_hidden is hidden
        assert seen.spec.payload_json == ("null" if hidden else '{"card":4}')


@pytest.mark.parametrize(("fields", "field", "fix"), [
    ({"cron": "every day"}, "spec.cron", "is not a cron expression"),
    ({"cron": ""}, "spec.cron", "at least 1 character"),
    ({"time_zone": "Mars/Olympus"}, "spec.time_zone", "is not an IANA time zone"),
    ({"concurrency_policy": 7}, "spec.concurrency_policy", "CONCURRENCY_POLICY_FORBID"),
    ({"priority": 101}, "spec.priority", "less than or equal to 100"),
    ({"starting_deadline_seconds": 0}, "spec.starting_deadline_seconds", "greater than or"),
    ({"max_missed_runs": -1}, "spec.max_missed_runs", "greater than or equal to 0"),
    ({"queue": ""}, "spec.queue", "at least 1 character"),
    ({"queue": "Not_A_Label"}, "spec.queue", "should match pattern"),
    ({"task_name": ""}, "spec.task_name", "at least 1 character"),
    ({"payload_json": "{nope"}, "spec.payload_json", "send a JSON value"),
    ({"payload_json": '{"k": "a\\u0000b"}'}, "spec.payload_json", "U+0000"),
])
async def test_bad_input_names_the_field_with_taskqs_message(
    fields: dict[str, Any], field: str, fix: str, grpc_stub: GrpcStub, make_queue: MakeQueue,
    make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", [queue.namespace]))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_stub.PutSchedule(_put(queue, **fields), metadata=key)

    details = grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"invalid {field}: "), details
    assert fix in details, details
    assert "Value error" not in details
    assert await stored_schedules(pool, queue.namespace) == []


@pytest.mark.parametrize(("namespace", "name", "field"), [
    ("UPPER", "nightly", "namespace"), ("{ns}", "under_score", "name"), ("{ns}", "", "name")])
async def test_a_bad_schedule_name_is_named(
    namespace: str, name: str, field: str, grpc_stub: GrpcStub, make_queue: MakeQueue,
    make_key: MakeKey, client: Client,
) -> None:
    queue = await make_queue()
    key = grpc_key(await make_key("operator", None))
    where = {"namespace": namespace.format(ns=queue.namespace), "name": name}

    for call in (
        grpc_stub.PutSchedule(pb.PutScheduleRequest(**where, spec=_put(queue).spec),
                              metadata=key),
        grpc_stub.GetSchedule(pb.GetScheduleRequest(**where), metadata=key),
        grpc_stub.DeleteSchedule(pb.DeleteScheduleRequest(**where), metadata=key),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert grpc_refusal(raised, grpc.StatusCode.INVALID_ARGUMENT).startswith(
            f"invalid {field}: ")
    assert await client.list_schedules(queue.namespace) == []
