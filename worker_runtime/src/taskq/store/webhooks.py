"""Webhooks in PostgreSQL (taskq.webhooks, migration 0020): a queue's endpoints, the
Dispatcher's scan (taskq.dispatch_webhooks) and what a delivery reads of its endpoint.

Every call translates database errors (store/dberrors.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from taskq.names import QueueName, check_label
from taskq.store.dberrors import translated
from taskq.store.maintenance import MaintainedQueue
from taskq.store.sqlfiles import query
from taskq.store.types import Executor
from taskq.webhooks import Event, WebhookSpec


@dataclass(frozen=True)
class WebhookInfo:
    namespace: str
    queue: str
    name: str
    spec: WebhookSpec
    declared_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def full_queue(self) -> str:
        return f"{self.namespace}/{self.queue}"


@dataclass(frozen=True)
class DeliveryTarget:
    """A delivery's endpoint as it is now: url None means the task's callback URL."""

    url: str | None
    secret: str
    allow_hosts: tuple[str, ...]


def _info(row: asyncpg.Record) -> WebhookInfo:
    spec = WebhookSpec(
        url=row["url"],
        secret=row["secret"],
        events=tuple(Event.parse(e) for e in row["events"]),
        allow_hosts=tuple(row["allow_hosts"]),
    )
    return WebhookInfo(
        namespace=row["namespace"],
        queue=row["queue"],
        name=row["name"],
        spec=spec,
        declared_by=row["declared_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def put_webhook(
    db: Executor, queue: QueueName, name: str, spec: WebhookSpec, declared_by: str | None = None
) -> WebhookInfo:
    """Create or update the queue's endpoint `name`."""
    check_label(name, "webhook name")
    with translated(str(queue)):
        row = await db.fetchrow(
            query("put_webhook"),
            queue.namespace,
            queue.name,
            name,
            spec.url,
            [e.state for e in spec.events],
            spec.secret,
            list(spec.allow_hosts),
            declared_by,
        )
    assert row is not None  # an upsert returns its row
    return _info(row)


async def get_webhook(db: Executor, queue: QueueName, name: str) -> WebhookInfo | None:
    with translated():
        row = await db.fetchrow(query("get_webhook"), queue.namespace, queue.name, name)
    return None if row is None else _info(row)


async def list_webhooks(
    db: Executor, namespace: str | None = None, queue: str | None = None
) -> list[WebhookInfo]:
    with translated():
        rows = await db.fetch(query("list_webhooks"), namespace, queue)
    return [_info(row) for row in rows]


async def delete_webhook(db: Executor, queue: QueueName, name: str) -> bool:
    with translated():
        deleted = await db.fetchval(query("delete_webhook"), queue.namespace, queue.name, name)
    return deleted is not None


async def delete_declared_webhooks(
    db: Executor, declared_by: str, queue: QueueName, keep: list[str]
) -> list[str]:
    """The webhooks `declared_by` made on the queue, but those in `keep`, are deleted;
    returns their names."""
    with translated():
        rows = await db.fetch(
            query("delete_declared_webhooks"), declared_by, queue.namespace, queue.name, keep
        )
    return [row["name"] for row in rows]


async def delivery_target(
    db: Executor, namespace: str, queue: str, endpoint: str | None
) -> DeliveryTarget | None:
    """The endpoint `endpoint` of the queue, or with None its signer of callbacks."""
    with translated():
        row = await db.fetchrow(query("delivery_webhook"), namespace, queue, endpoint)
    if row is None:
        return None
    return DeliveryTarget(row["url"], row["secret"], tuple(row["allow_hosts"]))


async def webhook_queue(db: Executor) -> int:
    """The delivery queue's id; made, with its own settings, when missing."""
    with translated():
        queue_id: int = await db.fetchval(query("webhook_queue"))
    return queue_id


async def webhook_queues(db: Executor) -> list[MaintainedQueue]:
    """The queues the Dispatcher has work in (endpoints, or ever a callback URL)."""
    rows = await db.fetch(query("webhook_queues"))
    return [MaintainedQueue(row["id"], row["name"]) for row in rows]


async def dispatch_webhooks(db: Executor, queue_id: int, overlap_s: float, limit: int) -> int:
    """One queue's new notifications become delivery tasks; returns how many."""
    dispatched: int = await db.fetchval(query("dispatch_webhooks"), queue_id, overlap_s, limit)
    return dispatched
