"""`make demo-queue`: the queue core end to end on a local PostgreSQL (no Kubernetes).

Starts PostgreSQL (state in .state/demo-postgres, reused across runs), installs the schema,
provisions a queue, enqueues a few thousand tasks (some delayed, some doomed to fail), runs a
real `taskq worker` process configured only through the pod's environment contract, prints
the queue draining, stops the worker with SIGTERM, and shows the dead letters and a task's
tries history.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devenv.postgres import LocalPostgres, free_port

from taskq import BackoffPolicy, QueueSettings, TaskRequest
from taskq.client import Client, connect

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state" / "demo-postgres"
QUEUE = "demo/thumbnails"
TASKS = 5000


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def start_postgres() -> LocalPostgres:
    port_file = STATE.parent / "demo-postgres.port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    server = LocalPostgres(STATE / "data", port)
    if os.geteuid() == 0 and not STATE.exists():
        # as root the server runs as `postgres`, which must own its directory
        fresh = LocalPostgres.temporary()
        STATE.parent.mkdir(parents=True, exist_ok=True)
        fresh.datadir.parent.rename(STATE)
    server.start()
    port_file.write_text(str(port))
    return server


async def enqueue(client: Client) -> None:
    settings = QueueSettings(
        max_attempts=3, backoff=BackoffPolicy(kind="exponential", base_seconds=0.2, jitter=0.1)
    )
    await client.ensure_queue(QUEUE, settings)
    requests = [
        TaskRequest("make_thumbnail", {"image": f"photo-{n}.png", "size": 128})
        for n in range(TASKS)
    ]
    requests += [TaskRequest("make_thumbnail", {"image": f"scan-{n}.corrupt"}) for n in range(3)]
    requests += [TaskRequest("make_thumbnail", {"image": "late.png"}, delay=2) for _ in range(20)]
    requests += [TaskRequest("send_report", {"to": "ops@example.com"}, priority="urgent")]
    started = time.perf_counter()
    await client.enqueue_many(QUEUE, requests)
    say(
        f"enqueued {len(requests)} tasks in one transaction "
        f"({len(requests) / (time.perf_counter() - started):,.0f} tasks/s): "
        f"{TASKS} thumbnails, 3 corrupt images, 20 delayed by 2 s, 1 urgent report"
    )


def start_worker(dsn: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TASKQ_DSN": dsn,
        "TASKQ_QUEUES": QUEUE,
        "TASKQ_APP": "examples.thumbnails",
        "TASKQ_CONCURRENCY": "100",
        "TASKQ_METRICS_PORT": "0",
        "TASKQ_LOG_LEVEL": "WARNING",
    }
    say(
        "starting: taskq worker  (TASKQ_QUEUES=demo/thumbnails TASKQ_APP=examples.thumbnails "
        "TASKQ_CONCURRENCY=100)"
    )
    return subprocess.Popen([sys.executable, "-m", "taskq.cli.main", "worker"], env=env, cwd=REPO)


async def watch(client: Client) -> None:
    while True:
        stats = await client.queue_stats(QUEUE)
        say(
            f"ready {stats.ready:>5}  scheduled {stats.scheduled:>3}  running {stats.running:>3}  "
            f"succeeded (last min) {stats.succeeded_last_minute:>5}  dead {stats.dead}"
        )
        if stats.ready == stats.scheduled == stats.running == 0:
            return
        await asyncio.sleep(0.5)


async def report(client: Client) -> None:
    dead = await client.list_dead(QUEUE)
    say(f"dead letters ({len(dead)}): out of attempts, kept for inspection and replay")
    for task in dead:
        say(f"  task {task.id} {task.payload}: {task.error['type']}: {task.error['message']}")
    if dead:
        history = await client.task_attempts(dead[0].id)
        say(f"tries history of task {dead[0].id}:")
        for attempt in history:
            say(f"  attempt {attempt.attempt} on {attempt.worker_id}: {attempt.outcome}")
    say("replay them once fixed:  taskq dead replay demo/thumbnails --all")


async def main() -> None:
    server = start_postgres()
    say(f"PostgreSQL on 127.0.0.1:{server.port} (data in {STATE.relative_to(REPO)})")
    async with await connect(server.dsn) as client:
        applied = await client.migrate()
        say(f"schema: {', '.join(applied) if applied else 'up to date'}")
        await client.drop_queue(QUEUE)
        await enqueue(client)
        worker = start_worker(server.dsn)
        try:
            await watch(client)
        finally:
            worker.send_signal(signal.SIGTERM)
            say(f"SIGTERM sent; worker exited with {worker.wait(30)} after a graceful stop")
        await report(client)
    say(f"done. PostgreSQL keeps running for you: TASKQ_DSN={server.dsn}")


if __name__ == "__main__":
    asyncio.run(main())
