"""Traces from enqueue to execution, against a real OTLP receiver (Jaeger v2, built from its Go
module): `taskq enqueue` and `taskq worker` run as they would in production, configured only by
the standard OTEL_* variables, and the test queries Jaeger for what they sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from devenv.jaeger import LocalJaeger
from devenv.operator import REPO
from devenv.postgres import free_port

from taskq.auth import Role
from taskq.client import connect
from taskq.models import QueueSettings
from taskq.store import keys as key_store

BIN = Path(sys.executable).parent
# a trace and span of a caller that is not taskq: a SQL producer names its own
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
# an HTTP caller's, sent to the API as a traceparent header
HTTP_TRACE, HTTP_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def wait_for(probe: Callable[[], Any], what: str, limit: float = 30) -> Any:
    deadline = time.monotonic() + limit
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {value!r}")


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def service(trace: dict[str, Any], span: dict[str, Any]) -> str:
    name: str = trace["processes"][span["processID"]]["serviceName"]
    return name


def test_one_trace_spans_producer_and_worker(dsn: str, tmp_path: Path) -> None:
    queue = "traced/thumbnails"

    async def setup() -> str:
        async with await connect(dsn) as client:
            await client.ensure_queue(queue, QueueSettings(max_attempts=1))
        conn = await asyncpg.connect(dsn)
        try:
            _key, secret = await key_store.create_key(
                conn, f"traced-{uuid.uuid4().hex[:8]}", Role.OPERATOR, ["traced"])
            # a SQL producer passes its own trace context
            await conn.execute(
                "SELECT taskq.enqueue(p_queue => $1, p_task_name => 'make_thumbnail',"
                " p_payload => '{\"image\": \"sql.png\"}', p_traceparent => $2)",
                queue,
                f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            )
        finally:
            await conn.close()
        return secret

    secret = asyncio.run(setup())
    with LocalJaeger(tmp_path) as jaeger:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TASKQ_", "OTEL_"))},
            "TASKQ_DSN": dsn,
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
            "PYTHONPATH": str(REPO),
        }
        for image in ("cat.png", "dog.corrupt"):
            payload = json.dumps({"image": image})
            enqueued = subprocess.run(
                [str(BIN / "taskq"), "enqueue", queue, "make_thumbnail", payload],
                env={**env, "OTEL_SERVICE_NAME": "shop"},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert enqueued.returncode == 0, enqueued.stderr
        api_port = free_port()
        api = subprocess.Popen(
            [str(BIN / "taskq"), "api", "--port", str(api_port), "--grpc-port", str(free_port())],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as http:
                wait_for(lambda: _answers(http), "the API server to start")
                created = http.post(
                    f"/v1/queues/{queue}/tasks",
                    json={"task_name": "make_thumbnail", "payload": {"image": "api.png"}},
                    headers={
                        "authorization": f"Bearer {secret}",
                        "traceparent": f"00-{HTTP_TRACE}-{HTTP_SPAN}-01",
                    },
                )
                assert created.status_code == 201, created.text
        finally:
            api.send_signal(signal.SIGTERM)  # its spans are flushed as it stops
            assert api.wait(30) == 0
        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [str(BIN / "taskq"), "worker"],
                env={
                    **env,
                    "TASKQ_QUEUES": queue,
                    "TASKQ_APP": "examples.thumbnails",
                    "TASKQ_METRICS_PORT": "0",
                },
                stderr=log,
                cwd=REPO,
            )
        try:
            wait_for(lambda: "task failed" in worker_log.read_text(), "the corrupt image to fail")
            wait_for(lambda: len(jaeger.traces("taskq-worker")) >= 4, "the worker's spans")
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0

        shop = {t["traceID"]: t for t in jaeger.traces("shop")}
        assert len(shop) == 2  # one per `taskq enqueue`
        failed = None
        for trace in shop.values():
            spans = {s["operationName"]: s for s in trace["spans"]}
            sent, processed = spans[f"send {queue}"], spans[f"process {queue}"]
            assert service(trace, sent) == "shop"
            assert service(trace, processed) == "taskq-worker"
            (parent,) = processed["references"]
            assert (parent["refType"], parent["spanID"]) == ("CHILD_OF", sent["spanID"])
            attributes = tags(processed)
            assert attributes["messaging.system"] == "taskq"
            assert attributes["messaging.operation.type"] == "process"
            assert attributes["messaging.destination.name"] == queue
            assert attributes["taskq.task.name"] == "make_thumbnail"
            assert tags(sent)["span.kind"] == "producer"
            assert attributes["span.kind"] == "consumer"
            if attributes["taskq.outcome"] == "failed":
                failed = trace
                assert attributes["error.type"] == "ValueError"
        assert failed is not None, "the corrupt image's attempt is a failed span"

        # the worker's log line for that attempt carries its trace
        (line,) = [
            json.loads(entry)
            for entry in worker_log.read_text().splitlines()
            if "task failed" in entry
        ]
        assert line["trace_id"] == failed["traceID"]

        # the SQL producer's task runs as a child of the caller's span
        (sql_trace,) = [
            t for t in jaeger.traces("taskq-worker") if t["traceID"] == CALLER_TRACE
        ]
        (processed,) = [s for s in sql_trace["spans"] if s["operationName"] == f"process {queue}"]
        assert processed["references"][0]["spanID"] == CALLER_SPAN
        # the API continues its HTTP caller's trace: its send span, then the worker's
        (http_trace,) = [t for t in jaeger.traces("taskq-api") if t["traceID"] == HTTP_TRACE]
        spans = {s["operationName"]: s for s in http_trace["spans"]}
        sent, processed = spans[f"send {queue}"], spans[f"process {queue}"]
        assert service(http_trace, sent) == "taskq-api"
        assert sent["references"][0]["spanID"] == HTTP_SPAN
        assert processed["references"][0]["spanID"] == sent["spanID"]
        # claims are spans of their own
        receives = [
            s
            for t in jaeger.traces("taskq-worker")
            for s in t["spans"]
            if s["operationName"] == f"receive {queue}"
        ]
        assert receives
