"""A real `taskq worker` process whose database backends are killed twice a second for 30 s
while a producer enqueues a few hundred tasks a second: every task succeeds, exactly once,
none is left running, no attempt is lost, and the worker stops cleanly afterwards.

Before the loops were supervised, about one run in thirteen of this stalled: an
InternalClientError killed the acknowledgement loop while claiming went on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.errors import DatabaseUnavailableError
from taskq.worker.session import APPLICATION_NAME
from tests.conftest import MakeQueue
from tests.integration.test_crash_safety import REPO, RUNS_TABLE, wait_all_succeeded

KILL_SECONDS = 30.0
KILL_EVERY = 0.5
RATE = 300  # tasks per second


async def _produce(client: Client, queue: str, until: float) -> list[int]:
    ids: list[int] = []
    batch = RATE // 10
    while time.monotonic() < until:
        results = await client.enqueue_many(queue, [TaskRequest("record", {})] * batch)
        ids += [r.id for r in results]
        await asyncio.sleep(0.1)
    return ids


async def _kill_backends(pool: asyncpg.Pool, until: float) -> int:
    killed = 0
    while time.monotonic() < until:
        await asyncio.sleep(KILL_EVERY)
        killed += await pool.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1) k",
            APPLICATION_NAME,
        )
    return killed


async def test_a_worker_whose_backends_are_killed_loses_and_repeats_nothing(
    dsn: str, pool: asyncpg.Pool, client: Client, make_queue: MakeQueue, tmp_path: Path
) -> None:
    queue = await make_queue()
    await pool.execute(RUNS_TABLE)
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TASKQ_DSN": dsn,
        "TASKQ_QUEUES": queue.full_name,
        "TASKQ_APP": "tests.integration.apps.recording",
        "TASKQ_CONCURRENCY": "32",
        "TASKQ_METRICS_PORT": "0",
        "TASKQ_LOG_LEVEL": "INFO",
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
            [sys.executable, "-m", "taskq.cli.main", "worker"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        until = time.monotonic() + KILL_SECONDS
        ids, killed = await asyncio.gather(
            _produce(client, queue.full_name, until), _kill_backends(pool, until)
        )
        try:
            await wait_all_succeeded(dsn, ids, timeout=60)
        except AssertionError:
            states = await pool.fetch(
                "SELECT state, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) GROUP BY state",
                ids)
            tail = log_path.read_text().splitlines()[-40:]
            raise AssertionError(f"{[dict(r) for r in states]}\n" + "\n".join(tail)) from None
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            status = worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            status = worker.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [f"{line['level']} {line['msg']}" for line in lines]
    assert status == 0, "\n".join(messages[-30:])
    assert killed >= 30, "the worker's backends were hardly killed"

    states = await pool.fetch(
        "SELECT state, count(*) AS n FROM taskq.tasks WHERE id = ANY($1) GROUP BY state", ids)
    assert {row["state"]: row["n"] for row in states} == {"succeeded": len(ids)}
    runs = await pool.fetchval(
        "SELECT count(*) FROM taskq_test_runs WHERE task_id = ANY($1)", ids)
    lost = await pool.fetchval(
        "SELECT count(*) FROM taskq.attempts WHERE task_id = ANY($1) AND outcome = 'lost'", ids)
    assert (runs, lost) == (len(ids), 0)
    # every failure was recognised as the database's: none logged as unexpected
    assert not [m for m in messages if "unexpected" in m], messages


async def test_a_producer_whose_backend_was_killed_gets_a_retryable_error(
    dsn: str, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    """Right after its backend is killed, a pooled connection's next query fails in one of
    several asyncpg classes (InternalClientError among them): the producer always sees the
    documented DatabaseUnavailableError, and the next call works on a fresh connection."""
    queue = await make_queue()
    producer_pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=1, server_settings={"application_name": "taskq test producer"}
    )
    assert producer_pool is not None
    producer = Client(producer_pool)
    failures: set[str] = set()
    try:
        for _ in range(20):
            await producer.enqueue(queue.full_name, "record", {})  # the connection is live
            await pool.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'taskq test producer'")
            try:
                await producer.enqueue(queue.full_name, "record", {})
            except DatabaseUnavailableError as error:
                failures.add(str(error).split(":")[0])
    finally:
        await producer_pool.close()
    assert failures  # the kill was noticed, and only ever as DatabaseUnavailableError
