"""Real `taskq worker` processes killed with SIGKILL, and PostgreSQL crashing under them:
every task still ends succeeded, and a task runs more than once only when an attempt of it
was lost with a killed worker (delivery is at-least-once, never at-most-once)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from devenv.postgres import LocalPostgres

from taskq import BackoffPolicy, QueueSettings, TaskRequest
from taskq.client import Client
from taskq.store.migrations import migrate
from taskq.store.types import Connection
from tests.conftest import MakeQueue

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = 20
RUNS_TABLE = (
    "CREATE TABLE IF NOT EXISTS taskq_test_runs (task_id bigint, attempt int, worker_id text)"
)
# Retry lost attempts at once, and never run out of attempts while workers keep dying.
RESILIENT = QueueSettings(
    max_attempts=100, backoff=BackoffPolicy(kind="fixed", base_seconds=0.05, jitter=0)
)


class Workers:
    """`taskq worker` processes configured only through the pod's environment contract."""

    def __init__(self, dsn: str, queue: str) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TASKQ_DSN": dsn,
            "TASKQ_QUEUES": queue,
            "TASKQ_APP": "tests.integration.apps.recording",
            "TASKQ_CONCURRENCY": str(CONCURRENCY),
            "TASKQ_BATCH_SIZE": "10",
            "TASKQ_LEASE_SECONDS": "2",
            "TASKQ_POLL_INTERVAL": "0.2",
            "TASKQ_MAINTENANCE_INTERVAL": "0.5",
            "TASKQ_METRICS_PORT": "0",
            "TASKQ_LOG_LEVEL": "ERROR",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed_pids: set[int] = set()

    def spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskq.cli.main", "worker"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def kill(self, victim: subprocess.Popen[bytes]) -> None:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.killed_pids.add(victim.pid)
        self.processes.remove(victim)

    async def holder(self, conn: Connection, ids: list[int]) -> subprocess.Popen[bytes] | None:
        """A live process of the group holding one of the tasks (worker ids carry the pid),
        once one does; None once every task succeeded."""
        while True:
            held = await conn.fetch(
                "SELECT DISTINCT worker_id FROM taskq.tasks WHERE id = ANY($1) "
                "AND state = 'running'", ids)
            pids = {int(row["worker_id"].split(":")[1]) for row in held}
            live = [p for p in self.processes if p.poll() is None and p.pid in pids]
            if live:
                return random.choice(live)
            if await succeeded(conn, ids) == len(ids):
                return None
            await asyncio.sleep(0.05)

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def workers(dsn: str, queue: str, count: int) -> Iterator[Workers]:
    group = Workers(dsn, queue)
    try:
        for _ in range(count):
            group.spawn()
        yield group
    finally:
        group.stop_all()


async def succeeded(conn: Connection, ids: list[int]) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM taskq.tasks WHERE id = ANY($1) AND state = 'succeeded'", ids
    )
    return count


async def wait_all_succeeded(dsn: str, ids: list[int], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(dsn)
            try:
                if await succeeded(conn, ids) == len(ids):
                    return
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            pass  # the server may be restarting
        await asyncio.sleep(0.25)
    raise AssertionError("tasks did not all succeed in time")


async def runs_and_lost_attempts(conn: Connection, ids: list[int]) -> dict[int, tuple[int, int]]:
    rows = await conn.fetch(
        """SELECT t.id,
                  (SELECT count(*) FROM taskq_test_runs r WHERE r.task_id = t.id) AS runs,
                  (SELECT count(*) FROM taskq.attempts a
                    WHERE a.task_id = t.id AND a.outcome = 'lost') AS lost
             FROM taskq.tasks t WHERE t.id = ANY($1)""",
        ids,
    )
    return {row["id"]: (row["runs"], row["lost"]) for row in rows}


async def test_workers_killed_with_sigkill_lose_no_task(
    dsn: str, pool: asyncpg.Pool, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue(**RESILIENT.model_dump())
    await pool.execute(RUNS_TABLE)
    results = await client.enqueue_many(
        # long enough that a quiet machine's drain outlasts three kills of a worker holding
        # tasks, each waiting for a replacement to claim: 2,000 x 0.15 s over 40 slots
        queue.full_name, [TaskRequest("record", {"sleep": 0.15}) for _ in range(2000)]
    )
    ids = [r.id for r in results]
    kills = 0
    with workers(dsn, queue.full_name, 2) as group:
        async with pool.acquire() as conn:
            while kills < 6:
                await asyncio.sleep(0.5)
                # a worker holding tasks: one just started may not have claimed yet
                victim = await asyncio.wait_for(group.holder(conn, ids), 120)
                if victim is None:
                    break
                group.kill(victim)
                kills += 1
                group.spawn()
        await wait_all_succeeded(dsn, ids)

    async with pool.acquire() as conn:
        states = await conn.fetch(
            "SELECT state, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) GROUP BY state", ids
        )
        history = await runs_and_lost_attempts(conn, ids)
        lost_by = {
            row["worker_id"]
            for row in await conn.fetch(
                "SELECT DISTINCT worker_id FROM taskq.attempts WHERE task_id = ANY($1) "
                "AND outcome = 'lost'",
                ids,
            )
        }
    assert {row["state"]: row["n"] for row in states} == {"succeeded": 2000}
    assert kills >= 3, f"the drain ended after {kills} kills: make tasks longer"
    assert all(runs >= 1 for runs, _ in history.values()), "a task succeeded without running"
    for task_id, (runs, lost) in history.items():
        # each extra run follows an attempt lost with a killed worker
        assert runs - 1 <= lost, f"task {task_id} ran {runs} times with {lost} lost attempts"
    # and every lost attempt was held by a process that was killed (worker ids carry the pid):
    # tasks are lost only with a dead worker, never by a live one
    assert lost_by
    assert {int(worker_id.split(":")[1]) for worker_id in lost_by} <= group.killed_pids


async def _explain(dsn: str, task_ids: list[int]) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        tasks = await conn.fetch(
            "SELECT id, state, attempts, total_attempts, worker_id "
            "FROM taskq.tasks WHERE id = ANY($1)",
            task_ids,
        )
        tries = await conn.fetch(
            "SELECT task_id, attempt, outcome, worker_id FROM taskq.attempt_history "
            "WHERE task_id = ANY($1) ORDER BY task_id, attempt",
            task_ids,
        )
    finally:
        await conn.close()
    return (
        f"succeeded without a recorded run: {[dict(r) for r in tasks]} {[dict(r) for r in tries]}"
    )


async def test_workers_survive_postgres_crashing_mid_drain() -> None:
    # Durable, as a real server: the handler's own writes must survive the crash for "every
    # task ran" to be checkable (the worker's writes commit asynchronously by design).
    server = LocalPostgres.temporary(durable=True)
    server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        await migrate(conn)
        await conn.execute(RUNS_TABLE)
        client = Client(await asyncpg.create_pool(server.dsn, min_size=1, max_size=2))
        queue = (await client.ensure_queue("crash/q", RESILIENT)).full_name
        ids = [
            r.id
            for r in await client.enqueue_many(
                queue, [TaskRequest("record", {"sleep": 0.01}) for _ in range(2000)]
            )
        ]
        await client.pool.close()
        with workers(server.dsn, queue, 2):
            while await succeeded(conn, ids) < 300:
                await asyncio.sleep(0.1)
            await conn.close()
            server.stop("immediate")  # a crash: no checkpoint, connections cut
            await asyncio.sleep(1.5)
            server.start()
            await wait_all_succeeded(server.dsn, ids)
        conn = await asyncpg.connect(server.dsn)
        history = await runs_and_lost_attempts(conn, ids)
        await conn.close()
        assert len(history) == 2000
        never_ran = [task_id for task_id, (runs, _) in history.items() if runs == 0]
        assert not never_ran, await _explain(server.dsn, never_ran[:3])
    finally:
        server.destroy()
