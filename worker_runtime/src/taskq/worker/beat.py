"""This process's sign of life: a beat every second from a thread of its own.

A worker whose beats stop for DEAD_AFTER seconds is dead, and whichever worker's beat takes the
period's rescue turn gives its running tasks back at once (taskq.rescue_dead_workers), rather
than after their lease. The beat runs on its own thread, event loop and connection so that a
handler blocking the worker's event loop (sync code in an async handler) does not make a live
worker look dead; a process that is really gone stops beating with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import asyncpg

from taskq.backoff import Outage
from taskq.store import execution as store
from taskq.store.codecs import learn_types
from taskq.store.dberrors import describe_error, is_database_error
from taskq.store.pool_mode import PoolMode, connect_settings, statement_cache_size
from taskq.worker.session import worker_session

log = logging.getLogger("taskq.worker")

BEAT_INTERVAL = 1.0  # seconds
# Three missed beats: a pause shorter than about two seconds (a GC pause, a SIGSTOP, a
# stalled VM) keeps a worker's tasks; a death is noticed within DEAD_AFTER + RESCUE_EVERY.
DEAD_AFTER = 3.0
RESCUE_EVERY = 1.0  # seconds between rescues of dead workers' tasks, across all workers


class Beat:
    def __init__(
        self,
        dsn: str,
        worker_id: str,
        deadline: float,
        pool_mode: PoolMode,
        on_rescued: Callable[[int], None],
        queue_ids: Callable[[], Sequence[int]],
        on_gone: Callable[[], None] = lambda: None,
    ) -> None:
        self._dsn = dsn
        self._queue_ids = queue_ids
        self._on_rescued = on_rescued
        # called from the beat's thread when a queue it named no longer exists
        self._on_gone = on_gone
        self._worker_id = worker_id
        self._deadline = deadline
        self._pool_mode = pool_mode
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.last_ok_at = 0.0  # monotonic
        # when the last recorded beat began, so read the queue ids it recorded (monotonic)
        self.covered_at = 0.0
        # workers polling the least served of this worker's queues, as the last beat heard
        # (None: not counted yet); read by the claim loop's thread, replaced whole here
        self.pollers: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="taskq-beat", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float) -> None:
        """Stop beating and delete this worker's row (it stopped cleanly)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=self._deadline,
            server_settings=connect_settings(worker_session(self._pool_mode)),
            statement_cache_size=statement_cache_size(self._pool_mode),
        )
        if self._pool_mode == "transaction":
            # its beat sends the queue ids (integer[]): looked up in a transaction of its own
            await learn_types(conn)
        return conn

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        outage = Outage("worker beat", log, is_database_error, describe_error)
        conn: asyncpg.Connection | None = None
        delay = 0.0
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                break
            except TimeoutError:
                pass
            started = time.monotonic()
            try:
                if conn is None or conn.is_closed():
                    conn = await self._connect()
                beaten = await asyncio.wait_for(
                    store.worker_beat(
                        conn,
                        self._worker_id,
                        DEAD_AFTER,
                        RESCUE_EVERY,
                        self._queue_ids(),
                        BEAT_INTERVAL,
                    ),
                    self._deadline,
                )
            except Exception as error:
                if conn is not None:
                    conn.terminate()
                    conn = None
                delay = min(BEAT_INTERVAL, outage.failed(error))
                continue
            outage.succeeded()
            self.last_ok_at = time.monotonic()
            self.covered_at = started
            self.pollers = beaten.pollers
            if beaten.gone_queue_ids:
                self._on_gone()
            if beaten.rescued:
                self._on_rescued(beaten.rescued)
                log.warning("gave back %d tasks of workers that stopped beating", beaten.rescued)
            delay = max(0.0, BEAT_INTERVAL - (time.monotonic() - started))
        await self._gone(conn)

    async def _gone(self, conn: asyncpg.Connection | None) -> None:
        try:
            if conn is None or conn.is_closed():
                conn = await self._connect()
            await asyncio.wait_for(store.worker_gone(conn, self._worker_id), self._deadline)
        except Exception as error:
            # harmless: the row is deleted by the next rescue once it stops beating
            log.warning("could not unregister this worker: %s", describe_error(error))
        finally:
            if conn is not None:
                conn.terminate()
