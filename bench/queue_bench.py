"""Queue benchmark: prints one JSON object.

    make bench                        # starts its own durable PostgreSQL (fsync on)
    TASKQ_BENCH_DSN=postgresql://... TASKQ_BENCH_N=200000 make bench

Phases (each on a fresh queue):
  enqueue_bulk      N tasks through Client.enqueue_many (one transaction)
  enqueue_single    sequential Client.enqueue calls, one transaction each
  process           N no-op tasks drained by one in-process Worker (claim, run, acknowledge)
  pickup            an idle, LISTENing worker; time from the enqueue call to handler start,
                    one task at a time
  drain             DRAIN_WORKERS idle workers with the worker's default settings (concurrency
                    10, claim batch 100, poll 1 s), LISTENing and then only polling
                    (TASKQ_LISTEN=false, as behind PgBouncer); DRAIN_N no-op tasks arrive in one
                    enqueue; rate from the first handler start to the last handler end (the wait
                    for the first poll is not counted)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv.postgres import bench_database

from taskq.client import Client, connect
from taskq.models import TaskRequest
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.main import tune_gc, worker_pool
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings

N = int(os.environ.get("TASKQ_BENCH_N", "100000"))
SINGLE_N = min(N, 3000)
PICKUP_N = 300
CONCURRENCY = int(os.environ.get("TASKQ_BENCH_CONCURRENCY", "1000"))
BATCH = int(os.environ.get("TASKQ_BENCH_BATCH", "500"))
DRAIN_N = int(os.environ.get("TASKQ_BENCH_DRAIN_N", "20000"))
DRAIN_WORKERS = int(os.environ.get("TASKQ_BENCH_DRAIN_WORKERS", "2"))


def _settings(dsn: str, queue: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "dsn": dsn,
        "queues": [queue],
        "app": "bench",
        "concurrency": CONCURRENCY,
        "batch_size": BATCH,
        "metrics_port": 0,
        "log_level": "WARNING",
        **overrides,
    }
    return WorkerSettings(**values)


async def bench_enqueue_bulk(client: Client) -> float:
    queue = (await client.ensure_queue("bench/bulk")).full_name
    requests = [TaskRequest("noop", {"n": n}) for n in range(N)]
    started = time.perf_counter()
    await client.enqueue_many(queue, requests)
    return N / (time.perf_counter() - started)


async def bench_enqueue_single(client: Client) -> float:
    queue = (await client.ensure_queue("bench/single")).full_name
    started = time.perf_counter()
    for n in range(SINGLE_N):
        await client.enqueue(queue, "noop", {"n": n})
    return SINGLE_N / (time.perf_counter() - started)


async def bench_process(client: Client, dsn: str) -> float:
    queue = (await client.ensure_queue("bench/process")).full_name
    await client.enqueue_many(queue, [TaskRequest("noop", {"n": n}) for n in range(N)])
    registry = Registry()
    done = asyncio.Event()
    count = 0

    @registry.task("noop")
    async def noop(_ctx: TaskContext) -> None:
        nonlocal count
        count += 1
        if count == N:
            done.set()

    pool = await worker_pool(dsn)  # as `taskq worker` makes it
    worker = Worker(pool, registry, _settings(dsn, queue), "bench-worker")
    stop = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(worker.run(stop))
    await done.wait()
    stop.set()
    await running  # graceful stop flushes the last acknowledgements
    elapsed = time.perf_counter() - started
    await pool.close()
    stats = await client.queue_stats(queue)
    if stats.ready or stats.running:
        raise RuntimeError(f"process phase left tasks behind: {stats}")
    return N / elapsed


async def bench_pickup(client: Client, dsn: str) -> tuple[float, float]:
    queue = (await client.ensure_queue("bench/pickup")).full_name
    registry = Registry()
    picked: dict[int, float] = {}
    arrived = asyncio.Event()

    @registry.task("noop")
    async def noop(ctx: TaskContext) -> None:
        picked[ctx.task_id] = time.perf_counter()
        arrived.set()

    pool = await worker_pool(dsn)
    worker = Worker(pool, registry, _settings(dsn, queue, concurrency=10), "bench-pickup")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.5)  # let it start listening
    latencies = []
    for n in range(PICKUP_N):
        arrived.clear()
        sent = time.perf_counter()
        result = await client.enqueue(queue, "noop", {"n": n})
        await asyncio.wait_for(arrived.wait(), 10)
        latencies.append((picked[result.id] - sent) * 1000)
        await asyncio.sleep(0.01)  # idle again
    stop.set()
    await running
    await pool.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


async def bench_drain(client: Client, dsn: str, listen: bool) -> float:
    queue = (await client.ensure_queue("bench/drain")).full_name
    registry = Registry()
    times: list[float] = []
    done = asyncio.Event()

    @registry.task("noop")
    async def noop(_ctx: TaskContext) -> None:
        times.append(time.perf_counter())
        if len(times) == DRAIN_N:
            done.set()

    defaults = {"concurrency": 10, "batch_size": 100, "poll_interval": 1.0, "listen": listen}
    pools = [await worker_pool(dsn) for _ in range(DRAIN_WORKERS)]
    stop = asyncio.Event()
    running = [
        asyncio.create_task(
            Worker(pool, registry, _settings(dsn, queue, **defaults), f"bench-drain-{n}").run(stop)
        )
        for n, pool in enumerate(pools)
    ]
    await asyncio.sleep(1.5)  # idle: every worker's first claim came back empty
    await client.enqueue_many(queue, [TaskRequest("noop", {"n": n}) for n in range(DRAIN_N)])
    await asyncio.wait_for(done.wait(), 600)
    stop.set()
    await asyncio.gather(*running)
    for pool in pools:
        await pool.close()
    await client.drop_queue(queue)
    return DRAIN_N / (times[-1] - times[0])


async def run(dsn: str, server: str) -> dict[str, Any]:
    async with await connect(dsn, min_size=2, max_size=8) as client:
        await client.migrate()
        for name in ("bulk", "single", "process", "pickup"):
            await client.drop_queue(f"bench/{name}")
        bulk = await bench_enqueue_bulk(client)
        single = await bench_enqueue_single(client)
        process = await bench_process(client, dsn)
        p50, p99 = await bench_pickup(client, dsn)
        await client.drop_queue("bench/drain")
        drain_listen = await bench_drain(client, dsn, listen=True)
        drain_polling = await bench_drain(client, dsn, listen=False)
        for name in ("bulk", "single", "process", "pickup"):
            await client.drop_queue(f"bench/{name}")
    return {
        "enqueue_bulk_tasks_per_s": round(bulk),
        "enqueue_single_tasks_per_s": round(single),
        "process_tasks_per_s": round(process),
        "pickup_p50_ms": round(p50, 2),
        "pickup_p99_ms": round(p99, 2),
        "drain_listen_tasks_per_s": round(drain_listen),
        "drain_polling_tasks_per_s": round(drain_polling),
        "settings": {
            "tasks": N,
            "single_tasks": SINGLE_N,
            "pickup_samples": PICKUP_N,
            "worker_concurrency": CONCURRENCY,
            "claim_batch": BATCH,
            "drain_tasks": DRAIN_N,
            "drain_workers": DRAIN_WORKERS,
            "postgres": server,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def main() -> None:
    tune_gc()  # the worker runs as in `taskq worker`, which does this once its app is loaded
    with bench_database() as (dsn, label, _):
        result = asyncio.run(run(dsn, label))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
