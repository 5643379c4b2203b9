"""Deep backlogs: prints one JSON object.

    make bench-backlog
    TASKQ_BACKLOG_TOTAL=2000000 TASKQ_BACKLOG_DEEP=2000000 make bench-backlog

Starts its own PostgreSQL (not durable: fsync off, so the fill takes minutes, not hours; both
depths of a comparison run on the same server) with pg_stat_statements. Two parts:

  operator   TASKQ_BACKLOG_QUEUES queues (1,000) holding TASKQ_BACKLOG_TOTAL ready tasks
             (10,000,000) between them. The operator's depth readings are replayed for
             TASKQ_BACKLOG_SECONDS (30) through its own QueueDatabase and connection pool (4
             connections), as its daemons make them: every queue's status each status interval
             (TASKQ_OPERATOR_STATUS_INTERVAL, 2 s, or longer as the operator paces them:
             status_pace.py) at each of the caps TASKQ_BACKLOG_CAPS
             (TASKQ_OPERATOR_COUNT_CAP, 1,000 and 1,000,000,000), and one WorkerPool per queue
             polling every 10 s at its
             pool's cap (count_cap of the default autoscaling: 100). Reported per cap: the
             database time of those readings per second of wall time (pg_stat_statements'
             execution time of taskq.queue_stats: on a loaded machine it includes waiting for
             a core; its shared buffers per reading do not), readings per second, and each
             status's age (the longest gap between two readings of one queue, which is how old
             its status gets). The cap 1,000,000,000 counts everything, as queue_stats did
             before it had a cap.
  deep       one queue at TASKQ_BACKLOG_SHALLOW ready tasks (100,000), then filled up to
             TASKQ_BACKLOG_DEEP (10,000,000). At each depth: one queue_stats at the operator's
             cap and one counting everything (as before migration 0030), claim latency
             (TASKQ_BACKLOG_CLAIMS claims of 100 tasks through the worker's claim query, each
             batch acknowledged), the claim's shared buffers (EXPLAIN ANALYZE of one claim, as
             in tests/integration/test_claim_plan.py), and the processing rate of one Worker
             draining TASKQ_BACKLOG_PROCESS no-op tasks (concurrency 100, batch 100).

Tasks are filled through taskq.enqueue_many (the bulk enqueue's SQL function), 10,000 a call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from devenv.postgres import LocalPostgres

from taskq.client import Client, connect
from taskq.models import QueueInfo, QueueSettings
from taskq.store.sqlfiles import query
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.main import tune_gc, worker_pool
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings
from taskq_operator.api import AutoscalingSpec
from taskq_operator.autoscaling import count_cap
from taskq_operator.databases import Databases
from taskq_operator.settings import OperatorSettings

QUEUES = int(os.environ.get("TASKQ_BACKLOG_QUEUES", "1000"))
TOTAL = int(os.environ.get("TASKQ_BACKLOG_TOTAL", "10000000"))
SECONDS = float(os.environ.get("TASKQ_BACKLOG_SECONDS", "30"))
SHALLOW = int(os.environ.get("TASKQ_BACKLOG_SHALLOW", "100000"))
DEEP = int(os.environ.get("TASKQ_BACKLOG_DEEP", "10000000"))
CLAIMS = int(os.environ.get("TASKQ_BACKLOG_CLAIMS", "200"))
PROCESS = int(os.environ.get("TASKQ_BACKLOG_PROCESS", "50000"))
STATUS_INTERVAL = OperatorSettings().status_interval
POOL_INTERVAL = AutoscalingSpec().poll_interval_seconds
POOL_CAP = count_cap(AutoscalingSpec())
CAPS = [
    int(cap)
    for cap in os.environ.get(
        "TASKQ_BACKLOG_CAPS", f"{OperatorSettings().count_cap},1000,1000000000"
    ).split(",")
]
CHUNK = 10_000
BATCH = 100

# enqueue_many's arrays made in the server: `n` ready no-op tasks in one call
FILL = """
SELECT count(*) FROM taskq.enqueue_many(
    p_queue => $1, p_task_names => array_fill('noop'::text, ARRAY[$2::int]),
    p_payloads => array_fill('{}'::json, ARRAY[$2::int]))
"""
STATS_TIME = """
SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(total_exec_time), 0) AS ms,
       coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint AS buffers
  FROM pg_stat_statements WHERE query LIKE '%taskq.queue_stats(%'
"""


async def fill(db: asyncpg.Pool, queue: str, count: int) -> None:
    for start in range(0, count, CHUNK):
        await db.fetchval(FILL, queue, min(CHUNK, count - start), timeout=600)


async def fill_many(db: asyncpg.Pool, queues: list[QueueInfo], each: int) -> None:
    """Two connections at once: the machine has two cores."""
    todo = list(queues)

    async def filler() -> None:
        while todo:
            await fill(db, todo.pop().full_name, each)

    await asyncio.gather(filler(), filler())


async def replay_operator(dsn: str, queues: list[QueueInfo], status_cap: int) -> dict[str, Any]:
    """The operator's readings over SECONDS: statuses every STATUS_INTERVAL, pools every
    POOL_INTERVAL, each daemon starting at a random point of its period (as daemons started
    over time do)."""
    databases = Databases()
    db = await databases.database(dsn)
    monitor = await asyncpg.connect(dsn)
    status_reads: dict[int, list[float]] = {q.id: [] for q in queues}
    intervals: list[float] = []  # as the database's pace gave them (status_pace.py)
    capped = 0
    started = time.perf_counter()
    end = started + SECONDS

    async def daemon(queue: QueueInfo, period: float, cap: int, status: bool) -> None:
        nonlocal capped
        await asyncio.sleep(random.uniform(0, period))
        while time.perf_counter() < end:
            stats = await db.queue_stats(queue, cap)
            if status:
                status_reads[queue.id].append(time.perf_counter())
                capped += bool(stats.capped)
                intervals.append(db.status_interval(period))
                # as the daemon (daemons.py): the next pass this long after this one ends
                await asyncio.sleep(intervals[-1])
            else:
                await asyncio.sleep(period)

    try:
        await monitor.execute("SELECT pg_stat_statements_reset()")
        await asyncio.gather(
            *(daemon(q, STATUS_INTERVAL, status_cap, True) for q in queues),
            *(daemon(q, POOL_INTERVAL, POOL_CAP, False) for q in queues),
        )
        wall = time.perf_counter() - started
        row = await monitor.fetchrow(STATS_TIME)
        assert row is not None
    finally:
        await monitor.close()
        await databases.close()
    ages: list[float] = []
    for times in status_reads.values():
        # the status is as old as the gap to the next reading (the first after a random start)
        ages.extend(b - a for a, b in itertools.pairwise(times))
    ages.sort()
    reads = sum(len(r) for r in status_reads.values())
    return {
        "status_cap": status_cap,
        "db_ms_per_s": round(row["ms"] / wall, 1),
        "readings_per_s": round(row["calls"] / wall, 1),
        "db_ms_per_reading": round(row["ms"] / max(1, row["calls"]), 3),
        "buffers_per_reading": round(row["buffers"] / max(1, row["calls"]), 1),
        "status_readings": reads,
        "status_readings_capped": capped,
        "status_age_p50_s": round(statistics.median(ages), 2),
        "status_age_p99_s": round(ages[int(len(ages) * 0.99) - 1], 2),
        "status_age_max_s": round(ages[-1], 2),
        "status_interval_median_s": round(statistics.median(intervals), 2),
    }


async def part_operator(dsn: str, client: Client) -> dict[str, Any]:
    queues = [
        await client.ensure_queue(f"backlog/q{n:04d}", QueueSettings()) for n in range(QUEUES)
    ]
    began = time.perf_counter()
    await fill_many(client.pool, queues, TOTAL // QUEUES)
    await client.pool.execute("VACUUM ANALYZE taskq.tasks", timeout=3600)
    filled = time.perf_counter() - began
    runs = [await replay_operator(dsn, queues, cap) for cap in CAPS]
    for queue in queues:
        await client.drop_queue(queue.full_name)
    return {"fill_s": round(filled), "runs": runs}


async def claim_figures(client: Client, queue: QueueInfo) -> dict[str, Any]:
    """CLAIMS claims of BATCH through the worker's claim query, each batch acknowledged."""
    latencies = []
    async with client.pool.acquire() as conn:
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT * FROM taskq.claim($1, 'bench-plan', $2, 30, true, $3, $4, $5)",
            queue.id,
            BATCH,
            None,
            None,
            0,
        )
        claim_buffers = _buffers(json.loads(plan)[0]["Plan"])
        for _ in range(CLAIMS):
            began = time.perf_counter()
            rows = await conn.fetch(
                query("claim"), queue.id, "bench", BATCH, 30, True, None, None, 0
            )
            latencies.append((time.perf_counter() - began) * 1000)
            await conn.fetch(
                query("complete"),
                queue.id,
                "bench",
                "succeeded",
                [r["id"] for r in rows],
                [r["attempt_id"] for r in rows],
                None,
            )
    latencies.sort()
    return {
        "claim_p50_ms": round(statistics.median(latencies), 2),
        "claim_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 2),
        "claim_plan_buffers": claim_buffers,
    }


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0))


async def process_rate(dsn: str, queue: QueueInfo) -> float:
    registry = Registry()
    done = asyncio.Event()
    count = 0

    @registry.task("noop")
    async def noop(_ctx: TaskContext) -> None:
        nonlocal count
        count += 1
        if count == PROCESS:
            done.set()

    settings = WorkerSettings(
        dsn=dsn,
        queues=[queue.full_name],
        app="bench",
        concurrency=100,
        batch_size=BATCH,
        metrics_port=0,
        log_level="WARNING",
    )
    pool = await worker_pool(dsn)
    worker = Worker(pool, registry, settings, "bench-worker")
    stop = asyncio.Event()
    began = time.perf_counter()
    running = asyncio.create_task(worker.run(stop))
    await done.wait()
    elapsed = time.perf_counter() - began
    stop.set()
    await running
    await pool.close()
    return PROCESS / elapsed


async def depth_figures(dsn: str, client: Client, queue: QueueInfo) -> dict[str, Any]:
    await client.pool.execute(f"VACUUM ANALYZE taskq.tasks_q{int(queue.id)}", timeout=3600)
    readings = {}
    for cap in (OperatorSettings().count_cap, 1_000_000_000):
        began = time.perf_counter()
        stats = await client.queue_stats(queue, cap=cap)
        readings[f"queue_stats_ms_cap_{cap}"] = round((time.perf_counter() - began) * 1000, 1)
    claims = await claim_figures(client, queue)
    rate = await process_rate(dsn, queue)
    return {"ready": stats.ready, **readings, **claims, "process_tasks_per_s": round(rate)}


async def part_deep(dsn: str, client: Client) -> dict[str, Any]:
    queue = await client.ensure_queue("backlog/deep", QueueSettings())
    await fill(client.pool, queue.full_name, SHALLOW)
    shallow = await depth_figures(dsn, client, queue)
    began = time.perf_counter()
    ready = (await client.queue_stats(queue, cap=1_000_000_000)).ready
    await fill(client.pool, queue.full_name, DEEP - ready)
    filled = time.perf_counter() - began
    deep = await depth_figures(dsn, client, queue)
    await client.drop_queue(queue.full_name)
    return {
        "shallow": shallow,
        "deep": deep,
        "fill_deep_s": round(filled),
        "claim_p50_ratio": round(deep["claim_p50_ms"] / shallow["claim_p50_ms"], 2),
        "process_ratio": round(deep["process_tasks_per_s"] / shallow["process_tasks_per_s"], 2),
    }


async def run(dsn: str) -> dict[str, Any]:
    async with await connect(dsn, min_size=2, max_size=4) as client:
        await client.migrate()
        await client.pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        parts = os.environ.get("TASKQ_BACKLOG_PARTS", "operator,deep").split(",")
        operator = await part_operator(dsn, client) if "operator" in parts else None
        deep = await part_deep(dsn, client) if "deep" in parts else None
    return {
        "operator": operator,
        "deep": deep,
        "settings": {
            "queues": QUEUES,
            "combined_backlog": TOTAL,
            "seconds": SECONDS,
            "status_interval_s": STATUS_INTERVAL,
            "caps": CAPS,
            "pool_interval_s": POOL_INTERVAL,
            "pool_cap": POOL_CAP,
            "shallow": SHALLOW,
            "deep": DEEP,
            "claims": CLAIMS,
            "processed": PROCESS,
            "postgres": "local, not durable (fsync off), pg_stat_statements",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def main() -> None:
    tune_gc()
    server = LocalPostgres.temporary(
        settings={
            "shared_preload_libraries": "pg_stat_statements",
            "max_locks_per_transaction": "256",
        }
    )
    server.start()
    try:
        print(json.dumps(asyncio.run(run(server.dsn))))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
