"""GET /v1/tasks over millions of tasks: prints one JSON object.

    make bench-list                               # 5,000,000 tasks, its own durable PostgreSQL
    TASKQ_BENCH_LIST_ROWS=1000000 make bench-list

One queue is filled with TASKQ_BENCH_LIST_ROWS tasks in one statement (devenv/filled_queue.py:
the mix of states of a busy queue, as tests/integration/test_list_plan.py uses). A real
`taskq-api` process serves the requests; this process sends TASKQ_BENCH_LIST_REQUESTS
(default 200) sequential requests per case over one kept-alive httpx connection and reports
p50/p95/max latency per case (the issue's target: p95 ≤ 50 ms with 5,000,000 rows).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
from bench.api_bench import NAMESPACE, api_server
from devenv.filled_queue import fill_queue
from devenv.postgres import bench_database

from taskq.auth import Role
from taskq.client import Client
from taskq.store import keys as key_store
from taskq.store.migrations import migrate

ROWS = int(os.environ.get("TASKQ_BENCH_LIST_ROWS", "5000000"))
REQUESTS = int(os.environ.get("TASKQ_BENCH_LIST_REQUESTS", "200"))


async def fill(client: Client, pool: asyncpg.Pool) -> tuple[str, int]:
    queue = await client.ensure_queue(f"{NAMESPACE}/list")
    started = time.perf_counter()
    await fill_queue(pool, queue.id, ROWS)
    middle: int = await pool.fetchval(
        f"SELECT id FROM taskq.tasks_q{queue.id} ORDER BY id OFFSET $1 LIMIT 1", ROWS // 2
    )
    print(f"filled {ROWS:,} tasks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return queue.full_name, middle


def cases(queue: str, middle: int) -> dict[str, dict[str, Any]]:
    """The query parameters of each case (a cursor is the id to start below, base64)."""
    recent = ROWS // 1000 * 1000 - 1000
    cursor = base64.urlsafe_b64encode(str(middle).encode()).decode().rstrip("=")
    return {
        "first_page": {"queue": queue},
        "state_dead": {"queue": queue, "state": "dead"},
        "state_ready_task_rare": {"queue": queue, "state": "ready", "task": "rare"},
        # a recent correlation id: the walk from the newest task is short (an old one walks the
        # queue down to it, docs/api.md)
        "correlation_id_recent": {"queue": queue, "correlation_id": f"order-{recent}"},
        "cursor_mid_queue": {"queue": queue, "cursor": cursor},
        "cursor_mid_queue_state_dead": {"queue": queue, "state": "dead", "cursor": cursor},
    }


async def measure(http: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    latencies = []
    rows = 0
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = await http.get("/v1/tasks", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        rows = len(response.json()["items"])
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "rows_per_page": rows,
    }


async def run(dsn: str, server: str) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        client = Client(pool)
        _key, secret = await key_store.create_key(pool, "bench-list", Role.VIEWER, None)
        queue, middle = await fill(client, pool)
    finally:
        await pool.close()
    results: dict[str, Any] = {}
    with api_server(dsn) as (url, _grpc, _pid):
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            for name, params in cases(queue, middle).items():
                results[name] = await measure(http, params)
    return {
        "cases": results,
        "settings": {
            "rows": ROWS,
            "requests_per_case": REQUESTS,
            "postgres": server,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def main() -> None:
    with bench_database() as (dsn, label, _server):
        print(json.dumps(asyncio.run(run(dsn, label))))


if __name__ == "__main__":
    main()
