"""Claim latency under backend kills (issue 18, item 1); prints one JSON object.

    make bench-kills                      # starts its own durable PostgreSQL (fsync on)
    TASKQ_KILLS_RATE=600 TASKQ_KILLS_SECONDS=40 make bench-kills
    TASKQ_BENCH_DSN=postgresql://... make bench-kills   # a database no other worker uses

One in-process Worker (as `taskq worker` makes it: its pool from taskq.worker.main.worker_pool,
concurrency 32, other settings at their defaults, a no-op handler) drains a queue that a
producer fills at a fixed rate (TASKQ_KILLS_RATE tasks/s, default 300, one
Client.enqueue_many every 20 ms). After TASKQ_KILLS_WARMUP seconds (default 5, not measured),
three windows of TASKQ_KILLS_SECONDS each (default 30):
  baseline  the load alone
  kills     the load, and every TASKQ_KILLS_EVERY seconds (default 0.5) pg_terminate_backend
            of every backend of the worker: application_name 'taskq worker' in the benchmark's
            database (its pool, its LISTEN connection, its beat thread's connection). The
            producer's and the benchmark's own connections are not touched.
  after     the load alone again
then the producer stops, the worker runs what is left, stops gracefully, and the database is
checked.

Per window (each claim and handler run counted in the window it started in):
  claims, claim_p50_ms/p99_ms/max_ms
                      every call of the worker's claim (the store call, timed by
                      bench/timing.py: connection acquisition, deadline and query), succeeded
                      or failed: the figure the ratios compare
  claims_ok, claims_failed
                      the same split: count, p50/p99/max ms; failed ones by exception class
  fresh_connection_claims
                      succeeded claims that were the first call on a new backend: the
                      reconnection is in their acquire_p50/p99_ms
  reused_connection_claims
                      the other succeeded claims
  claim_with_retries  per successful claim, from its first failed try (if any) to its success:
                      failed calls + backoff + reconnection; `retried` counts those that
                      needed more than one try, `failed_tries`, the calls that failed (claims,
                      and the give-backs of what a failed claim may have taken), `calls_ms` the
                      time those retries spent in calls, `waiting_ms` between calls (backoff)
  completed           handler runs; completed_per_s
  pickup_p50/p99/max_ms
                      task created_at (the enqueue's transaction start, database clock) to
                      handler start
  outages             the worker's "works again" log lines (taskq.backoff.Outage) per
                      operation: outages, failed tries, longest seconds
  warnings            the worker's WARNING lines, counted per message
Ratios (`claim_p99_ratio`): kills/baseline and after/baseline of claim_p99_ms (every call),
of the succeeded calls' p99, and of claim_with_retries p99. Issue 18's targets: ≤ 10 during
the kills, ≤ 2 after.

Correctness, at the end: tasks by state (all should be `succeeded`), attempts by outcome
(`lost`: a lease expired; `released`: given back, e.g. after a claim whose answer was lost),
handler runs of tasks run more than once, tasks never run, the worker's ERROR log lines and
whether it stopped cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import ClaimTiming, TimedStore, percentile
from devenv.postgres import bench_database

from taskq.backoff import FIRST_DELAY, MAX_DELAY
from taskq.client import Client, connect
from taskq.models import TaskRequest
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.main import tune_gc, worker_pool
from taskq.worker.registry import Registry
from taskq.worker.session import APPLICATION_NAME
from taskq.worker.settings import WorkerSettings

RATE = float(os.environ.get("TASKQ_KILLS_RATE", "300"))
SECONDS = float(os.environ.get("TASKQ_KILLS_SECONDS", "30"))
KILL_EVERY = float(os.environ.get("TASKQ_KILLS_EVERY", "0.5"))
WARMUP = float(os.environ.get("TASKQ_KILLS_WARMUP", "5"))
CONCURRENCY = 32
TICK = 0.02  # the producer's batch interval
DRAIN_TIMEOUT = 120.0
QUEUE = "bench/kills"
WINDOWS = ("baseline", "kills", "after")
TARGETS = {"kills": 10.0, "after": 2.0}  # claim p99 / baseline p99, issue 18 item 1

KILL = """
SELECT count(*) FROM (
    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()
) k
"""

POSTGRES_SETTINGS = [
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "max_connections",
    "autovacuum",
]


@dataclass
class Run:
    """What the producer, the handler, the store, the killer and the log saw."""

    clock_offset: float = 0.0  # database clock minus ours, seconds
    enqueued: list[tuple[float, int]] = field(default_factory=list)  # (when, how many)
    handled: list[tuple[float, float]] = field(default_factory=list)  # (when, pickup ms)
    runs: collections.Counter[int] = field(default_factory=collections.Counter)  # per task id
    claims: list[ClaimTiming] = field(default_factory=list)
    kills: list[tuple[float, int]] = field(default_factory=list)  # (when, backends ended)
    log: list[tuple[float, logging.LogRecord]] = field(default_factory=list)
    total: int = 0  # tasks enqueued so far
    produced: bool = False  # the producer has finished: `total` is final
    all_run: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder(logging.Handler):
    """Keeps the worker's log records (the beat thread's too) with the time they were made."""

    def __init__(self, run: Run) -> None:
        super().__init__(logging.INFO)
        self._run = run

    def emit(self, record: logging.LogRecord) -> None:
        self._run.log.append((time.perf_counter(), record))
        if record.levelno >= logging.ERROR:
            print(f"worker: {self.format(record)}", file=sys.stderr)


def _settings(dsn: str) -> WorkerSettings:
    values: dict[str, Any] = {
        "dsn": dsn,
        "queues": [QUEUE],
        "app": "bench",
        "concurrency": CONCURRENCY,
        "metrics_port": 0,
        "log_level": "INFO",
    }
    return WorkerSettings(**values)


# -- the load and the kills ------------------------------------------------------------------


async def _produce(dsn: str, started: float, until: float, run: Run) -> None:
    """Enqueue RATE tasks a second from `started` to `until` (perf_counter); a batch that
    comes late carries what fell due meanwhile, so the rate holds on average."""
    async with await connect(dsn, min_size=1, max_size=1) as client:
        tick = 0
        while True:
            now = time.perf_counter()
            due = round(RATE * (min(now, until) - started)) - run.total
            if due > 0:
                numbers = range(run.total, run.total + due)
                await client.enqueue_many(QUEUE, [TaskRequest("noop", {"n": n}) for n in numbers])
                run.total += due
                run.enqueued.append((now, due))
            if now >= until:
                return
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * TICK - time.perf_counter()))


async def _kill(pool: asyncpg.Pool, start: float, until: float, run: Run) -> None:
    """Every KILL_EVERY seconds from `start` to `until`, end every backend of the worker."""
    n = 0
    while (at := start + n * KILL_EVERY) < until:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        ended = int(await pool.fetchval(KILL, APPLICATION_NAME))
        run.kills.append((time.perf_counter(), ended))
        n += 1


async def _clock_offset(pool: asyncpg.Pool) -> float:
    before = time.time()
    database = float(await pool.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
    after = time.time()
    return database - (before + after) / 2


# -- figures ---------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "max_ms": round(ordered[-1], 2),
    }


@dataclass
class Retried:
    """A successful claim and the failed tries before it."""

    started: float  # its first try
    span_ms: float  # first try to success
    failed_tries: int = 0
    calls_ms: float = 0.0  # the tries' own time (failed and succeeded)


def _retried_claims(timings: list[ClaimTiming]) -> list[Retried]:
    """Each successful claim with the failures since the previous one (claims are made one
    at a time on the single queue; a give-back of orphans precedes a claim after a failure)."""
    claims: list[Retried] = []
    first: ClaimTiming | None = None
    failed, calls_ms = 0, 0.0
    for t in sorted(timings, key=lambda t: t.started):
        if not t.ok:
            first = first or t
            failed += 1
        calls_ms += t.ms
        if t.kind == "claim" and t.ok:
            begin = first or t
            span_ms = (t.ended - begin.started) * 1000
            claims.append(Retried(begin.started, span_ms, failed, calls_ms))
            first, failed, calls_ms = None, 0, 0.0
        elif first is None:
            calls_ms = 0.0  # a give-back that succeeded before any failure: not a retry
    return claims


def _outages(records: list[logging.LogRecord]) -> dict[str, dict[str, Any]]:
    """The recoveries taskq.backoff.Outage logged, per operation."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        if "works again after" not in str(record.msg) or not isinstance(record.args, tuple):
            continue
        operation, tries, seconds = record.args
        entry = found.setdefault(str(operation), {"outages": 0, "failed_tries": 0, "longest_s": 0})
        entry["outages"] += 1
        entry["failed_tries"] += int(str(tries))
        entry["longest_s"] = max(entry["longest_s"], round(float(str(seconds)), 3))
    return found


def _warnings(records: list[logging.LogRecord]) -> dict[str, int]:
    """WARNING lines per message template (with the operation, when it comes first)."""
    counts: collections.Counter[str] = collections.Counter()
    for record in records:
        if record.levelno != logging.WARNING:
            continue
        template = str(record.msg)
        if template.startswith("%s") and isinstance(record.args, tuple) and record.args:
            template = template.replace("%s", str(record.args[0]), 1)
        counts[template] += 1
    return dict(counts)


def _window(run: Run, name: str, start: float, end: float) -> dict[str, Any]:
    def inside(at: float) -> bool:
        return start <= at < end

    timings = [t for t in run.claims if inside(t.started)]
    claims = [t for t in timings if t.kind == "claim"]
    ok = [t for t in claims if t.ok]
    failed = [t for t in claims if not t.ok]
    fresh = [t for t in ok if t.fresh]
    retried = [r for r in _retried_claims(run.claims) if inside(r.started)]
    tries = [r for r in retried if r.failed_tries]
    every = _stats([t.ms for t in claims])
    completed = sum(1 for at, _ in run.handled if inside(at))
    pickups = _stats([ms for at, ms in run.handled if inside(at)])
    kills = [ended for at, ended in run.kills if inside(at)]
    result: dict[str, Any] = {
        "seconds": round(end - start, 1),
        "enqueued": sum(n for at, n in run.enqueued if inside(at)),
        "completed": completed,
        "completed_per_s": round(completed / (end - start)),
        "claims": every["n"],
        "claim_p50_ms": every.get("p50_ms"),
        "claim_p99_ms": every.get("p99_ms"),
        "claim_max_ms": every.get("max_ms"),
        "claims_ok": _stats([t.ms for t in ok]),
        "claims_failed": {
            **_stats([t.ms for t in failed]),
            "errors": dict(collections.Counter(t.error for t in failed)),
        },
        "fresh_connection_claims": {
            **_stats([t.ms for t in fresh]),
            "acquire_p50_ms": round(statistics.median([t.acquire_ms or 0 for t in fresh]), 2)
            if fresh
            else None,
            "acquire_p99_ms": round(percentile(sorted(t.acquire_ms or 0 for t in fresh), 0.99), 2)
            if fresh
            else None,
        },
        "reused_connection_claims": _stats([t.ms for t in ok if not t.fresh]),
        "claim_with_retries": {
            **_stats([r.span_ms for r in retried]),
            "retried": len(tries),
            "failed_tries": sum(r.failed_tries for r in tries),
            "calls_ms": round(sum(r.calls_ms for r in tries), 1),
            "waiting_ms": round(sum(r.span_ms - r.calls_ms for r in tries), 1),
        },
        "give_backs": sum(1 for t in timings if t.kind == "release_orphans"),
        "pickup_p50_ms": pickups.get("p50_ms"),
        "pickup_p99_ms": pickups.get("p99_ms"),
        "pickup_max_ms": pickups.get("max_ms"),
        "outages": _outages([r for at, r in run.log if inside(at)]),
        "warnings": _warnings([r for at, r in run.log if inside(at)]),
    }
    if name == "kills":
        result["kills"] = len(kills)
        result["backends_terminated"] = sum(kills)
    return result


def _ratio(value: Any, base: Any) -> float | None:
    return round(value / base, 2) if value is not None and base else None


def _ratios(windows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def p99(window: dict[str, Any], figure: str) -> Any:
        return window[figure] if figure == "claim_p99_ms" else window[figure].get("p99_ms")

    base = windows["baseline"]
    return {
        figure: {
            f"{name}/baseline": _ratio(p99(windows[name], figure), p99(base, figure))
            for name in ("kills", "after")
        }
        for figure in ("claim_p99_ms", "claims_ok", "claim_with_retries")
    }


# -- the run ---------------------------------------------------------------------------------


async def _check(
    pool: asyncpg.Pool, queue_id: int, run: Run, stop_error: str | None
) -> dict[str, Any]:
    states = await pool.fetch(
        "SELECT state, count(*) AS n FROM taskq.tasks WHERE queue_id = $1 GROUP BY state",
        queue_id,
    )
    attempts = await pool.fetch(
        "SELECT outcome, count(*) AS n FROM taskq.attempts WHERE queue_id = $1 GROUP BY outcome",
        queue_id,
    )
    by_state = {row["state"]: int(row["n"]) for row in states}
    by_outcome = {row["outcome"]: int(row["n"]) for row in attempts}
    errors = [r for _, r in run.log if r.levelno >= logging.ERROR]
    return {
        "tasks": run.total,
        "tasks_by_state": by_state,
        "attempts_by_outcome": by_outcome,
        "lost_attempts": by_outcome.get("lost", 0),
        "left_running_or_ready": sum(by_state.get(s, 0) for s in ("ready", "running")),
        "handler_runs": sum(run.runs.values()),
        "tasks_run_more_than_once": sum(1 for n in run.runs.values() if n > 1),
        "tasks_never_run": run.total - len(run.runs),
        "exactly_once": by_state == {"succeeded": run.total}
        and len(run.runs) == run.total
        and all(n == 1 for n in run.runs.values()),
        "worker_errors_logged": len(errors),
        "worker_error_messages": sorted({r.getMessage()[:200] for r in errors})[:5],
        "worker_stopped_cleanly": stop_error is None,
        "worker_stop_error": stop_error,
    }


async def _measure(client: Client, dsn: str) -> dict[str, Any]:
    await client.drop_queue(QUEUE)
    queue_id = (await client.ensure_queue(QUEUE)).id
    run = Run()
    registry = Registry()

    @registry.task("noop")
    async def noop(ctx: TaskContext) -> None:
        now = time.time()
        run.handled.append(
            (time.perf_counter(), (now + run.clock_offset - ctx.created_at.timestamp()) * 1000)
        )
        run.runs[ctx.task_id] += 1
        if run.produced and len(run.runs) >= run.total:
            run.all_run.set()

    recorder = Recorder(run)
    taskq_log = logging.getLogger("taskq")
    taskq_log.addHandler(recorder)
    taskq_log.setLevel(logging.INFO)
    taskq_log.propagate = False

    settings = _settings(dsn)
    worker_db = await worker_pool(dsn, settings.db_deadline)  # as `taskq worker` makes it
    store = TimedStore(worker_db, settings.db_deadline, run.claims)
    worker = Worker(worker_db, registry, settings, "bench-kills", db=store)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    stop_error: str | None = None
    try:
        run.clock_offset = await _clock_offset(client.pool)
        await asyncio.sleep(0.5)  # let it start listening
        started = time.perf_counter()
        bounds = [started + WARMUP + n * SECONDS for n in range(len(WINDOWS) + 1)]
        await asyncio.gather(
            _produce(dsn, started, bounds[-1], run),
            _kill(client.pool, bounds[1], bounds[2], run),
        )
        run.produced = True
        if len(run.runs) >= run.total:
            run.all_run.set()
        try:
            await asyncio.wait_for(run.all_run.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            print(
                f"the worker ran {len(run.runs)} of {run.total} tasks within "
                f"{DRAIN_TIMEOUT:.0f} s of the producer's end",
                file=sys.stderr,
            )
        stop.set()
        try:
            await running  # a graceful stop records the last outcomes
        except Exception as error:
            stop_error = repr(error)
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
        await worker_db.close()
        taskq_log.removeHandler(recorder)

    windows = {
        name: _window(run, name, bounds[n], bounds[n + 1]) for n, name in enumerate(WINDOWS)
    }
    correctness = await _check(client.pool, queue_id, run, stop_error)
    await client.drop_queue(QUEUE)
    return {
        **windows,
        "claim_p99_ratio": _ratios(windows),
        "targets": {f"{name}/baseline": limit for name, limit in TARGETS.items()},
        "correctness": correctness,
        "worker": {
            "concurrency": settings.concurrency,
            "batch_size": settings.batch_size,
            "lease_seconds": settings.lease_seconds,
            "db_deadline_s": settings.db_deadline,
            "poll_interval_s": settings.poll_interval,
            "ack_interval_s": settings.ack_interval,
            "backoff_first_s": FIRST_DELAY,
            "backoff_max_s": MAX_DELAY,
        },
    }


async def _server_info(pool: asyncpg.Pool) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1)",
        POSTGRES_SETTINGS,
    )
    return {
        "postgres_version": await pool.fetchval("SHOW server_version"),
        "postgres_settings": {row["name"]: row["value"] for row in rows},
    }


async def run(dsn: str, description: str) -> dict[str, Any]:
    load_before = os.getloadavg()
    async with await connect(dsn, min_size=2, max_size=4) as client:
        await client.migrate()
        result = await _measure(client, dsn)
        info = await _server_info(client.pool)
    return {
        **result,
        "settings": {
            "rate_per_s": RATE,
            "warmup_s": WARMUP,
            "window_s": SECONDS,
            "kill_every_s": KILL_EVERY,
            "producer_batch_interval_s": TICK,
            "postgres": description,
            **info,
            "cpus": os.cpu_count(),
            "load_average_1m_before_after": [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ],
            "python": platform.python_version(),
        },
    }


def main() -> None:
    tune_gc()  # the worker runs as in `taskq worker`, which does this once its app is loaded
    with bench_database() as (dsn, label, _server):
        result = asyncio.run(run(dsn, label))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
