"""`taskq worker`: the process a worker pod runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

import asyncpg

from taskq import tracing
from taskq.client import create_pool, no_session_reset
from taskq.maintenance.runner import MaintenanceRunner
from taskq.store.pool_mode import PoolMode
from taskq.store.webhooks import webhook_queue
from taskq.store.worker_store import WorkerStore
from taskq.webhooks import WEBHOOK_QUEUE
from taskq.worker.app import load_registry
from taskq.worker.http import HealthServer
from taskq.worker.logs import setup_logging
from taskq.worker.loop import Worker, shutdown_bound
from taskq.worker.metrics import WorkerMetrics
from taskq.worker.session import worker_session
from taskq.worker.settings import WorkerSettings, new_worker_id
from taskq.worker.stopping import ExitDeadline
from taskq.worker.webhook import webhook_registry

log = logging.getLogger("taskq.worker")

# After the worker itself stopped: time for the pool, asyncio's teardown and the interpreter's
# exit (it joins handler threads, which a sync handler that never returns would hold for ever).
EXIT_MARGIN = 5.0  # seconds
# The last spans' flush takes part of that margin, so the exit stays within it.
TRACES_FLUSH_SECONDS = 2.0


# A worker allocates a few dozen short-lived objects per task. At CPython's default threshold
# (a young-generation collection every 700 allocations) the cyclic collector took about 7 us
# per task, a quarter of the worker's CPU at full speed. Reference counting still frees
# acyclic garbage at once; only cycles wait for the (rarer) collections.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """For the worker process, once its app is loaded: keep startup objects (modules, the
    app) out of collections, and collect young objects less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def worker_pool(
    dsn: str,
    deadline: float = 10.0,
    pool_mode: PoolMode = "session",
    webhooks: bool = False,
    size: int = 4,
) -> asyncpg.Pool:
    """The worker's pool: claim, ack, heartbeat and maintenance each hold at most one
    connection at a time (and, with webhooks, the delivery worker's claim, ack, heartbeat and
    endpoint look-up). The server ends a statement that outlives the worker's deadline
    (WorkerSettings.db_deadline; 10 s is its value for the default lease) itself too, in case
    the worker's cancel request never reaches it (not through transaction pooling: see
    worker_session)."""
    return await create_pool(
        dsn,
        min_size=2,
        max_size=2 * size if webhooks else size,
        server_settings=worker_session(pool_mode, deadline),
        reset=no_session_reset,
        pool_mode=pool_mode,
    )


async def webhook_worker(
    pool: asyncpg.Pool, settings: WorkerSettings, main: Worker, metrics: WorkerMetrics
) -> tuple[Worker, Callable[[], Awaitable[None]]]:
    """A second worker in the process, serving the delivery queue with the built-in handler
    in slots of its own (TASKQ_WEBHOOK_CONCURRENCY): deliveries to a slow receiver never hold
    the slots of the process's own queues. It runs no maintenance and no beat: the main
    worker does both, and its beat names the delivery queue too.
    Returns it and what closes its HTTP client."""
    async with pool.acquire() as conn:
        await webhook_queue(conn)  # made again if someone dropped it
    registry, sender = webhook_registry(pool, settings.db_deadline)
    hooks_settings = settings.model_copy(
        update={
            "queues": [WEBHOOK_QUEUE],
            "concurrency": settings.webhook_concurrency,
            "batch_size": settings.webhook_concurrency,
        }
    )
    worker = Worker(
        pool,
        registry,
        hooks_settings,
        # the process's worker id and beat: one row of taskq.workers per process, and a
        # process that dies has all its tasks rescued at once (release_orphans is per queue,
        # so the two workers never give back each other's tasks)
        main.worker_id,
        metrics,
        maintenance=MaintenanceRunner(WorkerStore(pool, settings.db_deadline), [], metrics),
        beat_with=main,
    )
    return worker, sender.aclose


async def _run_both(worker: Worker, hooks: Worker, stop: asyncio.Event) -> None:
    """The process's worker and its delivery worker stop together: when signalled, when
    either ends (a failure stops the other gracefully), and the failure is then raised (the
    main worker's first). An unknown queue of the main worker stops the process before the
    delivery worker starts."""
    await worker.resolve_queues()
    delivering = asyncio.create_task(hooks.run(stop))
    delivering.add_done_callback(lambda _: stop.set())
    try:
        await worker.run(stop)
    finally:
        stop.set()
        await asyncio.wait([delivering])
    delivering.result()


async def run_worker(settings: WorkerSettings, exit_deadline: ExitDeadline | None = None) -> None:
    """Run a worker until SIGTERM or SIGINT. With `exit_deadline` (the `taskq worker` process),
    the process ends by `shutdown_bound` after the signal, and soon after the worker stopped,
    whatever is left running."""
    setup_logging(settings.log_level)
    tracing.configure_from_env("taskq-worker")
    registry = load_registry(settings.app)
    tune_gc()
    pool = await worker_pool(
        settings.dsn.get_secret_value(),
        settings.db_deadline,
        settings.db_pool_mode,
        settings.webhooks,
        settings.db_pool_size,
    )
    metrics = WorkerMetrics()
    metrics.db_connections = lambda: (pool.get_size() - pool.get_idle_size(), pool.get_idle_size())
    worker_id = new_worker_id(settings.pod_uid)
    worker = Worker(pool, registry, settings, worker_id, metrics)
    hooks: Worker | None = None
    close_hooks: Callable[[], Awaitable[None]] | None = None
    if settings.webhooks:
        hooks, close_hooks = await webhook_worker(pool, settings, worker, metrics)
    if hooks is not None:
        main, delivering = worker, hooks
        metrics.in_flight = lambda: len(main.attempts) + len(delivering.attempts)
        metrics.outcomes_pending = lambda: len(main.unrecorded_outcomes()) + len(
            delivering.unrecorded_outcomes()
        )
    stop = asyncio.Event()

    # the two workers stop side by side, so the process's bound is the longer of theirs
    stopping = [worker] if hooks is None else [worker, hooks]

    def on_signal() -> None:
        stop.set()
        if exit_deadline is not None:
            bound = max(shutdown_bound(w.settings) for w in stopping) + EXIT_MARGIN
            exit_deadline.arm(bound, 1, "the signal to stop")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    server = HealthServer(metrics.registry, worker.health_problem, worker.is_ready)
    status = 1
    try:
        if settings.metrics_port:
            port = await server.start(settings.metrics_host, settings.metrics_port)
            log.info("serving /metrics, /healthz, /readyz on %s:%d", settings.metrics_host, port)
        if hooks is None:
            await worker.run(stop)
        else:
            await _run_both(worker, hooks, stop)
        status = 0
    finally:
        if exit_deadline is not None:
            # what follows may wait on what the worker left behind: bounded, with its status
            exit_deadline.arm(EXIT_MARGIN, status, "the worker stopped")
        await server.stop()
        if close_hooks is not None:
            await close_hooks()
        await close_pool(pool, settings.db_deadline)
        # the last spans, within a bound: an unreachable collector must not hold the exit
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(tracing.shutdown), TRACES_FLUSH_SECONDS)


async def close_pool(pool: asyncpg.Pool, seconds: float) -> None:
    """Close gracefully if every connection comes back in time, else drop them (asyncpg's
    close waits for each connection to be released, without limit)."""
    try:
        await asyncio.wait_for(pool.close(), seconds)
    except TimeoutError:
        log.warning("the pool did not close within %.0fs; dropping its connections", seconds)
        pool.terminate()
