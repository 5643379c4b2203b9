"""Schedules over HTTP: create or update with PUT, read, list by the key's namespaces, suspend
and resume, delete; what a tick did; payloads hidden from viewers; bad input naming the field
with taskq's own message, and nothing stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from taskq.client import Client
from taskq.models import QueueInfo
from taskq.store.schedules import fire_due
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, problem
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

SPEC: dict[str, Any] = {"queue": "q", "task_name": "report", "cron": "@hourly"}


def schedule_path(queue: QueueInfo, name: str = "nightly", suffix: str = "") -> str:
    return f"/v1/schedules/{queue.namespace}/{name}{suffix}"


async def stored_schedules(pool: asyncpg.Pool, namespace: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT name, queue, task_name, payload::text AS payload, priority, cron, time_zone, "
        "suspend, concurrency_policy, starting_deadline_s, max_missed_runs, next_run_at "
        "FROM taskq.schedules WHERE namespace = $1 ORDER BY name",
        namespace,
    )
    return [dict(row) for row in rows]


async def test_put_creates_then_updates_and_get_reads_it_back(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))

    created = openapi.check(await http.put(
        schedule_path(queue), headers=key, json={**SPEC, "payload": {"n": 1}}))
    updated = openapi.check(await http.put(
        schedule_path(queue), headers=key,
        json={**SPEC, "priority": 80, "time_zone": "Europe/Berlin", "cron": "30 2 * * *",
              "concurrency_policy": "Forbid", "starting_deadline_seconds": 300,
              "max_missed_runs": 0}))
    read = openapi.check(await http.get(schedule_path(queue), headers=key))
    [row] = await stored_schedules(pool, queue.namespace)

    assert created.status_code == 201, created.text
    assert created.headers["location"] == schedule_path(queue)
    body = created.json()
    assert (body["schedule"], body["namespace"], body["name"]) == (
        f"{queue.namespace}/nightly", queue.namespace, "nightly")
    assert body["spec"] == {
        "queue": "q", "task_name": "report", "payload": {"n": 1}, "priority": 50,
        "cron": "@hourly", "time_zone": "UTC", "suspend": False, "concurrency_policy": "Allow",
        "starting_deadline_seconds": None, "max_missed_runs": 1}
    assert body["payload_hidden"] is False
    assert datetime.fromisoformat(body["next_run_at"]).minute == 0
    assert body["last_schedule_time"] is None and body["last_task_id"] is None
    assert updated.status_code == 200, updated.text
    assert "location" not in updated.headers
    assert updated.json()["spec"]["payload"] == {}  # a PUT declares the whole spec
    assert read.json() == updated.json()
    assert (row["priority"], row["cron"], row["time_zone"], row["concurrency_policy"]) == (
        80, "30 2 * * *", "Europe/Berlin", "Forbid")
    assert (row["starting_deadline_s"], row["max_missed_runs"]) == (300, 0)
    assert datetime.fromisoformat(read.json()["next_run_at"]) == row["next_run_at"]


async def test_the_list_holds_the_schedules_of_the_keys_namespaces_only(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    mine, other = await make_queue(), await make_queue()
    writer = bearer(await make_key("operator", None))
    for queue, name in [(mine, "b"), (mine, "a"), (other, "c")]:
        response = await http.put(schedule_path(queue, name), headers=writer, json=SPEC)
        assert response.status_code == 201, response.text
    confined = bearer(await make_key("viewer", [mine.namespace]))

    listed = openapi.check(await http.get("/v1/schedules", headers=confined))
    filtered = openapi.check(await http.get(
        "/v1/schedules", params={"namespace": other.namespace}, headers=writer))
    refused = openapi.check(await http.get(
        "/v1/schedules", params={"namespace": other.namespace}, headers=confined))
    bad = openapi.check(await http.get(
        "/v1/schedules", params={"namespace": "Not_A_Label"}, headers=confined))

    assert [s["schedule"] for s in listed.json()["schedules"]] == [
        f"{mine.namespace}/a", f"{mine.namespace}/b"]
    assert [s["schedule"] for s in filtered.json()["schedules"]] == [f"{other.namespace}/c"]
    assert f"does not reach namespace '{other.namespace}'" in problem(refused, 403)["detail"]
    assert problem(bad, 422)["errors"][0]["parameter"] == "namespace"


async def test_suspend_and_resume_change_only_suspend(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    await http.put(schedule_path(queue), headers=key, json={**SPEC, "priority": 7})

    suspended = openapi.check(await http.post(schedule_path(queue, suffix=":suspend"),
                                              headers=key))
    again = openapi.check(await http.post(schedule_path(queue, suffix=":suspend"), headers=key))
    [row] = await stored_schedules(pool, queue.namespace)
    resumed = openapi.check(await http.post(schedule_path(queue, suffix=":resume"), headers=key))

    assert (suspended.status_code, again.status_code, resumed.status_code) == (200, 200, 200)
    assert suspended.json()["spec"]["suspend"] is True
    assert suspended.json()["next_run_at"] is None  # no next tick while suspended
    assert row["suspend"] is True and row["priority"] == 7
    assert resumed.json()["spec"] == {**suspended.json()["spec"], "suspend": False}
    assert resumed.json()["next_run_at"] is not None


async def test_delete_is_204_then_the_schedule_is_unknown(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("admin", [queue.namespace]))
    await http.put(schedule_path(queue), headers=key, json=SPEC)

    deleted = openapi.check(await http.delete(schedule_path(queue), headers=key))
    again = openapi.check(await http.delete(schedule_path(queue), headers=key))
    read = openapi.check(await http.get(schedule_path(queue), headers=key))
    suspend = openapi.check(await http.post(schedule_path(queue, suffix=":suspend"),
                                            headers=key))

    assert (deleted.status_code, deleted.content) == (204, b"")
    for response in (again, read, suspend):
        body = problem(response, 404)
        assert body["type"] == "/problems/unknown-schedule"
        assert f"no schedule '{queue.namespace}/nightly'" in body["detail"]
    assert await stored_schedules(pool, queue.namespace) == []


async def test_a_tick_shows_its_task_and_a_missing_queue_its_error(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool,
    client: Client, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    first = (await http.put(schedule_path(queue), headers=key, json=SPEC)).json()
    await http.put(schedule_path(queue, "lost"), headers=key, json={**SPEC, "queue": "nope"})
    tick = datetime.fromisoformat(first["next_run_at"])

    # the schedulers' passes at the tick, until both were fired: other tests' schedules may
    # share the tick, and a pass fires 100 at most
    passed: set[str] = set()
    async with pool.acquire() as conn:
        for _ in range(100):
            passed |= {fired.schedule for fired in await fire_due(conn, tick)}
            if {f"{queue.namespace}/nightly", f"{queue.namespace}/lost"} <= passed:
                break
    fired = openapi.check(await http.get(schedule_path(queue), headers=key)).json()
    lost = openapi.check(await http.get(schedule_path(queue, "lost"), headers=key)).json()

    assert datetime.fromisoformat(fired["last_schedule_time"]) == tick
    task = await client.get_task(fired["last_task_id"])
    assert (task.queue, task.task_name) == (queue.full_name, "report")
    assert datetime.fromisoformat(fired["next_run_at"]) > tick
    assert fired["last_error"] is None
    assert "unknown queue" in lost["last_error"]
    assert lost["last_task_id"] is None


@pytest.mark.parametrize(("reads_payloads", "hidden"), [(False, True), (True, False)])
async def test_a_viewer_sees_the_payload_only_with_reads_payloads(
    reads_payloads: bool, hidden: bool, http: httpx.AsyncClient, make_queue: MakeQueue,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    writer = bearer(await make_key("operator", [queue.namespace]))
    await http.put(schedule_path(queue), headers=writer, json={**SPEC, "payload": {"card": 4}})
    viewer = bearer(await make_key("viewer", [queue.namespace], reads_payloads=reads_payloads))

    one = openapi.check(await http.get(schedule_path(queue), headers=viewer)).json()
    [listed] = openapi.check(await http.get(
        "/v1/schedules", params={"namespace": queue.namespace}, headers=viewer)).json()[
        "schedules"]

    for seen in (one, listed):
        assert seen["payload_hidden"] is hidden
        assert seen["spec"]["payload"] == (None if hidden else {"card": 4})


@pytest.mark.parametrize(("fields", "pointer", "fix"), [
    ({"cron": "every day"}, "#/cron", "is not a cron expression"),
    ({"cron": "61 * * * *"}, "#/cron", "give five fields"),
    ({"cron": "@reboot"}, "#/cron", "@hourly"),
    ({"cron": ""}, "#/cron", "at least 1 character"),
    ({"time_zone": "Mars/Olympus"}, "#/time_zone", "is not an IANA time zone"),
    ({"time_zone": "../../etc/passwd"}, "#/time_zone", "is not an IANA time zone"),
    ({"concurrency_policy": "Sometimes"}, "#/concurrency_policy", "'Allow', 'Forbid' or"),
    ({"concurrency_policy": "allow"}, "#/concurrency_policy", "'Replace'"),
    ({"priority": 101}, "#/priority", "less than or equal to 100"),
    ({"priority": "7"}, "#/priority", "valid integer"),
    ({"suspend": "yes"}, "#/suspend", "valid boolean"),
    ({"starting_deadline_seconds": 0}, "#/starting_deadline_seconds", "greater than or equal"),
    ({"max_missed_runs": 1001}, "#/max_missed_runs", "less than or equal to 1000"),
    ({"queue": "Not_A_Label"}, "#/queue", "should match pattern"),
    ({"task_name": ""}, "#/task_name", "at least 1 character"),
    ({"payload": {"k": "a\u0000b"}}, "#/payload", "U+0000"),
    ({"cronn": "@daily"}, "#/cronn", "remove it"),
])
async def test_bad_input_names_the_field_with_taskqs_message(
    fields: dict[str, Any], pointer: str, fix: str, http: httpx.AsyncClient,
    make_queue: MakeQueue, make_key: MakeKey, pool: asyncpg.Pool, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))

    response = openapi.check(await http.put(
        schedule_path(queue), headers=key, json={**SPEC, **fields}))

    body = problem(response, 422)
    assert body["type"] == "/problems/invalid-request"
    [error] = body["errors"]
    assert error["pointer"] == pointer
    assert fix in error["detail"], error
    assert "Value error" not in error["detail"]
    assert await stored_schedules(pool, queue.namespace) == []


async def test_a_required_field_left_out_is_named(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))

    response = openapi.check(await http.put(
        schedule_path(queue), headers=key, json={"task_name": "t"}))

    pointers = {e["pointer"]: e["detail"] for e in problem(response, 422)["errors"]}
    assert pointers == {"#/queue": "required: add it", "#/cron": "required: add it"}


@pytest.mark.parametrize(("path", "parameter"), [
    ("/v1/schedules/UPPER/nightly", "namespace"),
    ("/v1/schedules/{ns}/under_score", "name"),
    ("/v1/schedules/{ns}/" + "n" * 64, "name"),
])
async def test_a_bad_schedule_name_names_the_parameter(
    path: str, parameter: str, http: httpx.AsyncClient, make_queue: MakeQueue,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", None))
    url = path.format(ns=queue.namespace)

    for response in [await http.put(url, headers=key, json=SPEC), await http.get(url, headers=key),
                     await http.delete(url, headers=key),
                     await http.post(f"{url}:resume", headers=key)]:
        [error] = problem(openapi.check(response), 422)["errors"]
        assert error["parameter"] == parameter
