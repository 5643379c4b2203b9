"""GET /v1/tasks over millions of tasks: prints one JSON object.

    make bench-list                               # 5,000,000 tasks, its own durable PostgreSQL
    TASKQ_BENCH_LIST_ROWS=1000000 make bench-list

One queue is filled with TASKQ_BENCH_LIST_ROWS tasks in one INSERT ... SELECT, in id order as
a queue filled over time, with the state mix of tests/integration/test_list_plan.py (40 %
succeeded, 10 % dead, 10 % canceled, 10 % running, 10 % scheduled, 20 % ready; one task name
in seven "rare"; one task in 1,000 with a correlation id), then VACUUM ANALYZE. A real
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
from devenv.postgres import bench_database

from taskq.auth import Role
from taskq.client import Client
from taskq.store import keys as key_store
from taskq.store.migrations import migrate

ROWS = int(os.environ.get("TASKQ_BENCH_LIST_ROWS", "5000000"))
REQUESTS = int(os.environ.get("TASKQ_BENCH_LIST_REQUESTS", "200"))
STATES = ["succeeded"] * 4 + ["dead", "canceled", "running", "scheduled", "ready", "ready"]

FILL = """
INSERT INTO taskq.tasks (queue_id, id, task_name, state, priority, payload, max_attempts,
                         attempts, total_attempts, worker_id, attempt_id, lease_expires_at,
                         error, finished_at, run_at, created_at, correlation_id)
SELECT $1, nextval('taskq.task_id_seq'), CASE WHEN n % 7 = 0 THEN 'rare' ELSE 't' END,
       s.state, 50, jsonb_build_object('n', n), 3,
       CASE WHEN s.state IN ('succeeded', 'dead', 'running') THEN 1 ELSE 0 END,
       CASE WHEN s.state IN ('succeeded', 'dead', 'running') THEN 1 ELSE 0 END,
       CASE WHEN s.state IN ('succeeded', 'running') THEN 'w' END,
       CASE WHEN s.state IN ('succeeded', 'running') THEN gen_random_uuid() END,
       CASE WHEN s.state = 'running' THEN now() + interval '1 hour' END,
       CASE WHEN s.state = 'dead' THEN '{"message": "boom"}'::jsonb END,
       CASE WHEN s.state IN ('succeeded', 'dead', 'canceled') THEN now() END,
       now() + CASE WHEN s.state = 'scheduled' THEN interval '1 day' ELSE '0' END,
       now() - make_interval(secs => ($2 - n) / 100.0),
       CASE WHEN n % 1000 = 0 THEN 'order-' || n END
  FROM generate_series(1, $2) AS n,
       LATERAL (SELECT ($3::text[])[n % 10 + 1] AS state) AS s
 ORDER BY n
"""


async def fill(client: Client, pool: asyncpg.Pool) -> tuple[str, int]:
    queue = await client.ensure_queue(f"{NAMESPACE}/list")
    started = time.perf_counter()
    await pool.execute(FILL, queue.id, ROWS, STATES, timeout=3600)
    await pool.execute(f"VACUUM ANALYZE taskq.tasks_q{queue.id}", timeout=3600)
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
        rows = len(response.json()["tasks"])
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
    with api_server(dsn) as (url, _grpc):
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
