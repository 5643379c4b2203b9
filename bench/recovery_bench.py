"""Recovery benchmark: prints one JSON object.

    make bench-recovery               # starts its own PostgreSQL

Phases:
  dead_worker   a `taskq worker` process holding 20 ten-second tasks is SIGKILLed beside a live
                worker, KILLS times; per task, the seconds from the kill (database clock) to
                its next attempt's claim: the time a dead worker's tasks wait (lease: 30 s)
  beat_cost     WORKERS simulated worker processes beating once a second for BEAT_SECONDS
                (taskq.worker_beat through a pool, as each worker's beat thread calls it):
                achieved beats/s, call latency, and PostgreSQL's CPU per second of beating

Claim latency while the worker's backends are killed is measured by kills_bench.py
(`make bench-kills`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from devenv.postgres import bench_database

from taskq.client import Client, connect
from taskq.models import TaskRequest
from taskq.store import execution
from taskq.worker.beat import DEAD_AFTER, RESCUE_EVERY

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KILLS = int(os.environ.get("TASKQ_BENCH_KILLS", "5"))
HELD = 20
WORKERS = int(os.environ.get("TASKQ_BENCH_WORKERS", "1000"))
BEAT_SECONDS = float(os.environ.get("TASKQ_BENCH_BEAT_SECONDS", "20"))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _worker(dsn: str, queue: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{BENCH}",
        "TASKQ_DSN": dsn,
        "TASKQ_QUEUES": queue,
        "TASKQ_APP": "sleepers",
        "TASKQ_CONCURRENCY": str(HELD),
        "TASKQ_BATCH_SIZE": str(HELD),
        "TASKQ_METRICS_PORT": "0",
        "TASKQ_LOG_LEVEL": "ERROR",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "taskq.cli.main", "worker"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def _wait(conn: asyncpg.Connection, sql: str, *args: Any, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not await conn.fetchval(sql, *args):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for: {sql}")
        await asyncio.sleep(0.05)


async def _one_death(
    client: Client, conn: asyncpg.Connection, dsn: str, queue: str
) -> list[float]:
    """The victim takes every task; a survivor starts and beats; the victim is killed."""
    victim = _worker(dsn, queue)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        ids = [r.id for r in await client.enqueue_many(
            queue, [TaskRequest("sleep", {"seconds": 10}) for _ in range(HELD)])]
        await _wait(conn, "SELECT count(*) = $2 FROM taskq.tasks WHERE id = ANY($1) "
                    "AND state = 'running'", ids, len(ids))
        survivor = _worker(dsn, queue)
        await _wait(conn, "SELECT count(*) = 1 FROM taskq.workers WHERE worker_id LIKE $1",
                    f"%:{survivor.pid}:%")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = await conn.fetchval("SELECT clock_timestamp()")
        await _wait(conn, "SELECT count(*) = $2 FROM taskq.tasks WHERE id = ANY($1) "
                    "AND total_attempts = 2 AND state IN ('running', 'succeeded')",
                    ids, len(ids))
        rows = await conn.fetch(
            "SELECT extract(epoch FROM started_at - $2)::float8 AS s FROM taskq.tasks "
            "WHERE id = ANY($1)", ids, killed_at)
        await _wait(conn, "SELECT count(*) = 0 FROM taskq.tasks WHERE id = ANY($1) "
                    "AND state <> 'succeeded'", ids)
        return [r["s"] for r in rows]
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)


async def bench_dead_worker(dsn: str) -> dict[str, Any]:
    waits: list[float] = []
    async with await connect(dsn) as client:
        queue = (await client.ensure_queue("bench/recovery")).full_name
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(KILLS):
                waits += await _one_death(client, conn, dsn, queue)
        finally:
            await conn.close()
    return {
        "kills": KILLS,
        "tasks_rescued": len(waits),
        "offered_again_p50_s": round(statistics.median(waits), 2),
        "offered_again_p99_s": round(_percentile(waits, 0.99), 2),
        "offered_again_max_s": round(max(waits), 2),
        "lease_s": 30,
        "dead_after_s": DEAD_AFTER,
        "rescue_every_s": RESCUE_EVERY,
    }


def _postgres_cpu_seconds(datadir: Path) -> float:
    """utime + stime of the postmaster's children (the server's processes)."""
    postmaster = (datadir / "postmaster.pid").read_text().split()[0]
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == postmaster or entry.name == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def bench_beat_cost(dsn: str, datadir: Path | None) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    assert pool is not None
    latencies: list[float] = []
    ids = [f"bench-beat-{n}" for n in range(WORKERS)]

    async def one_worker(worker_id: str, offset: float, until: float) -> None:
        await asyncio.sleep(offset)
        while time.monotonic() < until:
            started = time.perf_counter()
            await execution.worker_beat(pool, worker_id, DEAD_AFTER, RESCUE_EVERY, [1])
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))

    cpu_before = _postgres_cpu_seconds(datadir) if datadir else None
    started = time.monotonic()
    until = started + BEAT_SECONDS
    await asyncio.gather(*(one_worker(w, n / WORKERS, until) for n, w in enumerate(ids)))
    elapsed = time.monotonic() - started
    cpu = None
    if datadir is not None and cpu_before is not None:
        cpu = _postgres_cpu_seconds(datadir) - cpu_before
    await pool.execute("DELETE FROM taskq.workers WHERE worker_id = ANY($1)", ids)
    await pool.close()
    return {
        "workers": WORKERS,
        "beats_per_s": round(len(latencies) / elapsed),
        "beat_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "beat_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "postgres_cpu_share": None if cpu is None else round(cpu / elapsed, 3),
    }


async def run(dsn: str, server: str, datadir: Path | None) -> dict[str, Any]:
    async with await connect(dsn) as client:
        await client.migrate()
    return {
        "dead_worker": await bench_dead_worker(dsn),
        "beat_cost": await bench_beat_cost(dsn, datadir),
        "settings": {"postgres": server, "cpus": os.cpu_count(),
                     "python": platform.python_version()},
    }


def main() -> None:
    with bench_database() as (dsn, label, server):
        result = asyncio.run(run(dsn, label, server.datadir if server else None))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
