"""LISTEN for wake-ups on a dedicated connection, reconnecting with backoff.

Notifications are hints only: the claim loop also polls, so a lost notification or a
connection behind PgBouncer's transaction pooling (no LISTEN) costs latency, never tasks.

A taskq_ready payload is "<queue id>" (a wake-up) or "<queue id> <priority> <run_at>": tasks
became ready, none before that point in claim order (run_at in microseconds since the epoch),
so a worker's claims resume no later than there (taskq.notify_ready).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from taskq.backoff import Backoff
from taskq.claim_order import ResumePoint
from taskq.store.dberrors import describe_error, is_database_error
from taskq.store.pool_mode import connect_settings
from taskq.store.types import Connection

log = logging.getLogger("taskq.notifications")

READY_CHANNEL = "taskq_ready"
CANCEL_CHANNEL = "taskq_cancel"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_ready(payload: str) -> tuple[int, ResumePoint | None] | None:
    """(queue id, the point made ready or None) of a taskq_ready payload; None if it is not
    one."""
    parts = payload.split(" ")
    if not all(part.isdigit() for part in parts) or len(parts) not in (1, 3):
        return None
    if len(parts) == 1:
        return int(parts[0]), None
    since = EPOCH + timedelta(microseconds=int(parts[2]))
    return int(parts[0]), ResumePoint(int(parts[1]), since)


class Listener:
    def __init__(
        self,
        dsn: str,
        on_ready: Callable[[int, ResumePoint | None], None],
        on_cancel: Callable[[int], None],
        *,
        on_listening: Callable[[bool], None] = lambda _listening: None,
        application_name: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._settings = connect_settings(
            {"application_name": application_name} if application_name else None)
        self._on_ready = on_ready
        self._on_cancel = on_cancel
        self._on_listening = on_listening
        self._lost = asyncio.Event()

    def _ready(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        parsed = parse_ready(payload) if isinstance(payload, str) else None
        if parsed is not None:
            self._on_ready(*parsed)

    def _cancel(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        if isinstance(payload, str) and payload.isdigit():
            self._on_cancel(int(payload))

    async def run(self) -> None:
        # a killed backend is replaced at once (notifications sent meanwhile are missed, and
        # tasks wait for the poll); an unreachable server is retried less and less often
        backoff = Backoff(cap=5.0)
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings=self._settings
                )
                self._lost.clear()
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(READY_CHANNEL, self._ready)
                await conn.add_listener(CANCEL_CHANNEL, self._cancel)
                backoff.reset()
                # Something may have become ready while we were not listening.
                self._on_listening(True)
                self._on_ready(-1, None)
                # A half-open TCP connection never reports its loss: probe it now and then.
                while not self._lost.is_set():
                    try:
                        await asyncio.wait_for(self._lost.wait(), 30)
                    except TimeoutError:
                        await conn.execute("SELECT 1", timeout=10)
                log.warning("listen connection lost; polling until it is back")
            except Exception as error:
                if is_database_error(error):
                    log.warning(
                        "listen connection failed (%s); retrying with backoff",
                        describe_error(error),
                    )
                else:
                    log.exception("listen connection crashed; retrying with backoff")
            finally:
                self._on_listening(False)
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff.next_delay())
