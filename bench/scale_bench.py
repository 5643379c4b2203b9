"""Scale benchmark: many workers through PgBouncer beside a few direct ones; prints one JSON
object.

    python bench/scale_bench.py     # its own durable PostgreSQL and PgBouncer (devenv/)
    TASKQ_BENCH_WORKERS=1000 TASKQ_BENCH_PROCESSES=4 python bench/scale_bench.py

Two runs on one durable PostgreSQL (max_connections 200), each on a fresh queue:
  pooled  TASKQ_BENCH_WORKERS Worker instances (default 1,000), split over
          TASKQ_BENCH_PROCESSES processes, each instance as a replica runs it (its own pool,
          beat thread and maintenance; TASKQ_DB_POOL_MODE=transaction, TASKQ_LISTEN=false,
          TASKQ_POLL_INTERVAL=TASKQ_BENCH_POLL, default 1 s) through one PgBouncer in transaction
          pooling lending at most TASKQ_BENCH_POOL_SIZE server connections (default 20);
  direct  TASKQ_BENCH_DIRECT_WORKERS Worker instances (default 10) with direct connections and
          the worker's defaults (LISTEN on).
Every worker: concurrency 10, claim batch 100 (the defaults), one no-op handler. In each run,
once every worker beats and has idled IDLE_SECONDS:
  pickup      PICKUP_N tasks enqueued one by one every PICKUP_GAP seconds (open loop, idle-ish);
              latency from the enqueue call (its durable commit included) to the handler start,
              both on the host's monotonic clock (one clock for every process)
  throughput  DRAIN_N no-op tasks in one enqueue; rate from the first handler start to the last
  idle_statements_per_s  statements the idle workers sent, over IDLE_SECONDS
  idle_calls_per_worker_s  the same by kind (pg_stat_statements: the taskq function a
              statement calls, else its first words), per worker and second
  attempts_lost  attempts rescued from a worker taken for dead (its beats came over 3 s late)
  server_connections  the most backends of the benchmark's database seen in pg_stat_activity,
              sampled every 50 ms from the workers' start to their stop (the producer's and
              the workers' alike; this benchmark's own observer connects to another database)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from devenv.pgbouncer import LocalPgBouncer
from devenv.postgres import LocalPostgres

from taskq.client import connect
from taskq.errors import TaskqError
from taskq.models import TaskRequest
from taskq.store.pool_mode import PoolMode
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.main import close_pool, tune_gc, worker_pool
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings

WORKERS = int(os.environ.get("TASKQ_BENCH_WORKERS", "1000"))
PROCESSES = int(os.environ.get("TASKQ_BENCH_PROCESSES", "4"))
DIRECT_WORKERS = int(os.environ.get("TASKQ_BENCH_DIRECT_WORKERS", "10"))
POOL_SIZE = int(os.environ.get("TASKQ_BENCH_POOL_SIZE", "20"))
POLL = float(os.environ.get("TASKQ_BENCH_POLL", "1.0"))
PICKUP_N = int(os.environ.get("TASKQ_BENCH_PICKUP_N", "200"))
PICKUP_GAP = 0.1  # seconds between pickup tasks
DRAIN_N = int(os.environ.get("TASKQ_BENCH_DRAIN_N", "20000"))
IDLE_SECONDS = 10.0
STARTING_AT_ONCE = 2  # worker instances a process starts at a time: a rolling start
RESTART_DELAY = 1.0  # seconds before a failed worker instance starts again
DATABASE = "taskq_scale"


@dataclass(frozen=True)
class Run:
    name: str
    dsn: str
    pool_mode: PoolMode
    workers: int
    processes: int
    poll_interval: float


# -- a worker process ----------------------------------------------------------------------------


def _registry() -> Registry:
    registry = Registry()

    @registry.task("noop")
    async def noop(_ctx: TaskContext) -> dict[str, float]:
        return {"at": time.monotonic()}  # CLOCK_MONOTONIC: one clock for every process

    return registry


async def _serve(config: dict[str, Any]) -> None:
    """Runs config["workers"] Worker instances until SIGTERM, then stops them gracefully."""
    tune_gc()
    settings = WorkerSettings(
        dsn=config["dsn"], queues=[config["queue"]], app="bench", metrics_port=0,
        log_level="WARNING", db_pool_mode=config["pool_mode"],
        listen=config["pool_mode"] == "session", poll_interval=config["poll_interval"])
    registry = _registry()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # each stopping worker waits for its beat's thread in the default executor
    loop.set_default_executor(ThreadPoolExecutor(config["workers"]))
    starting = asyncio.Semaphore(STARTING_AT_ONCE)
    restarts = 0

    async def one(n: int) -> None:
        """A replica: restarted after a failure, as its pod would be."""
        nonlocal restarts
        while not stop.is_set():
            try:
                async with starting:
                    pool = await worker_pool(settings.dsn.get_secret_value(),
                                             settings.db_deadline, settings.db_pool_mode)
                try:
                    worker = Worker(pool, registry, settings, f"bench-{config['process']}-{n}")
                    await worker.run(stop)
                finally:
                    await close_pool(pool, settings.db_deadline)
            except TaskqError as error:
                restarts += 1
                print(f"worker {config['process']}-{n} restarts: {error}", file=sys.stderr)
                await asyncio.sleep(RESTART_DELAY)
            else:
                return

    await asyncio.gather(*(one(n) for n in range(config["workers"])))
    print(json.dumps({"restarts": restarts}))


# -- the benchmark ------------------------------------------------------------------------------


async def _sample_connections(observer: asyncpg.Connection, seen: list[int], mine: int) -> None:
    """Backends of the benchmark's database but `mine` (the reader's)."""
    while True:
        seen.append(await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2",
            DATABASE, mine))
        await asyncio.sleep(0.05)


async def _wait_for(reader: asyncpg.Connection, query: str, *args: Any, want: int,
                    limit: float) -> None:
    deadline = time.monotonic() + limit
    while (got := await reader.fetchval(query, *args)) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {limit}s: {got} of {want} ({query})")
        await asyncio.sleep(0.2)


async def _calls_by_kind(reader: asyncpg.Connection) -> dict[str, int]:
    """Calls per kind of statement since pg_stat_statements was last reset, in the benchmark's
    database: named by the taskq function a statement calls, else by its first words."""
    rows = await reader.fetch(
        "SELECT coalesce(substring(s.query FROM 'taskq\\.([a-z_]+)\\('), left(s.query, 40))"
        " AS kind, sum(s.calls)::bigint AS calls FROM pg_stat_statements s"
        " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 GROUP BY 1", DATABASE)
    return {row["kind"]: row["calls"] for row in rows}


async def _statements(reader: asyncpg.Connection) -> int:
    """Transactions the benchmark's database has ended: one per statement outside a
    transaction, as all of an idle worker's are (on the reader: the observer's connection is
    the sampler's, and two calls at once on one connection fail)."""
    await reader.execute("SELECT pg_stat_clear_snapshot()")
    ended: int = await reader.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", DATABASE)
    return ended


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


async def bench(
    run: Run, observer: asyncpg.Connection, reader: asyncpg.Connection
) -> dict[str, Any]:
    """`observer` samples pg_stat_activity from another database, `reader` reads the tasks."""
    queue = f"bench/{run.name}"
    async with await connect(run.dsn, pool_mode=run.pool_mode, max_size=4) as client:
        await client.drop_queue(queue)
        info = await client.ensure_queue(queue)
        seen: list[int] = []
        sampler = asyncio.create_task(
            _sample_connections(observer, seen, reader.get_server_pid()))
        shares = [run.workers // run.processes + (p < run.workers % run.processes)
                  for p in range(run.processes)]
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--serve", json.dumps({
                    "dsn": run.dsn, "queue": queue, "pool_mode": run.pool_mode,
                    "poll_interval": run.poll_interval, "workers": share, "process": p}),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
            for p, share in enumerate(shares)]
        started = time.monotonic()
        try:
            await _wait_for(reader, "SELECT count(*) FROM taskq.workers", want=run.workers,
                            limit=600)
            start_s = time.monotonic() - started
            before = await _statements(reader)
            await reader.execute("SELECT pg_stat_statements_reset()")
            await asyncio.sleep(IDLE_SECONDS)
            idle_statements = (await _statements(reader) - before) / IDLE_SECONDS
            idle_kinds = {
                kind: round(calls / IDLE_SECONDS / run.workers, 3)
                for kind, calls in sorted((await _calls_by_kind(reader)).items(),
                                          key=lambda item: -item[1])
                if calls / IDLE_SECONDS / run.workers >= 0.001}
            idle_connections = max(seen)

            for n in range(PICKUP_N):
                await client.enqueue(queue, "noop", {"sent": time.monotonic(), "n": n})
                await asyncio.sleep(PICKUP_GAP)
            await _wait_for(reader, "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND "
                            "state = 'succeeded'", info.id, want=PICKUP_N, limit=600)
            latencies = [1000 * (row["at"] - row["sent"]) for row in await reader.fetch(
                "SELECT (payload->>'sent')::float8 AS sent, (result->>'at')::float8 AS at "
                "FROM taskq.tasks WHERE queue_id = $1", info.id)]

            await client.enqueue_many(queue, [TaskRequest("noop") for _ in range(DRAIN_N)])
            await _wait_for(reader, "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND "
                            "state = 'succeeded'", info.id, want=PICKUP_N + DRAIN_N, limit=900)
            drained = await reader.fetchrow(
                "SELECT min((result->>'at')::float8) AS first,"
                " max((result->>'at')::float8) AS last,"
                " count(DISTINCT worker_id) AS ran_on FROM taskq.tasks"
                " WHERE queue_id = $1 AND NOT payload ? 'sent'", info.id)
            assert drained is not None
            lost = await reader.fetchval(
                "SELECT count(*) FROM taskq.attempts WHERE queue_id = $1 AND outcome = 'lost'",
                info.id)
        finally:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            reports = [await process.communicate() for process in processes]
            statuses = [process.returncode for process in processes]
            sampler.cancel()
        await client.drop_queue(queue)
    return {
        "workers": run.workers,
        "processes": run.processes,
        "pool_mode": run.pool_mode,
        "listen": run.pool_mode == "session",
        "poll_interval_s": run.poll_interval,
        "start_s": round(start_s, 1),
        "server_connections_max": max(seen),
        "server_connections_max_idle": idle_connections,
        "idle_statements_per_s": round(idle_statements),
        "idle_calls_per_worker_s": idle_kinds,
        "pickup_p50_ms": round(statistics.median(latencies), 1),
        "pickup_p99_ms": round(_percentile(latencies, 0.99), 1),
        "throughput_tasks_per_s": round(DRAIN_N / (drained["last"] - drained["first"])),
        "throughput_ran_on_workers": drained["ran_on"],
        "attempts_lost": lost,  # tasks rescued from workers whose beats came late: run twice
        "worker_restarts": sum(json.loads(out)["restarts"] for out, _ in reports if out),
        "exit_statuses": sorted(set(statuses)),
    }


async def main() -> dict[str, Any]:
    server = LocalPostgres.temporary(
        durable=True, settings={"shared_preload_libraries": "pg_stat_statements"})
    server.start()
    bouncer = LocalPgBouncer.temporary(server.port, pool_size=POOL_SIZE)
    # per worker: a pool of 2-4 and its beat, and connections sending cancel requests
    bouncer.max_clients = 10 * WORKERS + 100
    try:
        bouncer.start()
        admin = await asyncpg.connect(server.dsn)
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        # the server ends a statement its worker gave up on, as docs/worker.md has the workers'
        # role do behind PgBouncer (direct workers set it per session): else a backend waiting
        # for a lock outlives its client, and PgBouncer opens another
        await admin.execute(
            f"ALTER ROLE postgres IN DATABASE {DATABASE} SET statement_timeout = '10s'")
        direct = server.dsn.rsplit("/", 1)[0] + "/" + DATABASE
        extension = await asyncpg.connect(direct)
        await extension.execute("CREATE EXTENSION pg_stat_statements")
        await extension.close()
        async with await connect(direct) as client:
            await client.migrate()
        runs = [
            Run("pooled", bouncer.dsn(DATABASE), "transaction", WORKERS, PROCESSES, POLL),
            Run("direct", direct, "session", DIRECT_WORKERS, 1, 1.0),
        ]
        reader = await asyncpg.connect(direct)
        results = {run.name: await bench(run, admin, reader) for run in runs}
        await reader.close()
        await admin.close()
    finally:
        bouncer.destroy()
        server.destroy()
    return {
        **results,
        "settings": {
            "pgbouncer_pool_size": POOL_SIZE,
            "pickup_samples": PICKUP_N,
            "pickup_gap_s": PICKUP_GAP,
            "drain_tasks": DRAIN_N,
            "worker_concurrency": 10,
            "claim_batch": 100,
            "postgres": "local PostgreSQL, durable (fsync on), max_connections 200, "
            "pg_stat_statements",
            "pgbouncer": "Debian's 1.18, pool_mode transaction",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(_serve(json.loads(sys.argv[2])))
    else:
        print(json.dumps(asyncio.run(main())))
