"""Real `taskq worker` processes stopped with SIGTERM, again and again, in each mode (LISTEN on
and off, idle and busy): each exits within its bound (`shutdown_bound`) with status 0 and holds
no task afterwards. A LISTEN-off worker once hung after SIGTERM (issue 16, item 2); a handler
deaf to cancellation must not hold the process either."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from taskq import TaskRequest
from taskq.client import Client
from taskq.worker.loop import shutdown_bound
from taskq.worker.main import EXIT_MARGIN
from taskq.worker.settings import WorkerSettings
from tests.conftest import MakeQueue
from tests.integration.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 5
ENV = {
    "TASKQ_APP": "tests.integration.apps.sleeping",
    "TASKQ_CONCURRENCY": "4",
    "TASKQ_BATCH_SIZE": "10",
    "TASKQ_LEASE_SECONDS": "6",
    "TASKQ_DB_TIMEOUT": "1",
    "TASKQ_SHUTDOWN_GRACE": "1",
    "TASKQ_POLL_INTERVAL": "0.2",
    "TASKQ_METRICS_PORT": "0",
    "TASKQ_LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Mode:
    listen: bool
    busy: bool
    stubborn: bool = False

    def __str__(self) -> str:
        return (f"LISTEN {'on' if self.listen else 'off'}, {'busy' if self.busy else 'idle'}"
                + (", a handler deaf to cancellation" if self.stubborn else ""))


async def _held_by(pool: asyncpg.Pool, queue_id: int, pid: int) -> int:
    """Tasks of the queue running under the worker process `pid` (ids are host:pid:nonce)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1 AND state = 'running' "
        "AND worker_id LIKE $2", queue_id, f"%:{pid}:%")
    return count


async def _beating(pool: asyncpg.Pool, pid: int) -> bool:
    found: bool = await pool.fetchval(
        "SELECT EXISTS (SELECT FROM taskq.workers WHERE worker_id LIKE $1)", f"%:{pid}:%")
    return found


async def _rounds(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue, mode: Mode, rounds: int
) -> list[str]:
    """Start, wait until idle or busy, SIGTERM, check the exit; returns what went wrong."""
    queue = await make_queue()
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "TASKQ_DSN": dsn,
           "TASKQ_QUEUES": queue.full_name, "TASKQ_LISTEN": str(mode.listen).lower()}
    settings = WorkerSettings.model_validate({
        **{k.removeprefix("TASKQ_").lower(): v for k, v in ENV.items()},
        "dsn": dsn, "queues": [queue.full_name], "listen": mode.listen})
    # a handler deaf to cancellation holds asyncio's teardown: the exit deadline ends it
    bound = shutdown_bound(settings) + (EXIT_MARGIN if mode.stubborn else 0)
    problems = []
    for n in range(rounds):
        if mode.stubborn:
            await client.enqueue(queue.full_name, "stubborn", {})
        if mode.busy:  # some finish within the grace, two are given back when it ends
            await client.enqueue_many(queue.full_name, [
                *(TaskRequest("sleep", {"seconds": 0.3}) for _ in range(20)),
                *(TaskRequest("sleep", {"seconds": 60}) for _ in range(2)),
            ])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskq.cli.main", "worker", env=env, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        pid = process.pid
        try:
            if mode.busy or mode.stubborn:
                await wait_for(lambda: _held_by(pool, queue.id, pid), lambda c: c > 0,  # noqa: B023
                               limit=30, what=f"worker {pid} to run tasks")
            else:
                await wait_for(lambda: _beating(pool, pid), bool, limit=30,  # noqa: B023
                               what=f"worker {pid} to start")
                await asyncio.sleep(0.5)  # its first claims came back empty: idle
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            try:
                status = await asyncio.wait_for(process.wait(), bound + 30)
            except TimeoutError:
                problems.append(f"{mode} #{n}: still running {bound + 30:.0f}s after SIGTERM")
                continue
            took = time.monotonic() - sent
            assert process.stderr is not None
            log = (await process.stderr.read()).decode(errors="replace")[-2000:]
            if status != 0 or took > bound:
                problems.append(f"{mode} #{n}: status {status} after {took:.1f}s "
                                f"(bound {bound:.0f}s); log: {log}")
            held = await _held_by(pool, queue.id, pid)
            if held:
                problems.append(f"{mode} #{n}: {held} tasks still held after its exit")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return problems


async def test_sigterm_ends_every_worker_within_its_bound(
    dsn: str, client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    modes = [Mode(listen, busy) for listen in (True, False) for busy in (False, True)]
    results = await asyncio.gather(
        *(_rounds(dsn, client, pool, make_queue, mode, ROUNDS) for mode in modes),
        _rounds(dsn, client, pool, make_queue, Mode(listen=False, busy=False, stubborn=True), 2),
    )
    problems = [p for result in results for p in result]
    assert not problems, "\n".join(problems)
