"""Every dashboard page's server time over millions of tasks: prints one JSON object.

    make bench-dashboard                                   # 5,000,000 tasks in 200 queues
    TASKQ_BENCH_DASHBOARD_ROWS=200000 make bench-dashboard  # a quick run

TASKQ_BENCH_DASHBOARD_QUEUES (default 200) queues in 20 namespaces share
TASKQ_BENCH_DASHBOARD_ROWS (default 5,000,000) tasks, loaded through the client's bulk enqueue
(COPY, 10,000 a call; 5 % of them delayed an hour), then worked through the real claim and
complete: 78 % succeeded, 2 % dead (max_attempts 1), 20 % left waiting (15 % ready, 5 %
scheduled). The finished ones are then spread over the last day (devenv/filled_queue.py
`age_finished`: a day of history, as the default retention keeps), and the database vacuumed
and analyzed. A real `taskq-api --dashboard` serves the pages; this process signs in with an
admin key of every namespace and sends TASKQ_BENCH_DASHBOARD_REQUESTS (default 50) sequential
requests per page over one kept-alive connection after one first request (reported apart: the
overview's first read counts each queue's whole hour, later ones only the open minutes), and
reports p50/p95/max in ms as the client sees them on 127.0.0.1. The target (issue 12): p95 ≤
200 ms per page. With TASKQ_BENCH_DSN naming a database an earlier run loaded, the pages are
measured again without loading.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
from bench.api_bench import api_server
from devenv.filled_queue import age_finished
from devenv.postgres import bench_database

from taskq.auth import Role
from taskq.client import Client
from taskq.models import QueueInfo, QueueSettings, TaskRequest
from taskq.store import execution as store
from taskq.store import keys as key_store
from taskq.store.execution import Completion
from taskq.store.migrations import migrate
from taskq_api.service import ERROR_SEARCH_WALK

ROWS = int(os.environ.get("TASKQ_BENCH_DASHBOARD_ROWS", "5000000"))
QUEUES = int(os.environ.get("TASKQ_BENCH_DASHBOARD_QUEUES", "200"))
REQUESTS = int(os.environ.get("TASKQ_BENCH_DASHBOARD_REQUESTS", "50"))
NAMESPACES = 20
BATCH = 10_000
HISTORY_SECONDS = 86_400
WORKER = "bench-dashboard"
SECRET = "a-benchmark-session-secret-of-32-chars-or-more"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NEXT = re.compile(r'<a href="(/dashboard/tasks\?[^"]+)" rel="next">')


def _name(n: int) -> str:
    return f"bench-{n % NAMESPACES}/q{n}"


async def _load(client: Client, pool: asyncpg.Pool, n: int, rows: int) -> QueueInfo:
    queue = await client.ensure_queue(_name(n), QueueSettings(max_attempts=1))
    delayed = rows // 20
    for start in range(0, rows, BATCH):
        await client.enqueue_many(queue.full_name, [
            TaskRequest("resize", {"image": f"{n}-{i}.png"}, delay=3600 if i < delayed else None)
            for i in range(start, min(rows, start + BATCH))
        ])
    # work off 80 %: 78 % succeed, 2 % die
    to_finish = rows * 80 // 100
    dead = rows * 2 // 100
    finished = 0
    while finished < to_finish:
        claimed = await store.claim(
            pool, queue.id, queue.full_name, WORKER, min(BATCH, to_finish - finished), 300.0
        )
        if not claimed:
            break
        done = []
        for task in claimed:
            if finished < dead:
                done.append(Completion(queue.id, task.id, task.attempt_id, "failed", None,
                                       '{"type": "Boom", "message": "on purpose"}'))
            else:
                done.append(Completion(queue.id, task.id, task.attempt_id, "succeeded"))
            finished += 1
        await store.complete(pool, WORKER, done)
    await age_finished(pool, queue.id, HISTORY_SECONDS)
    return queue


async def load(client: Client, pool: asyncpg.Pool) -> list[QueueInfo]:
    started = time.perf_counter()
    per_queue = ROWS // QUEUES
    queues = []
    for n in range(QUEUES):
        queues.append(await _load(client, pool, n, per_queue))
        if n % 20 == 19:
            print(f"loaded {n + 1} queues in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    await pool.execute("VACUUM ANALYZE", timeout=3600)
    print(f"loaded {per_queue * QUEUES:,} tasks in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    return queues


async def sign_in(http: httpx.AsyncClient, secret: str) -> None:
    form = await http.get("/dashboard/login")
    found = _CSRF.search(form.text)
    assert found, form.text
    signed = await http.post(
        "/dashboard/login", data={"csrf": found.group(1), "key": secret, "next": ""}
    )
    assert signed.status_code == 303, signed.text


async def measure(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    def one() -> Any:
        return http.get(path)

    started = time.perf_counter()
    response = await one()
    first = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    latencies = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = await one()
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    latencies.sort()
    return {
        "first_ms": round(first, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[max(int(len(latencies) * 0.95) - 1, 0)], 1),
        "max_ms": round(latencies[-1], 1),
        "bytes": len(response.content),
    }


async def pages(pool: asyncpg.Pool, queues: list[QueueInfo]) -> dict[str, str]:
    oldest, newest = queues[0], queues[-1]
    # a task of the first queue: a lookup by id probes the newest queue first, so the worst case
    task_id = await pool.fetchval(
        f"SELECT max(id) FROM taskq.tasks_q{oldest.id} WHERE state = 'succeeded'"
    )
    return {
        "login": "/dashboard/login",
        "overview": "/dashboard/",
        "overview_one_namespace": f"/dashboard/?namespace={newest.namespace}",
        "queue": f"/dashboard/queues/{newest.full_name}",
        "tasks": f"/dashboard/tasks?queue={newest.full_name}",
        "tasks_dead": f"/dashboard/tasks?queue={newest.full_name}&state=dead",
        # the error-text filter: the dead tasks' errors sit under the newest 93 % of the
        # queue, so each of these reads its bound (ERROR_SEARCH_WALK tasks) and ends early
        "tasks_error_rare": f"/dashboard/tasks?queue={newest.full_name}&error=ON%20PURPOSE",
        "tasks_error_dead": (
            f"/dashboard/tasks?queue={newest.full_name}&state=dead&error=on%20purpose"
        ),
        "tasks_error_absent": f"/dashboard/tasks?queue={newest.full_name}&error=no%25such_text",
        "task_in_the_oldest_queue": f"/dashboard/tasks/{task_id}",
        "submit": "/dashboard/submit",
        "keys": "/dashboard/keys",
    }


async def run(dsn: str, server: str) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        client = Client(pool)
        _key, secret = await key_store.create_key(
            pool, f"bench-dashboard-{int(time.time())}", Role.ADMIN, None  # one per run
        )
        queues = [q for q in await client.list_queues() if q.namespace.startswith("bench-")]
        if len(queues) == QUEUES:  # loaded by an earlier run (TASKQ_BENCH_DSN): measure again
            queues.sort(key=lambda q: q.id)
        else:
            queues = await load(client, pool)
        paths = await pages(pool, queues)
    finally:
        await pool.close()
    os.environ.update({"TASKQ_API_DASHBOARD": "true", "TASKQ_API_SESSION_SECRET": SECRET})
    results: dict[str, Any] = {}
    with api_server(dsn) as (url, _grpc, _pid):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await sign_in(http, secret)
            # the error search's next page, as its first page links it: where the first
            # stopped reading, with the dead tasks within reach
            first = await http.get(paths["tasks_error_rare"])
            found = _NEXT.search(first.text)
            assert found, first.text
            paths["tasks_error_next"] = html.unescape(found.group(1))
            for name, path in paths.items():
                if name == "login":
                    async with httpx.AsyncClient(base_url=url, timeout=120) as anonymous:
                        results[name] = await measure(anonymous, path)
                else:
                    results[name] = await measure(http, path)
    return {
        "pages": results,
        "settings": {
            "rows": ROWS // QUEUES * QUEUES,
            "queues": QUEUES,
            "requests_per_page": REQUESTS,
            "error_search_walk": ERROR_SEARCH_WALK,
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
