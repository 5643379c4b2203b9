"""Row layouts compared: table and WAL bytes per task of candidate task-table layouts under a
held snapshot, each driven by plain SQL; prints one JSON object.

    make bench-layout                                   # starts its own durable PostgreSQL
    TASKQ_LAYOUT_TASKS=32000 TASKQ_LAYOUT_LAYOUTS=current,no_claim_version make bench-layout
    TASKQ_LAYOUT_HOLD=0 make bench-layout               # no snapshot held: vacuum may prune
    TASKQ_BENCH_DSN=postgresql://... make bench-layout

What it is for: deciding, before writing a migration, whether a layout can meet a bytes
target (issue 18, item 4: table growth during a held snapshot and WAL per completed task). It
runs no worker and no client: one session enqueues TASKQ_LAYOUT_TASKS (default 16,000) tasks
in batches of 16 (`{"n": N}` payloads, task name "noop", a queue's defaults: retention of
successes a day) and after each batch claims up to 32 ready tasks and records their success,
while another session holds a REPEATABLE READ snapshot open and idle, so no row version made
during the run can be removed (as in the hold phase of bench/footprint_bench.py, whose
per-task figures `current` reproduces within a few percent: the footprint benchmark also
counts the worker's beats and duties and the producer's separate commits).

Each layout is a schema (or, for `current`, taskq's own functions on a fresh queue) and the
statements of its enqueue, claim and completion. Only the bytes are meaningful: the layouts
other than `current` and `copy` implement none of taskq's other behaviour, and the
`no_claim_version*` layouts do not even exclude a second claimer once the claim commits (their
claim and completion run back to back here); they measure what a claim that writes no task
row version would cost, whatever keeps the claim (an advisory lock held by a session, a narrow
lease row, a slot row per worker, a row per claim). docs/design.md ("Bytes per task")
discusses the results.

Per layout: wal_bytes_per_task (pg_current_wal_lsn() difference, the whole server),
table_bytes_per_task (growth of every relation in schemas taskq and layout: heaps, indexes,
TOAST, maps), the growth per relation and, where pg_walinspect is available (always on the
benchmark's own server), WAL by record type per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv.postgres import bench_database

from taskq.client import connect

TASKS = int(os.environ.get("TASKQ_LAYOUT_TASKS", "16000"))
HOLD = os.environ.get("TASKQ_LAYOUT_HOLD", "1") not in ("", "0")
ONLY = [name for name in os.environ.get("TASKQ_LAYOUT_LAYOUTS", "").split(",") if name]
BATCH = 16  # tasks per enqueue, as the footprint benchmark's producer at 800/s
WORKER = "bench-footprint-hold"  # as long as the footprint benchmark's worker id

SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('taskq', 'layout') AND c.relkind IN ('r', 'p')
"""
RELATIONS = """
SELECT c.relname, pg_relation_size(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('taskq', 'layout') AND c.relkind IN ('r', 'i')
"""


@dataclass(frozen=True)
class Layout:
    """A layout and its statements. Enqueue takes $1 (int[]: the payloads' numbers); the
    claim's first statement takes $1 (the worker id) and returns (id, attempt_id); the claim's
    further statements (same transaction) and the completion's take what they declare of
    $1 (bigint[] ids), $2 (uuid[] attempt ids), $3 (the worker id)."""

    name: str
    about: str
    setup: tuple[str, ...]
    enqueue: str
    claim: tuple[str, ...]
    complete: tuple[str, ...]
    teardown: tuple[str, ...] = ("DROP SCHEMA IF EXISTS layout CASCADE",)


# -- taskq as it is ----------------------------------------------------------------------------

QUEUE = "taskq.queue_id('layout/q')"
CURRENT_SETUP = (
    "DROP SCHEMA IF EXISTS layout CASCADE",
    "SELECT taskq.drop_queue('layout', 'q')",
    "SELECT taskq.provision_queue('layout', 'q')",
)
CURRENT_ENQUEUE = """
SELECT count(*) FROM taskq.enqueue_many(
       p_queue => 'layout/q',
       p_task_names => array_fill('noop'::text, ARRAY[cardinality($1::int[])]),
       p_payloads => ARRAY(SELECT json_build_object('n', n) FROM unnest($1::int[]) n))
"""
CURRENT_CLAIM = f"""
SELECT c.id, c.attempt_id
  FROM taskq.claim(p_queue_id => {QUEUE}, p_worker_id => $1, p_limit => 32, p_lease_s => 30) c
"""
CURRENT_COMPLETE = f"SELECT count(*) FROM taskq.complete({QUEUE}, $3, 'succeeded', $1, $2)"
CURRENT_TEARDOWN = ("SELECT taskq.drop_queue('layout', 'q')",)


def _current(name: str, about: str, fillfactor: int | None = None) -> Layout:
    setup: tuple[str, ...] = CURRENT_SETUP
    if fillfactor is not None:
        setup += (
            "DO $$ BEGIN EXECUTE format('ALTER TABLE taskq.tasks_q%s SET (fillfactor = "
            f"{fillfactor})', {QUEUE}); END $$",
        )
    return Layout(
        name,
        about,
        setup,
        CURRENT_ENQUEUE,
        (CURRENT_CLAIM,),
        (CURRENT_COMPLETE,),
        CURRENT_TEARDOWN,
    )


# -- copies of the tasks table, driven by plain statements -----------------------------------


def _table(name: str, fillfactor: int | None = None) -> tuple[str, ...]:
    storage = f" WITH (fillfactor = {fillfactor})" if fillfactor is not None else ""
    return (
        f"CREATE TABLE layout.{name} (LIKE taskq.tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        + storage,
        f"ALTER TABLE layout.{name} ADD PRIMARY KEY (id, queue_id)",
    )


FRESH = ("DROP SCHEMA IF EXISTS layout CASCADE", "CREATE SCHEMA layout")
# taskq's indexes on a tasks partition (sql/schema.sql)
INDEXES = (
    "CREATE INDEX ON layout.t (queue_id, (-priority), run_at, id) WHERE state = 'ready'",
    "CREATE INDEX ON layout.t (queue_id, state, finished_at) WHERE finished_at IS NOT NULL",
    "CREATE INDEX ON layout.t (queue_id, lease_expires_at) WHERE state = 'running'",
    "CREATE INDEX ON layout.t (queue_id, run_at) WHERE state IN ('scheduled', 'retrying')",
    "CREATE INDEX ON layout.t (queue_id, correlation_id, id) WHERE correlation_id IS NOT NULL",
    "CREATE INDEX ON layout.t (queue_id, finished_at)"
    " WHERE callback_url IS NOT NULL AND finished_at IS NOT NULL",
    "CREATE UNIQUE INDEX ON layout.t (queue_id, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL"
    " AND state IN ('scheduled', 'ready', 'running', 'retrying')",
)
NO_RUNNING_INDEX = tuple(sql for sql in INDEXES if "lease_expires_at" not in sql)
# A table of unfinished tasks only, whose indexes name no column a claim changes (state,
# worker, attempt, lease, start): a claim can be a HOT update when its page has room.
LIVE_INDEXES = (
    "CREATE INDEX ON layout.t (queue_id, (-priority), run_at, id)",
    "CREATE INDEX ON layout.t (queue_id, correlation_id, id) WHERE correlation_id IS NOT NULL",
    "CREATE UNIQUE INDEX ON layout.t (queue_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
)
HISTORY_INDEXES = (
    "CREATE INDEX ON layout.h (queue_id, state, finished_at)",
    "CREATE INDEX ON layout.h (queue_id, correlation_id, id) WHERE correlation_id IS NOT NULL",
)
# the finished row with its fixed-width columns first, widest first: no alignment padding
COMPACT_HISTORY = (
    """CREATE TABLE layout.h (
        id bigint NOT NULL, run_at timestamptz NOT NULL, created_at timestamptz NOT NULL,
        started_at timestamptz, finished_at timestamptz NOT NULL, timeout_s float8,
        attempt_id uuid, queue_id integer NOT NULL, max_attempts integer NOT NULL,
        attempts smallint NOT NULL, total_attempts smallint NOT NULL,
        priority smallint NOT NULL, state "char" NOT NULL, cancel_requested boolean NOT NULL,
        task_name text NOT NULL, worker_id text, payload jsonb NOT NULL, idempotency_key text,
        correlation_id text, result jsonb, error jsonb, progress jsonb, traceparent text,
        callback_url text)""",
    "ALTER TABLE layout.h ADD PRIMARY KEY (id, queue_id)",
)

ENQUEUE = """
INSERT INTO layout.t (queue_id, task_name, state, priority, payload, max_attempts)
SELECT 1, 'noop', 'ready', 50, jsonb_build_object('n', n), 3 FROM unnest($1::int[]) n
"""
CLAIM = """
UPDATE layout.t t
   SET state = 'running', worker_id = $1, attempt_id = gen_random_uuid(),
       attempts = t.attempts + 1, total_attempts = t.total_attempts + 1,
       lease_expires_at = now() + interval '30 s', started_at = now(), progress = NULL
 WHERE t.queue_id = 1 AND t.id = ANY(ARRAY(
       SELECT r.id FROM layout.t r WHERE r.queue_id = 1 AND r.state = 'ready'
        ORDER BY -r.priority, r.run_at, r.id LIMIT 32 FOR UPDATE SKIP LOCKED))
RETURNING t.id, t.attempt_id
"""
COMPLETE = """
UPDATE layout.t t
   SET state = 'succeeded', finished_at = now(), result = NULL, error = NULL,
       lease_expires_at = NULL
  FROM unnest($1::bigint[], $2::uuid[]) i(id, attempt_id)
 WHERE t.queue_id = 1 AND t.id = ANY($1) AND t.id = i.id AND t.state = 'running'
   AND t.attempt_id = i.attempt_id
"""
GONE = """
WITH gone AS (
    DELETE FROM layout.t t USING unnest($1::bigint[], $2::uuid[]) i(id, attempt_id)
     WHERE t.queue_id = 1 AND t.id = ANY($1) AND t.id = i.id AND t.state = 'running'
       AND t.attempt_id = i.attempt_id
    RETURNING t.*)
"""
TO_HISTORY = (
    GONE
    + """
INSERT INTO layout.h
SELECT g.queue_id, g.id, g.task_name, 'succeeded', g.priority, g.payload, g.run_at,
       g.idempotency_key, g.correlation_id, g.attempts, g.total_attempts, g.max_attempts,
       NULL, NULL, NULL, g.timeout_s, g.worker_id, g.attempt_id, NULL, g.cancel_requested,
       NULL, NULL, g.progress, g.created_at, g.started_at, now(), g.traceparent, g.callback_url
  FROM gone g
"""
)
TO_COMPACT_HISTORY = (
    GONE
    + """
INSERT INTO layout.h
SELECT g.id, g.run_at, g.created_at, g.started_at, now(), g.timeout_s, g.attempt_id,
       g.queue_id, g.max_attempts, g.attempts, g.total_attempts, g.priority, 's',
       g.cancel_requested, g.task_name, g.worker_id, g.payload, g.idempotency_key,
       g.correlation_id, NULL, NULL, g.progress, g.traceparent, g.callback_url
  FROM gone g
"""
)

# The immutable part of a task written once; a narrow state row written at each transition.
SPLIT_SETUP = (
    *FRESH,
    """CREATE TABLE layout.b (
        queue_id integer NOT NULL, id bigint NOT NULL, priority smallint NOT NULL,
        max_attempts integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
        task_name text NOT NULL, payload jsonb NOT NULL, idempotency_key text,
        correlation_id text, timeout_s float8, traceparent text, callback_url text,
        PRIMARY KEY (id, queue_id))""",
    """CREATE TABLE layout.t (
        queue_id integer NOT NULL, id bigint NOT NULL, run_at timestamptz NOT NULL DEFAULT now(),
        priority smallint NOT NULL, attempts smallint NOT NULL DEFAULT 0,
        total_attempts smallint NOT NULL DEFAULT 0,
        cancel_requested boolean NOT NULL DEFAULT false, state "char" NOT NULL,
        lease_expires_at timestamptz, started_at timestamptz, finished_at timestamptz,
        attempt_id uuid, worker_id text, result jsonb, error jsonb, progress jsonb,
        PRIMARY KEY (id, queue_id))""",
    "CREATE INDEX ON layout.t (queue_id, (-priority), run_at, id) WHERE state = 'r'",
    "CREATE INDEX ON layout.t (queue_id, state, finished_at) WHERE finished_at IS NOT NULL",
    "CREATE INDEX ON layout.t (queue_id, lease_expires_at) WHERE state = 'u'",
)
SPLIT_ENQUEUE = """
WITH body AS (
    INSERT INTO layout.b (queue_id, id, priority, max_attempts, task_name, payload)
    SELECT 1, nextval('taskq.task_id_seq'), 50, 3, 'noop', jsonb_build_object('n', n)
      FROM unnest($1::int[]) n
    RETURNING id)
INSERT INTO layout.t (queue_id, id, priority, state) SELECT 1, body.id, 50, 'r' FROM body
"""
SPLIT_CLAIM = (CLAIM.replace("'running'", "'u'").replace("'ready'", "'r'"),)
SPLIT_COMPLETE = """
UPDATE layout.t t SET state = 's', finished_at = now(), lease_expires_at = NULL
  FROM unnest($1::bigint[], $2::uuid[]) i(id, attempt_id)
 WHERE t.queue_id = 1 AND t.id = ANY($1) AND t.id = i.id AND t.state = 'u'
   AND t.attempt_id = i.attempt_id
"""

# No claim version: the task row stays `ready` until its outcome is recorded.
PICK = """
SELECT r.id, gen_random_uuid() FROM layout.t r
 WHERE r.queue_id = 1 AND r.state = 'ready'{lock_filter}
 ORDER BY -r.priority, r.run_at, r.id LIMIT 32{row_lock}
"""
PICK_ROW_LOCK = PICK.format(lock_filter="", row_lock=" FOR UPDATE SKIP LOCKED")
PICK_ADVISORY = PICK.format(lock_filter=" AND pg_try_advisory_lock(r.id)", row_lock="")
FINISH_READY = """
UPDATE layout.t t
   SET state = 'succeeded', finished_at = now(), worker_id = $3, attempt_id = i.attempt_id,
       attempts = t.attempts + 1, total_attempts = t.total_attempts + 1, started_at = now()
  FROM unnest($1::bigint[], $2::uuid[]) i(id, attempt_id)
 WHERE t.queue_id = 1 AND t.id = ANY($1) AND t.id = i.id AND t.state = 'ready'
"""
LEASE_TABLE = (
    """CREATE TABLE layout.l (
        queue_id integer, task_id bigint, attempt_id uuid, worker_id text,
        lease_expires_at timestamptz, started_at timestamptz, PRIMARY KEY (task_id, queue_id))""",
    "CREATE INDEX ON layout.l (queue_id, lease_expires_at)",
)
LEASE_INSERT = """
INSERT INTO layout.l
SELECT 1, i.id, i.attempt_id, $3, now() + interval '30 s', now()
  FROM unnest($1::bigint[], $2::uuid[]) i(id, attempt_id)
"""
# one row per worker and slot (its concurrency), rewritten by each claim: no index names a
# column the claim changes, so each rewrite is a HOT update of a ~60-byte row
SLOT_TABLE = (
    """CREATE TABLE layout.s (
        worker integer, slot integer, task_id bigint, attempt_id uuid,
        lease_expires_at timestamptz, started_at timestamptz, PRIMARY KEY (worker, slot))
       WITH (fillfactor = 10)""",
    "INSERT INTO layout.s SELECT 1, g, NULL, NULL, NULL, NULL FROM generate_series(1, 32) g",
)
SLOT_UPDATE = """
UPDATE layout.s s
   SET task_id = i.id, attempt_id = i.attempt_id, lease_expires_at = now() + interval '30 s',
       started_at = now()
  FROM unnest($1::bigint[], $2::uuid[]) WITH ORDINALITY i(id, attempt_id, slot)
 WHERE s.worker = 1 AND s.slot = i.slot
"""

# one row per claim (not per task), inserted by the claim and deleted once its tasks are done
BATCH_TABLE = (
    """CREATE TABLE layout.c (
        id bigserial PRIMARY KEY, worker_id text NOT NULL,
        lease_expires_at timestamptz NOT NULL, started_at timestamptz NOT NULL,
        task_ids bigint[] NOT NULL, attempt_ids uuid[] NOT NULL)""",
)
BATCH_INSERT = """
INSERT INTO layout.c (worker_id, lease_expires_at, started_at, task_ids, attempt_ids)
VALUES ($3, now() + interval '30 s', now(), $1, $2)
"""
BATCH_DELETE = "DELETE FROM layout.c WHERE task_ids && $1::bigint[]"

LAYOUTS = (
    _current("current", "taskq's schema and functions (a fresh queue, default settings)"),
    _current("current_fillfactor_50", "current, the partition at fillfactor 50", 50),
    _current("current_fillfactor_70", "current, the partition at fillfactor 70", 70),
    Layout(
        "copy",
        "a copy of a tasks partition and its indexes, plain statements (calibrates the rig)",
        (*FRESH, *_table("t"), *INDEXES),
        ENQUEUE,
        (CLAIM,),
        (COMPLETE,),
    ),
    Layout(
        "copy_without_running_index",
        "copy without the running index (the rescuer would have no way to expired leases)",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX),
        ENQUEUE,
        (CLAIM,),
        (COMPLETE,),
    ),
    Layout(
        "history",
        "completion deletes the task and inserts it, finished, into a history table",
        (*FRESH, *_table("t"), *INDEXES, *_table("h"), *HISTORY_INDEXES),
        ENQUEUE,
        (CLAIM,),
        (TO_HISTORY,),
    ),
    Layout(
        "history_compact",
        'history, its row ordered against padding, state as "char", attempts as smallint',
        (*FRESH, *_table("t"), *INDEXES, *COMPACT_HISTORY, *HISTORY_INDEXES),
        ENQUEUE,
        (CLAIM,),
        (TO_COMPACT_HISTORY,),
    ),
    Layout(
        "history_hot_claim_fillfactor_50",
        "history; the live table's indexes name no column a claim changes (claim index not"
        " partial, no running index): claims are HOT updates; live table at fillfactor 50",
        (*FRESH, *_table("t", 50), *LIVE_INDEXES, *_table("h"), *HISTORY_INDEXES),
        ENQUEUE,
        (CLAIM,),
        (TO_HISTORY,),
    ),
    Layout(
        "history_compact_hot_claim_fillfactor_50",
        "history_hot_claim_fillfactor_50 with the compact history row",
        (*FRESH, *_table("t", 50), *LIVE_INDEXES, *COMPACT_HISTORY, *HISTORY_INDEXES),
        ENQUEUE,
        (CLAIM,),
        (TO_COMPACT_HISTORY,),
    ),
    Layout(
        "split",
        'the immutable part written once; a narrow state row ("char" state) per transition',
        SPLIT_SETUP,
        SPLIT_ENQUEUE,
        SPLIT_CLAIM,
        (SPLIT_COMPLETE,),
    ),
    Layout(
        "no_claim_version",
        "the claim writes no task version (row lock only); the outcome is the second version",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX),
        ENQUEUE,
        (PICK_ROW_LOCK,),
        (FINISH_READY,),
    ),
    Layout(
        "no_claim_version_advisory",
        "no_claim_version with session advisory locks instead of the row lock (as Que)",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX),
        ENQUEUE,
        (PICK_ADVISORY,),
        (FINISH_READY, "SELECT count(pg_advisory_unlock(i)) FROM unnest($1::bigint[]) i"),
    ),
    Layout(
        "no_claim_version_lease_row",
        "no_claim_version; the claim inserts a narrow lease row, the completion deletes it",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX, *LEASE_TABLE),
        ENQUEUE,
        (PICK_ROW_LOCK, LEASE_INSERT),
        (FINISH_READY, "DELETE FROM layout.l WHERE queue_id = 1 AND task_id = ANY($1)"),
    ),
    Layout(
        "no_claim_version_claim_row",
        "no_claim_version; the claim inserts one row for the whole claim (ids and attempt ids"
        " in arrays), deleted when its tasks are done",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX, *BATCH_TABLE),
        ENQUEUE,
        (PICK_ROW_LOCK, BATCH_INSERT),
        (FINISH_READY, BATCH_DELETE),
    ),
    Layout(
        "no_claim_version_claim_row_fillfactor_40",
        "no_claim_version_claim_row, the task table at fillfactor 40: the completion's version"
        " fits on its task's page (no lock record for a move, a shorter update record)",
        (*FRESH, *_table("t", 40), *NO_RUNNING_INDEX, *BATCH_TABLE),
        ENQUEUE,
        (PICK_ROW_LOCK, BATCH_INSERT),
        (FINISH_READY, BATCH_DELETE),
    ),
    Layout(
        "no_claim_version_slot_rows",
        "no_claim_version; the claim rewrites one narrow slot row per task (HOT)",
        (*FRESH, *_table("t"), *NO_RUNNING_INDEX, *SLOT_TABLE),
        ENQUEUE,
        (PICK_ROW_LOCK, SLOT_UPDATE),
        (FINISH_READY,),
    ),
)


async def _sizes(conn: asyncpg.Connection) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in await conn.fetch(RELATIONS)}


async def _execute(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run with as many of args as the statement declares."""
    statement = await conn.prepare(sql)
    return list(await statement.fetch(*args[: len(statement.get_parameters())]))


async def _claim(conn: asyncpg.Connection, layout: Layout) -> list[asyncpg.Record]:
    async with conn.transaction():
        claimed = await _execute(conn, layout.claim[0], WORKER)
        if claimed:
            ids = [row[0] for row in claimed]
            attempts = [row[1] for row in claimed]
            for sql in layout.claim[1:]:
                await _execute(conn, sql, ids, attempts, WORKER)
    return claimed


async def _complete(
    conn: asyncpg.Connection, layout: Layout, claimed: list[asyncpg.Record]
) -> None:
    ids = [row[0] for row in claimed]
    attempts = [row[1] for row in claimed]
    async with conn.transaction():
        for sql in layout.complete:
            await _execute(conn, sql, ids, attempts, WORKER)


async def _wal_by_record(conn: asyncpg.Connection, start: str, end: str) -> dict[str, Any] | str:
    try:
        rows = await conn.fetch(
            'SELECT "resource_manager/record_type" AS record, count, combined_size'
            " FROM pg_get_wal_stats($1::text::pg_lsn, $2::text::pg_lsn, true)"
            " WHERE count > 0 ORDER BY combined_size DESC LIMIT 10",
            start,
            end,
        )
    except asyncpg.PostgresError as error:
        return f"unavailable: {error}"
    return {
        row["record"]: {
            "per_task": round(int(row["count"]) / TASKS, 2),
            "bytes_per_task": round(int(row["combined_size"]) / TASKS, 1),
        }
        for row in rows
    }


async def run_layout(dsn: str, layout: Layout, walinspect: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    holder = await asyncpg.connect(dsn)
    try:
        for sql in layout.setup:
            await conn.execute(sql)
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
        if HOLD:
            await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await holder.fetchval("SELECT 1 FROM taskq.queues LIMIT 1")  # takes the snapshot
        size_before = int(await conn.fetchval(SIZE))
        relations_before = await _sizes(conn)
        lsn_before = str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
        enqueued = 0
        while enqueued < TASKS:
            await _execute(conn, layout.enqueue, list(range(enqueued, enqueued + BATCH)))
            enqueued += BATCH
            claimed = await _claim(conn, layout)
            if claimed:
                await _complete(conn, layout, claimed)
        while claimed := await _claim(conn, layout):
            await _complete(conn, layout, claimed)
        lsn_after = str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
        size_after = int(await conn.fetchval(SIZE))
        relations_after = await _sizes(conn)
        wal = int(
            await conn.fetchval(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
                lsn_after,
                lsn_before,
            )
        )
        result: dict[str, Any] = {
            "about": layout.about,
            "wal_bytes_per_task": round(wal / TASKS, 1),
            "table_bytes_per_task": round((size_after - size_before) / TASKS, 1),
            "relations": {
                name: round((size - relations_before.get(name, 0)) / TASKS, 1)
                for name, size in sorted(relations_after.items(), key=lambda item: -item[1])
                if size != relations_before.get(name, 0)
            },
        }
        if walinspect:
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CHECKPOINT")  # the WAL read must be flushed first
            result["wal_by_record"] = await _wal_by_record(conn, lsn_before, lsn_after)
        return result
    finally:
        await holder.close()  # ends the held transaction
        with contextlib.suppress(asyncpg.PostgresError):
            for sql in layout.teardown:
                await conn.execute(sql)
        await conn.close()


async def run(dsn: str, description: str, owned: bool) -> dict[str, Any]:
    async with await connect(dsn, min_size=1, max_size=2) as client:
        await client.migrate()
        pool = client.pool
        if owned:
            # keep the runs' WAL for pg_walinspect across checkpoints (retention only)
            await pool.execute("ALTER SYSTEM SET wal_keep_size = '4GB'")
            await pool.execute("SELECT pg_reload_conf()")
            with contextlib.suppress(asyncpg.PostgresError):
                await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        walinspect = bool(
            await pool.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_walinspect'")
        )
        version = await pool.fetchval("SHOW server_version")
    unknown = set(ONLY) - {layout.name for layout in LAYOUTS}
    if unknown:
        raise SystemExit(f"unknown layouts: {sorted(unknown)}")
    results = {
        layout.name: await run_layout(dsn, layout, walinspect)
        for layout in LAYOUTS
        if not ONLY or layout.name in ONLY
    }
    return {
        "layouts": results,
        "settings": {
            "tasks": TASKS,
            "batch": BATCH,
            "snapshot_held": HOLD,
            "postgres": description,
            "postgres_version": version,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


def main() -> None:
    with bench_database() as (dsn, label, server):
        result = asyncio.run(run(dsn, label, owned=server is not None))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
