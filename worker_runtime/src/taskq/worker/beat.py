"""This process's sign of life: a beat every second from a thread of its own.

A worker whose beats stop for DEAD_AFTER seconds is dead, and whichever worker's beat takes the
period's rescue turn gives its running tasks back at once (taskq.rescue_dead_workers), rather
than after their lease. The beat runs on its own thread, event loop and connection so that a
handler blocking the worker's event loop (sync code in an async handler) does not make a live
worker look dead; a process that is really gone stops beating with it.

Every Beat of a process shares that one thread and loop (each still has its own connection
and row). A replica runs one worker, but a process running many (the scale benchmark's 250)
had as many beat threads, and each socket call of the workers' loop then waited for the GIL
behind them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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


class _BeatLoop:
    """The process's beat thread and its event loop, started on first use (and again in a
    forked child, where the parent's thread does not exist)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._thread is None or not cls._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="taskq-beat", daemon=True)
                thread.start()
                cls._loop, cls._thread = loop, thread
            return cls._loop


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
        self._running: concurrent.futures.Future[None] | None = None
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
        self._running = asyncio.run_coroutine_threadsafe(self._run(), _BeatLoop.get())
        self._started.wait()

    def stop(self, timeout: float) -> None:
        """Stop beating and delete this worker's row (it stopped cleanly)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._running is not None:
            try:
                self._running.result(timeout)
            except TimeoutError:
                log.warning("the beat did not stop within %.0f s", timeout)
            except Exception:
                log.exception("the beat ended with an error")

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
