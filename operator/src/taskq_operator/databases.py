"""The operator's side of the queue store: one client per database, the schema migrated once
per database, and wake-ups when tasks become ready in a queue a pool serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from taskq.client import Client, create_pool
from taskq.store.notifications import Listener

log = logging.getLogger("taskq_operator.databases")

Wake = Callable[[], None]


class Databases:
    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._subscribers: dict[tuple[str, int], dict[object, Wake]] = {}

    async def client(self, dsn: str) -> Client:
        """A client of the database (schema migrated); DatabaseUnavailableError if it cannot
        be reached."""
        existing = self._clients.get(dsn)
        if existing is not None:
            return existing
        async with self._locks.setdefault(dsn, asyncio.Lock()):
            if dsn not in self._clients:
                client = Client(await create_pool(dsn, min_size=1, max_size=4), owns_pool=True)
                try:
                    applied = await client.migrate()
                except BaseException:
                    await client.close()
                    raise
                if applied:
                    log.info("migrated a database: %s", ", ".join(applied))
                self._clients[dsn] = client
                self._listeners[dsn] = asyncio.create_task(
                    Listener(
                        dsn,
                        lambda queue_id, d=dsn: self._notify(d, queue_id),  # type: ignore[misc]
                        lambda _task_id: None,
                    ).run(),
                    name="taskq-operator-listen",
                )
            return self._clients[dsn]

    def subscribe(self, dsn: str, queue_id: int, key: object, wake: Wake) -> None:
        """Call `wake` when tasks become ready in the queue (a hint: also poll)."""
        self._subscribers.setdefault((dsn, queue_id), {})[key] = wake

    def unsubscribe(self, key: object) -> None:
        for subscribers in self._subscribers.values():
            subscribers.pop(key, None)

    def _notify(self, dsn: str, queue_id: int) -> None:
        targets = (
            [w for (d, _), subs in self._subscribers.items() if d == dsn for w in subs.values()]
            if queue_id < 0  # the listener (re)connected: anything may have changed
            else list(self._subscribers.get((dsn, queue_id), {}).values())
        )
        for wake in targets:
            wake()

    async def close(self) -> None:
        for task in self._listeners.values():
            task.cancel()
        await asyncio.gather(*self._listeners.values(), return_exceptions=True)
        for client in self._clients.values():
            await client.close()
