"""Database footprint benchmark: WAL and table bytes per completed task; prints one JSON object.

    make bench-footprint                  # starts its own durable PostgreSQL (fsync on)
    TASKQ_FOOTPRINT_RATE=3000 TASKQ_FOOTPRINT_SECONDS=30 TASKQ_FOOTPRINT_HOLD_SECONDS=30 \
        make bench-footprint
    TASKQ_BENCH_DSN=postgresql://... make bench-footprint
    TASKQ_FOOTPRINT_DETAIL=1 make bench-footprint   # adds where the bytes go, per relation
    TASKQ_FOOTPRINT_RETENTION=0 make bench-footprint  # the queues keep no succeeded task

A producer enqueues at a fixed rate (TASKQ_FOOTPRINT_RATE tasks/s, default 800) in small
batches (one Client.enqueue_many every 20 ms, each its own durable commit) while one in-process
Worker (concurrency 32, other settings at their defaults; no-op handler) drains the queue.
Phases, each on a fresh queue (dropped afterwards) with default settings, but for the retention
of succeeded tasks when TASKQ_FOOTPRINT_RETENTION (seconds) is set:
  steady   TASKQ_FOOTPRINT_SECONDS (default 60) of that load
  hold     the same for TASKQ_FOOTPRINT_HOLD_SECONDS (default 100) while another session holds
           a REPEATABLE READ snapshot open and idle, so neither vacuum nor page pruning can
           remove any row version made during the phase

Per phase:
  completed_per_s        tasks completed per second, first enqueue to last handler start
  wal_bytes_per_task     pg_current_wal_lsn() before the producer starts and after the worker
                         recorded the last outcome (the whole server's WAL, autovacuum's too)
  table_bytes_per_task   growth of every relation in schema taskq (heaps, indexes, TOAST, free
                         space and visibility maps of every partition) per completed task
  dead_tuples_peak       highest sum of n_dead_tup over schema taskq, sampled every 0.5 s
  dead_tuples_per_task   that peak per completed task
  pickup_p50_ms/p99_ms   task created_at (the enqueue's transaction start, database clock)
                         to handler start: the enqueue's durable commit is included
  claim_p50_ms/p99_ms    the worker's claim calls as its store makes them (connection
                         acquire, deadline and the query), whether or not they found tasks

Autovacuum runs as the server is configured. Each phase starts right after a CHECKPOINT (when
the role may run one), so a phase shorter than checkpoint_timeout writes full-page images only
if its WAL volume forces a checkpoint: WAL figures of short and long phases stay comparable,
but a server checkpointing every few minutes writes more WAL per task than measured here.

TASKQ_FOOTPRINT_DETAIL=1 adds per phase: each relation's growth, each table's insert, update,
HOT-update and delete counts (row versions per task), the average stored row, WAL records and
full-page images, and, on the benchmark's own server (or where the extensions are installed),
WAL by record type (pg_walinspect) and live/dead/free bytes of the tasks partition and the
density of its indexes (pgstattuple).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import ClaimTiming, TimedStore, percentile
from devenv.postgres import bench_database

from taskq.client import Client, connect
from taskq.models import QueueSettings, TaskRequest
from taskq.worker.context import TaskContext
from taskq.worker.loop import Worker
from taskq.worker.main import tune_gc, worker_pool
from taskq.worker.registry import Registry
from taskq.worker.settings import WorkerSettings

RATE = float(os.environ.get("TASKQ_FOOTPRINT_RATE", "800"))
SECONDS = float(os.environ.get("TASKQ_FOOTPRINT_SECONDS", "60"))
HOLD_SECONDS = float(os.environ.get("TASKQ_FOOTPRINT_HOLD_SECONDS", "100"))
DETAIL = os.environ.get("TASKQ_FOOTPRINT_DETAIL", "") not in ("", "0")
RETENTION = os.environ.get("TASKQ_FOOTPRINT_RETENTION")  # succeeded tasks' retention, seconds
CONCURRENCY = 32
TICK = 0.02  # the producer's batch interval: 16 tasks a batch at 800/s, 60 at 3000/s
SAMPLE_EVERY = 0.5
# Other backends publish their statistics at most once a second while busy, within a second
# once idle, and when they exit. (pg_stat_force_next_flush() flushes only the calling
# session's own counters, so it cannot hurry the worker's or the producer's.)
STATS_SETTLE = 1.5
DRAIN_TIMEOUT = 120.0

POSTGRES_SETTINGS = [
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_compression",
    "wal_level",
    "checkpoint_timeout",
    "max_wal_size",
    "autovacuum",
    "autovacuum_naptime",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_vacuum_cost_delay",
    "autovacuum_vacuum_cost_limit",
]

# Every relation that holds bytes in schema taskq, each counted once: pg_total_relation_size
# of a table is its heap, free space and visibility maps, TOAST table (and TOAST index, which
# live in pg_toast) and its indexes. Leaf partitions are plain tables ('r') in schema taskq;
# partitioned parents ('p') and their partitioned indexes hold no storage (size 0). Indexes
# are not added on their own: their table's total already counts them.
TOTAL_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'taskq' AND c.relkind IN ('r', 'p')
"""

# The same bytes, split: per table its heap, maps and TOAST; per index of a partition, the
# partitioned index it belongs to (tasks_claim_order_idx rather than a generated name).
SIZE_BREAKDOWN = """
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind, c.reltoastrelid
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'taskq' AND c.relkind IN ('r', 'i')
)
SELECT r.relname AS relation, 'heap' AS part, pg_relation_size(r.oid, 'main') AS bytes
  FROM rel r WHERE r.relkind = 'r'
UNION ALL
SELECT r.relname, 'fsm+vm', pg_relation_size(r.oid, 'fsm') + pg_relation_size(r.oid, 'vm')
  FROM rel r WHERE r.relkind = 'r'
UNION ALL
SELECT r.relname, 'toast', pg_total_relation_size(r.reltoastrelid)
  FROM rel r WHERE r.relkind = 'r' AND r.reltoastrelid <> 0
UNION ALL
SELECT t.relname, 'index ' || coalesce(p.relname, r.relname), pg_total_relation_size(r.oid)
  FROM rel r
  JOIN pg_index i ON i.indexrelid = r.oid
  JOIN pg_class t ON t.oid = i.indrelid
  LEFT JOIN pg_inherits h ON h.inhrelid = r.oid
  LEFT JOIN pg_class p ON p.oid = h.inhparent
 WHERE r.relkind = 'i'
"""

DEAD_TUPLES = """
SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = 'taskq'
"""

TABLE_STATS = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup,
       autovacuum_count, autoanalyze_count
  FROM pg_stat_user_tables WHERE schemaname = 'taskq'
"""

COUNTERS = (
    "n_tup_ins",
    "n_tup_upd",
    "n_tup_hot_upd",
    "n_tup_del",
    "autovacuum_count",
    "autoanalyze_count",
)


@dataclass
class Server:
    """What the benchmark knows about the server it measures."""

    version_num: int
    owned: bool  # started by this benchmark: it may install extensions and change settings
    walinspect: bool = False
    pgstattuple: bool = False


@dataclass
class Snapshot:
    """The database's footprint at one moment."""

    lsn: str
    total_bytes: int
    relations: dict[str, int]
    checkpoints: int


@dataclass
class Progress:
    """The phase as the producer, the handler and the sampler see it."""

    enqueued: int = 0
    handled: int = 0
    target: int | None = None  # all that was enqueued, once the producer has finished
    clock_offset: float = 0.0  # database clock minus ours, seconds
    pickups_ms: list[float] = field(default_factory=list)
    claims: list[ClaimTiming] = field(default_factory=list)
    dead_peak: int = 0
    backlog_peak: int = 0
    last_handled_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check_done(self) -> None:
        if self.target is not None and self.handled >= self.target:
            self.done.set()


def _settings(dsn: str, queue: str) -> WorkerSettings:
    values: dict[str, Any] = {
        "dsn": dsn,
        "queues": [queue],
        "app": "bench",
        "concurrency": CONCURRENCY,
        "metrics_port": 0,
        "log_level": "WARNING",
    }
    return WorkerSettings(**values)


def _per_task(value: float, tasks: int) -> float:
    return round(value / tasks, 1) if tasks else 0.0


# -- server ----------------------------------------------------------------------------------


async def _checkpoints(pool: asyncpg.Pool, server: Server) -> int:
    if server.version_num >= 170000:  # moved out of pg_stat_bgwriter in 17
        sql = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
    else:
        sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return int(await pool.fetchval(sql))


async def _checkpoint(pool: asyncpg.Pool) -> None:
    # A role without the right to checkpoint measures from wherever the server's cycle is.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await pool.execute("CHECKPOINT")


async def _wal_stats(pool: asyncpg.Pool, server: Server) -> dict[str, int]:
    if server.version_num < 140000:  # pg_stat_wal is new in 14
        return {}
    row = await pool.fetchrow("SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal")
    assert row is not None
    return {"records": int(row[0]), "fpi": int(row[1]), "bytes": int(row[2])}


async def _table_stats(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    return {
        row["relname"]: {key: int(row[key]) for key in (*COUNTERS, "n_live_tup", "n_dead_tup")}
        for row in await pool.fetch(TABLE_STATS)
    }


async def _snapshot(pool: asyncpg.Pool, server: Server) -> Snapshot:
    lsn = await pool.fetchval("SELECT pg_current_wal_lsn()::text")
    total = await pool.fetchval(TOTAL_SIZE)
    relations = (
        {
            f"{row['relation']} {row['part']}": int(row["bytes"])
            for row in await pool.fetch(SIZE_BREAKDOWN)
        }
        if DETAIL
        else {}
    )
    return Snapshot(str(lsn), int(total), relations, await _checkpoints(pool, server))


async def _server(pool: asyncpg.Pool, owned: bool) -> Server:
    server = Server(int(await pool.fetchval("SHOW server_version_num")), owned)
    if not DETAIL:
        return server
    if owned:
        # Keep the phase's WAL on disk for pg_walinspect should a checkpoint come mid-phase;
        # retention only, it changes neither what is written nor when checkpoints happen.
        await pool.execute("ALTER SYSTEM SET wal_keep_size = '4GB'")
        await pool.execute("SELECT pg_reload_conf()")
    server.walinspect = await _extension(pool, "pg_walinspect", owned)
    server.pgstattuple = await _extension(pool, "pgstattuple", owned)
    return server


async def _extension(pool: asyncpg.Pool, name: str, owned: bool) -> bool:
    """Whether the extension is there; on our own server, installed first if it can be."""
    if owned:
        with contextlib.suppress(asyncpg.PostgresError):
            await pool.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
    return bool(await pool.fetchval("SELECT count(*) FROM pg_extension WHERE extname = $1", name))


async def _server_info(pool: asyncpg.Pool) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1)",
        POSTGRES_SETTINGS,
    )
    return {
        "postgres_version": await pool.fetchval("SHOW server_version"),
        "postgres_settings": {row["name"]: row["value"] for row in rows},
    }


# -- the load --------------------------------------------------------------------------------


async def _produce(dsn: str, queue: str, seconds: float, progress: Progress) -> float:
    """Enqueue RATE tasks a second for `seconds`; returns the seconds it took. A batch that
    comes late carries what fell due meanwhile, so the rate holds on average."""
    async with await connect(dsn, min_size=1, max_size=1) as client:
        started = time.perf_counter()
        tick = 0
        while True:
            elapsed = time.perf_counter() - started
            due = round(RATE * min(elapsed, seconds)) - progress.enqueued
            if due > 0:
                first = progress.enqueued
                requests = [TaskRequest("noop", {"n": n}) for n in range(first, first + due)]
                await client.enqueue_many(queue, requests)
                progress.enqueued += due
            if elapsed >= seconds:
                return time.perf_counter() - started
            tick += 1
            await asyncio.sleep(max(0.0, tick * TICK - (time.perf_counter() - started)))


async def _sample(pool: asyncpg.Pool, progress: Progress) -> None:
    while True:
        progress.dead_peak = max(progress.dead_peak, int(await pool.fetchval(DEAD_TUPLES)))
        progress.backlog_peak = max(progress.backlog_peak, progress.enqueued - progress.handled)
        await asyncio.sleep(SAMPLE_EVERY)


async def _clock_offset(pool: asyncpg.Pool) -> float:
    before = time.time()
    database = float(await pool.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
    after = time.time()
    return database - (before + after) / 2


async def _hold_snapshot(dsn: str) -> asyncpg.Connection:
    """A session idle in a transaction whose snapshot keeps every newer row version alive."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    await conn.fetchval("SELECT 1 FROM taskq.queues LIMIT 1")  # takes the snapshot
    return conn


async def _still_held(pool: asyncpg.Pool, holder: asyncpg.Connection) -> bool:
    row = await pool.fetchrow(
        "SELECT state, backend_xmin IS NOT NULL AS xmin FROM pg_stat_activity WHERE pid = $1",
        holder.get_server_pid(),
    )
    return row is not None and row["state"] == "idle in transaction" and bool(row["xmin"])


# -- detail ----------------------------------------------------------------------------------


def _relation_growth(before: Snapshot, after: Snapshot, tasks: int) -> list[dict[str, Any]]:
    growth = []
    for name in sorted(before.relations.keys() | after.relations.keys()):
        grown = after.relations.get(name, 0) - before.relations.get(name, 0)
        if grown:
            growth.append(
                {
                    "relation": name,
                    "bytes": grown,
                    "bytes_per_task": _per_task(grown, tasks),
                    "end_bytes": after.relations.get(name, 0),
                }
            )
    return sorted(growth, key=lambda row: -int(row["bytes"]))


def _table_counters(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], tasks: int
) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, end in sorted(after.items()):
        start = before.get(name, {})
        delta = {key: end[key] - start.get(key, 0) for key in COUNTERS}
        if not any(delta.values()):
            continue
        updates = delta["n_tup_upd"]
        tables[name] = {
            **delta,
            "n_live_tup": end["n_live_tup"],
            "n_dead_tup": end["n_dead_tup"],
            "hot_update_ratio": round(delta["n_tup_hot_upd"] / updates, 3) if updates else None,
            # each insert and each update writes a new heap tuple
            "row_versions_per_task": round((delta["n_tup_ins"] + updates) / tasks, 2)
            if tasks
            else None,
        }
    return tables


async def _wal_by_record(
    pool: asyncpg.Pool, start: str, end: str, tasks: int
) -> list[dict[str, Any]] | str:
    try:
        rows = await pool.fetch(
            'SELECT "resource_manager/record_type" AS record, count, record_size, fpi_size,'
            " combined_size FROM pg_get_wal_stats($1::text::pg_lsn, $2::text::pg_lsn, true)"
            " WHERE count > 0 ORDER BY combined_size DESC LIMIT 15",
            start,
            end,
        )
    except asyncpg.PostgresError as error:  # e.g. the WAL was recycled already
        return f"unavailable: {error}"
    return [
        {
            "record": row["record"],
            "per_task": round(int(row["count"]) / tasks, 2) if tasks else 0,
            "record_bytes_per_task": _per_task(int(row["record_size"]), tasks),
            "fpi_bytes_per_task": _per_task(int(row["fpi_size"]), tasks),
        }
        for row in rows
    ]


async def _tuple_stats(pool: asyncpg.Pool, queue_id: int) -> dict[str, Any]:
    """Live, dead and free bytes of the queue's tasks partition; density of its indexes."""
    partition = f"taskq.tasks_q{queue_id}"
    heap = await pool.fetchrow(
        "SELECT table_len, tuple_count, tuple_len, dead_tuple_count, dead_tuple_len, free_space"
        " FROM pgstattuple($1::regclass)",
        partition,
    )
    assert heap is not None
    indexes = await pool.fetch(
        "SELECT coalesce(p.relname, c.relname) AS index, s.leaf_pages, s.empty_pages,"
        "       s.deleted_pages, s.avg_leaf_density"
        "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        "  LEFT JOIN pg_inherits h ON h.inhrelid = c.oid"
        "  LEFT JOIN pg_class p ON p.oid = h.inhparent,"
        "  LATERAL pgstatindex(c.oid) s"
        " WHERE i.indrelid = $1::regclass",
        partition,
    )
    return {
        "heap": {key: int(value) for key, value in heap.items()},
        "indexes": {
            row["index"]: {
                "leaf_pages": int(row["leaf_pages"]),
                "empty_pages": int(row["empty_pages"]),
                "deleted_pages": int(row["deleted_pages"]),
                "avg_leaf_density": float(row["avg_leaf_density"]),
            }
            for row in indexes
            if row["leaf_pages"]  # an empty index has no density (NaN, not JSON)
        },
    }


async def _detail(
    pool: asyncpg.Pool,
    server: Server,
    queue_id: int,
    tasks: int,
    window: Window,
) -> dict[str, Any]:
    before, after = window.before, window.after
    wal = (window.wal_before, window.wal_after)
    row = await pool.fetchrow(
        "SELECT avg(pg_column_size(t.*))::float8 AS bytes FROM taskq.tasks t WHERE queue_id = $1",
        queue_id,
    )
    assert row is not None
    detail: dict[str, Any] = {
        "relations": _relation_growth(before, after, tasks),
        "tables": _table_counters(window.tables_before, window.tables_after, tasks),
        "avg_task_row_bytes": round(float(row["bytes"] or 0), 1),
    }
    if wal[0]:
        detail["wal"] = {
            "records_per_task": round((wal[1]["records"] - wal[0]["records"]) / tasks, 2),
            "fpi_per_task": round((wal[1]["fpi"] - wal[0]["fpi"]) / tasks, 3),
        }
    if server.walinspect:
        detail["wal_by_record"] = await _wal_by_record(pool, before.lsn, after.lsn, tasks)
    if server.pgstattuple:
        detail["tasks_partition"] = await _tuple_stats(pool, queue_id)
    return detail


# -- phases ----------------------------------------------------------------------------------


@dataclass
class Window:
    """What was measured around one phase's load."""

    before: Snapshot
    after: Snapshot
    tables_before: dict[str, dict[str, int]]
    tables_after: dict[str, dict[str, int]]
    wal_before: dict[str, int]
    wal_after: dict[str, int]
    produced_in: float
    seconds: float
    dead_end: int


async def _measure(
    pool: asyncpg.Pool,
    server: Server,
    dsn: str,
    queue: str,
    seconds: float,
    progress: Progress,
    stop_worker: Callable[[], Awaitable[None]],
) -> Window:
    """Run the producer against the started worker and measure around it."""
    await _checkpoint(pool)
    await asyncio.sleep(STATS_SETTLE)  # counters of the queue's creation arrive before we start
    progress.clock_offset = await _clock_offset(pool)
    tables_before = await _table_stats(pool)
    wal_before = await _wal_stats(pool, server)
    before = await _snapshot(pool, server)
    sampler = asyncio.create_task(_sample(pool, progress))
    try:
        started = time.perf_counter()
        produced_in = await _produce(dsn, queue, seconds, progress)
        progress.target = progress.enqueued
        progress.check_done()
        try:
            await asyncio.wait_for(progress.done.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"the worker ran {progress.handled} of {progress.enqueued} tasks "
                f"within {DRAIN_TIMEOUT:.0f} s of the producer's end"
            ) from None
        await stop_worker()  # records the last outcomes; its sessions end, publishing statistics
        after = await _snapshot(pool, server)
        await asyncio.sleep(STATS_SETTLE)
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    dead_end = int(await pool.fetchval(DEAD_TUPLES))
    progress.dead_peak = max(progress.dead_peak, dead_end)
    return Window(
        before,
        after,
        tables_before,
        await _table_stats(pool),
        wal_before,
        await _wal_stats(pool, server),
        produced_in,
        progress.last_handled_at - started,
        dead_end,
    )


def _summary(window: Window, wal_bytes: int, progress: Progress) -> dict[str, Any]:
    tasks = progress.enqueued
    grown = window.after.total_bytes - window.before.total_bytes
    pickups = sorted(progress.pickups_ms)
    claims = sorted(c.ms for c in progress.claims if c.kind == "claim")
    return {
        "tasks": tasks,
        "window_s": round(window.seconds, 1),
        "enqueued_per_s": round(tasks / window.produced_in),
        "completed_per_s": round(tasks / window.seconds),
        "wal_bytes_per_task": _per_task(wal_bytes, tasks),
        "table_bytes_per_task": _per_task(grown, tasks),
        "wal_bytes": wal_bytes,
        "table_bytes_growth": grown,
        "dead_tuples_peak": progress.dead_peak,
        "dead_tuples_per_task": round(progress.dead_peak / tasks, 2) if tasks else 0.0,
        "dead_tuples_end": window.dead_end,
        "backlog_peak": progress.backlog_peak,
        "pickup_p50_ms": round(statistics.median(pickups), 2),
        "pickup_p99_ms": round(percentile(pickups, 0.99), 2),
        "claims": len(claims),
        "claim_p50_ms": round(statistics.median(claims), 2),
        "claim_p99_ms": round(percentile(claims, 0.99), 2),
        "autovacuums": sum(
            end["autovacuum_count"] - window.tables_before.get(table, {}).get("autovacuum_count", 0)
            for table, end in window.tables_after.items()
        ),
        "checkpoints": window.after.checkpoints - window.before.checkpoints,
    }


async def run_phase(
    client: Client, dsn: str, server: Server, name: str, seconds: float, hold: bool
) -> dict[str, Any]:
    queue = f"bench/footprint-{name}"
    await client.drop_queue(queue)
    settings = (
        QueueSettings()
        if RETENTION is None
        else QueueSettings(retention_succeeded_seconds=int(RETENTION))
    )
    queue_id = (await client.ensure_queue(queue, settings)).id
    progress = Progress()
    registry = Registry()

    @registry.task("noop")
    async def noop(ctx: TaskContext) -> None:
        now = time.time()
        progress.pickups_ms.append(
            (now + progress.clock_offset - ctx.created_at.timestamp()) * 1000
        )
        progress.handled += 1
        progress.last_handled_at = time.perf_counter()
        progress.check_done()

    pool = client.pool
    worker_db = await worker_pool(dsn)  # as `taskq worker` makes it
    worker_settings = _settings(dsn, queue)
    store = TimedStore(worker_db, worker_settings.db_deadline, progress.claims)
    worker = Worker(worker_db, registry, worker_settings, f"bench-footprint-{name}", db=store)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    async def stop_worker() -> None:
        stop.set()
        await running  # a graceful stop flushes the last acknowledgements
        await worker_db.close()

    await asyncio.sleep(0.5)  # let it start listening
    holder = await _hold_snapshot(dsn) if hold else None
    try:
        window = await _measure(pool, server, dsn, queue, seconds, progress, stop_worker)
        held = await _still_held(pool, holder) if holder is not None else None
    finally:
        if holder is not None:
            await holder.close()  # ends the transaction
        stop.set()
        await asyncio.gather(running, return_exceptions=True)  # an error stays the one raised
        await worker_db.close()

    stats = await client.queue_stats(queue)
    if stats.ready or stats.running or progress.handled != progress.enqueued:
        raise RuntimeError(f"{name} phase left tasks behind: {stats}, {progress.handled} run")
    wal_bytes = int(
        await pool.fetchval(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
            window.after.lsn,
            window.before.lsn,
        )
    )
    result = _summary(window, wal_bytes, progress)
    if held is not None:
        result["snapshot_held"] = held
    if DETAIL:
        result["detail"] = await _detail(pool, server, queue_id, progress.enqueued, window)
    await client.drop_queue(queue)
    return result


async def run(dsn: str, description: str, owned: bool) -> dict[str, Any]:
    async with await connect(dsn, min_size=2, max_size=4) as client:
        await client.migrate()
        server = await _server(client.pool, owned)
        steady = await run_phase(client, dsn, server, "steady", SECONDS, hold=False)
        held = await run_phase(client, dsn, server, "hold", HOLD_SECONDS, hold=True)
        info = await _server_info(client.pool)
    return {
        "steady": steady,
        "hold": held,
        "settings": {
            "rate_per_s": RATE,
            "steady_seconds": SECONDS,
            "hold_seconds": HOLD_SECONDS,
            "retention_succeeded_s": int(RETENTION) if RETENTION is not None else "default",
            "producer_batch_interval_s": TICK,
            "worker_concurrency": CONCURRENCY,
            "postgres": description,
            **info,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def main() -> None:
    tune_gc()  # the worker runs as in `taskq worker`, which does this once its app is loaded
    with bench_database() as (dsn, label, server):
        result = asyncio.run(run(dsn, label, owned=server is not None))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
