"""Every endpoint without a key, with unusable keys, with another namespace's key and with each
role: the status, the problem, and that a refused request changed nothing in the database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from taskq import auth
from taskq.client import Client
from taskq.models import QueueInfo
from taskq.schedules import ScheduleSpec
from taskq.store import keys as key_store
from tests.api.conftest import MakeKey
from tests.api.helpers import bearer, problem, stored_tasks, unusable_credentials
from tests.api.openapi import OpenApiChecker
from tests.api.test_api_schedules import SPEC, stored_schedules
from tests.conftest import MakeQueue
from tests.integration.helpers import claim, finish


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {queue}: namespace/name; {task}: a task of that queue; {schedule}: one of
    # that namespace, namespace/name; {namespace}: the queue's
    body: Any = None
    writes: bool = False
    ok: int = 200  # the status of a permitted request

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("POST", "/v1/queues/{queue}/tasks", {"task_name": "t"}, writes=True, ok=201),
    Endpoint("POST", "/v1/queues/{queue}/tasks:batch", {"tasks": [{"task_name": "t"}]},
             writes=True, ok=201),
    Endpoint("GET", "/v1/tasks/{task}"),
    Endpoint("GET", "/v1/tasks/{task}?wait=100ms"),
    Endpoint("GET", "/v1/tasks?queue={queue}"),
    Endpoint("POST", "/v1/tasks/{task}/cancel", writes=True),
    Endpoint("POST", "/v1/tasks/{dead_task}/retry", writes=True),
    Endpoint("GET", "/v1/queues"),
    Endpoint("GET", "/v1/queues/{queue}"),
    Endpoint("POST", "/v1/queues/{queue}/pause", writes=True),
    Endpoint("POST", "/v1/queues/{queue}/resume", writes=True),
    Endpoint("POST", "/v1/queues/{queue}/dead:replay", {"all": True}, writes=True),
    Endpoint("GET", "/v1/schedules"),
    Endpoint("GET", "/v1/schedules?namespace={namespace}"),
    Endpoint("GET", "/v1/schedules/{schedule}"),
    Endpoint("PUT", "/v1/schedules/{schedule}", {**SPEC, "priority": 9}, writes=True),
    Endpoint("DELETE", "/v1/schedules/{schedule}", writes=True, ok=204),
    Endpoint("POST", "/v1/schedules/{schedule}:suspend", writes=True),
    Endpoint("POST", "/v1/schedules/{schedule}:resume", writes=True),
]
# the endpoints that name a namespace (else a task, or nothing)
_BY_NAMESPACE = ("{queue}", "{schedule}", "{namespace}")
_LISTS = ("/v1/queues", "/v1/schedules")


@dataclass
class Scene:
    """A queue with a ready task and a dead one, a schedule in its namespace, and what the
    database held at the start."""

    queue: QueueInfo
    task: int
    dead_task: int
    before: list[dict[str, Any]]
    paused: bool
    schedules: list[dict[str, Any]]

    def request(self, endpoint: Endpoint) -> dict[str, Any]:
        path = endpoint.path.format(
            queue=self.queue.full_name, task=self.task, dead_task=self.dead_task,
            schedule=f"{self.queue.namespace}/nightly", namespace=self.queue.namespace)
        return {"method": endpoint.method, "url": path, "json": endpoint.body}

    async def unchanged(self, pool: asyncpg.Pool) -> None:
        assert await stored_tasks(pool, self.queue) == self.before
        assert await stored_schedules(pool, self.queue.namespace) == self.schedules
        paused = await pool.fetchval("SELECT paused FROM taskq.queues WHERE id = $1",
                                     self.queue.id)
        assert paused is self.paused


@pytest.fixture
async def scene(make_queue: MakeQueue, client: Client, pool: asyncpg.Pool) -> Scene:
    queue = await make_queue(max_attempts=1)
    dead = await client.enqueue(queue.full_name, "t", {"n": 1})
    [claimed] = await claim(pool, queue)
    await finish(pool, claimed, "failed")
    task = await client.enqueue(queue.full_name, "t", {"n": 2})
    await client.create_schedule(f"{queue.namespace}/nightly", ScheduleSpec(**SPEC))
    return Scene(queue, task.id, dead.id, await stored_tasks(pool, queue), paused=False,
                 schedules=await stored_schedules(pool, queue.namespace))


ids = [str(e) for e in ENDPOINTS]


def test_every_endpoint_is_tried(openapi: OpenApiChecker) -> None:
    templates = {"{queue}": "{namespace}/{name}", "{schedule}": "{namespace}/{name}",
                 "{task}": "{task_id}", "{dead_task}": "{task_id}"}
    tried = set()
    for endpoint in ENDPOINTS:
        path = endpoint.path.split("?")[0]
        for placeholder, template in templates.items():
            path = path.replace(placeholder, template)
        tried.add((endpoint.method.lower(), path))
    served = {(method, path) for path, item in openapi.document["paths"].items()
              for method in item if path.startswith("/v1/")}
    assert tried == served


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
async def test_no_key_is_401_with_a_challenge(
    endpoint: Endpoint, scene: Scene, http: httpx.AsyncClient, pool: asyncpg.Pool,
    openapi: OpenApiChecker,
) -> None:
    response = openapi.check(await http.request(**scene.request(endpoint)))

    body = problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="taskq"'
    assert "Authorization: Bearer" in body["detail"]
    await scene.unchanged(pool)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
@pytest.mark.parametrize("kind", ["unknown", "malformed", "basic", "tampered", "revoked",
                                  "expired"])
async def test_an_unusable_key_is_401(
    endpoint: Endpoint, kind: str, scene: Scene, http: httpx.AsyncClient, pool: asyncpg.Pool,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    header = await unusable_credentials(kind, make_key, pool, scene.queue.namespace)

    response = openapi.check(await http.request(
        **scene.request(endpoint), headers={"Authorization": header}))

    problem(response, 401)
    challenge = response.headers["www-authenticate"]
    # a Basic header is no key at all; the others are keys that are not usable
    assert challenge == 'Bearer realm="taskq"' + (
        "" if kind == "basic" else ', error="invalid_token"')
    assert header.split(" ", 1)[1] not in response.text
    await scene.unchanged(pool)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
async def test_another_namespaces_key_reaches_nothing_here(
    endpoint: Endpoint, scene: Scene, http: httpx.AsyncClient, pool: asyncpg.Pool,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("admin", [f"{scene.queue.namespace}x", "elsewhere"]))

    response = openapi.check(await http.request(**scene.request(endpoint), headers=key))

    if endpoint.path in _LISTS:
        assert response.status_code == 200
        [items] = response.json().values()
        assert all(item["namespace"] in (f"{scene.queue.namespace}x", "elsewhere")
                   for item in items)
    elif any(placeholder in endpoint.path for placeholder in _BY_NAMESPACE):
        body = problem(response, 403)
        assert f"does not reach namespace '{scene.queue.namespace}'" in body["detail"]
    else:  # a task outside the key's namespaces is not revealed to exist
        assert problem(response, 404)["type"] == "/problems/unknown-task"
    await scene.unchanged(pool)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
async def test_a_viewer_reads_and_changes_nothing(
    endpoint: Endpoint, scene: Scene, http: httpx.AsyncClient, pool: asyncpg.Pool,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key("viewer", [scene.queue.namespace]))

    response = openapi.check(await http.request(**scene.request(endpoint), headers=key))

    if endpoint.writes:
        body = problem(response, 403)
        assert "needs a key of role operator or higher" in body["detail"]
        assert "viewer key" in body["detail"]
    else:
        assert response.status_code == 200, response.text
    await scene.unchanged(pool)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids)
@pytest.mark.parametrize("role", ["operator", "admin"])
async def test_operators_and_admins_may_do_everything_in_their_namespaces(
    endpoint: Endpoint, role: str, scene: Scene, http: httpx.AsyncClient,
    make_key: MakeKey, openapi: OpenApiChecker,
) -> None:
    key = bearer(await make_key(role, [scene.queue.namespace, "elsewhere"]))

    response = openapi.check(await http.request(**scene.request(endpoint), headers=key))

    assert response.status_code == endpoint.ok, response.text


async def test_a_key_for_every_namespace_reaches_any_queue(
    scene: Scene, http: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    key = bearer(await make_key("viewer", None))
    response = await http.get(f"/v1/queues/{scene.queue.full_name}", headers=key)
    task = await http.get(f"/v1/tasks/{scene.task}", headers=key)
    assert (response.status_code, task.status_code) == (200, 200)
    assert task.json()["payload_hidden"] is True


async def test_a_revoked_key_is_refused_once_the_server_forgets_it(
    http: httpx.AsyncClient, pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    """The server remembers an authenticated key for TASKQ_API_KEY_CACHE_SECONDS (1 s here):
    a revocation reaches a key in use within that time (docs/api-keys.md)."""
    secret = await make_key("viewer", ["shop"])
    assert (await http.get("/v1/queues", headers=bearer(secret))).status_code == 200
    name = await pool.fetchval(
        "SELECT name FROM taskq.api_keys WHERE prefix = $1", auth.parse_prefix(secret)
    )
    await key_store.revoke_key(pool, name)
    await asyncio.sleep(1.2)
    problem(await http.get("/v1/queues", headers=bearer(secret)), 401)
