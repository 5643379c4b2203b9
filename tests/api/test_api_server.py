"""The server around the routes: health and readiness, metrics, the request log line, the
correlation id, CORS, the OpenAPI document, and `taskq api` run for real as a command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from devenv.postgres import free_port

from taskq import auth
from taskq.worker.logs import JsonFormatter
from tests.api.conftest import MakeKey, RunningApi, running_api
from tests.api.helpers import bearer, problem, queue_path
from tests.api.openapi import OpenApiChecker
from tests.conftest import MakeQueue

_BIN = Path(sys.executable).parent


async def test_health_and_readiness(http: httpx.AsyncClient, openapi: OpenApiChecker) -> None:
    health = openapi.check(await http.get("/healthz"))
    ready = openapi.check(await http.get("/readyz"))

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["schema_version"] >= 10


async def test_without_a_database_the_server_runs_and_says_it_is_not_ready() -> None:
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    async with running_api(unreachable) as api, httpx.AsyncClient(base_url=api.url) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
        request = await http.get("/v1/queues", headers=bearer(auth.new_key().secret))

    assert health.status_code == 200
    for response in (ready, request):
        body = problem(response, 503)
        assert body["type"] == "/problems/database-unavailable"
        assert response.headers["retry-after"] == "5"
        assert "127.0.0.1" not in response.text  # the cause is for the log, not the caller


async def test_metrics_count_requests_by_route_template_and_status(
    api: RunningApi, http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    key = bearer(await make_key("operator", [queue.namespace]))
    created = await http.post(queue_path(queue, "/tasks"), headers=key, json={"task_name": "t"})
    labels = {"method": "GET", "route": "/v1/tasks/{task_id}", "status": "200"}
    before = api.registry.get_sample_value("taskq_api_requests_total", labels) or 0.0

    for _ in range(3):
        await http.get(f"/v1/tasks/{created.json()['id']}", headers=key)
    await http.get("/v1/tasks/1", headers={})
    text = (await http.get("/metrics")).text

    assert api.registry.get_sample_value("taskq_api_requests_total", labels) == before + 3
    assert 'route="/v1/tasks/{task_id}",status="401"' in text
    assert "taskq_api_request_duration_seconds_bucket" in text
    assert f"/v1/tasks/{created.json()['id']}" not in text  # templates, never paths


async def test_one_json_log_line_per_request_without_secrets_or_payloads(
    http: httpx.AsyncClient, make_queue: MakeQueue, make_key: MakeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    with caplog.at_level(logging.INFO, logger="taskq_api.access"):
        response = await http.post(
            queue_path(queue, "/tasks"),
            headers={**bearer(secret), "X-Correlation-Id": "order-42"},
            json={"task_name": "t", "payload": {"card": "4111-1111"}},
        )
    [record] = [r for r in caplog.records if r.name == "taskq_api.access"]
    line = JsonFormatter().format(record)
    entry = json.loads(line)

    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "order-42"
    assert entry["key_prefix"] == auth.parse_prefix(secret)
    assert entry["route"] == "/v1/queues/{namespace}/{name}/tasks"
    assert (entry["method"], entry["status"]) == ("POST", 201)
    assert entry["correlation_id"] == "order-42"
    assert isinstance(entry["duration_ms"], float)
    assert secret not in line
    assert secret.split("_", 2)[2] not in line  # the secret part (it may hold "_" itself)
    assert "4111" not in line
    assert queue.namespace not in line  # the route template, not the path


async def test_a_correlation_id_that_is_not_an_id_is_replaced(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz", headers={"X-Correlation-Id": "a b\tinjected=1"})
    assert response.headers["x-correlation-id"] != "a b\tinjected=1"
    assert len(response.headers["x-correlation-id"]) == 32


async def test_cors_is_off_by_default(http: httpx.AsyncClient) -> None:
    origin = {"Origin": "https://evil.example"}
    simple = await http.get("/healthz", headers=origin)
    preflight = await http.options("/v1/queues", headers={
        **origin, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers
    problem(preflight, 405)


async def test_cors_allows_the_configured_origins_only(dsn: str) -> None:
    async with running_api(dsn, cors_origins=["https://ops.example"]) as api, \
            httpx.AsyncClient(base_url=api.url) as http:
        allowed = await http.options("/v1/queues", headers={
            "Origin": "https://ops.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        refused = await http.options("/v1/queues", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example"
    assert "access-control-allow-origin" not in refused.headers


def test_the_openapi_document_covers_every_endpoint_and_error(openapi: OpenApiChecker) -> None:
    document = openapi.document  # OpenApiChecker has validated it as an OpenAPI document
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == {
        ("POST", "/v1/queues/{namespace}/{name}/tasks"),
        ("POST", "/v1/queues/{namespace}/{name}/tasks:batch"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/tasks/{task_id}"),
        ("POST", "/v1/tasks/{task_id}/cancel"),
        ("POST", "/v1/tasks/{task_id}/retry"),
        ("GET", "/v1/queues"),
        ("GET", "/v1/queues/{namespace}/{name}"),
        ("POST", "/v1/queues/{namespace}/{name}/pause"),
        ("POST", "/v1/queues/{namespace}/{name}/resume"),
        ("POST", "/v1/queues/{namespace}/{name}/dead:replay"),
        ("GET", "/v1/schedules"),
        ("GET", "/v1/schedules/{namespace}/{name}"),
        ("PUT", "/v1/schedules/{namespace}/{name}"),
        ("DELETE", "/v1/schedules/{namespace}/{name}"),
        ("POST", "/v1/schedules/{namespace}/{name}:suspend"),
        ("POST", "/v1/schedules/{namespace}/{name}:resume"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    }
    problem_schema = {"$ref": "#/components/schemas/Problem"}
    for (_method, path), operation in operations.items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {
                    "application/problem+json": {"schema": problem_schema}}, (path, status)
        if path.startswith("/v1/"):
            assert operation["security"] == [{"HTTPBearer": []}]
            assert {"401", "422", "503"} <= set(operation["responses"])
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_taskq_api_serves_from_the_command_line(
    dsn: str, make_queue: MakeQueue, make_key: MakeKey,
) -> None:
    queue = await make_queue()
    secret = await make_key("operator", [queue.namespace])
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    process = await asyncio.create_subprocess_exec(
        str(_BIN / "taskq"), "api", "--port", str(port), "--grpc-port", str(free_port()),
        "--log-level", "INFO",
        env={**environment, "TASKQ_DSN": dsn},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):  # bounded: the server starts in about a second
                try:
                    ready = await http.get("/readyz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert ready.status_code == 200
            created = await http.post(queue_path(queue, "/tasks"), headers=bearer(secret),
                                      json={"task_name": "t", "payload": "from the command"})
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), 30)

    assert created.status_code == 201
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines()]
    access = [entry for entry in lines if entry["logger"] == "taskq_api.access"]
    assert [(e["route"], e["status"]) for e in access][-1] == (
        "/v1/queues/{namespace}/{name}/tasks", 201)
    assert "Traceback" not in err.decode()
