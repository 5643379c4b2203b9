"""Helpers of the API tests: keys in headers and metadata, problem documents and gRPC
statuses, the rows a queue holds."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import httpx
import pytest

from taskq import auth
from taskq.models import QueueInfo
from taskq.store import keys as key_store


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def grpc_key(secret: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the key, as gRPC clients send it."""
    return (("authorization", f"Bearer {secret}"),)


def grpc_refusal(raised: pytest.ExceptionInfo[grpc.aio.AioRpcError], code: grpc.StatusCode) -> str:
    """The call ended with this status code, and details without a stack trace; returns them."""
    error = raised.value
    assert error.code() == code, (error.code(), error.details())
    details = error.details() or ""
    assert details
    assert "Traceback" not in details
    assert 'File "' not in details
    return details


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status, and no stack trace anywhere."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    return body


def queue_path(queue: QueueInfo, suffix: str = "") -> str:
    return f"/v1/queues/{queue.namespace}/{queue.name}{suffix}"


async def stored_tasks(pool: asyncpg.Pool, queue: QueueInfo) -> list[dict[str, Any]]:
    """Every task of the queue as the database holds it, oldest first: what the API wrote."""
    rows = await pool.fetch(
        "SELECT id, task_name, payload::text AS payload, priority, idempotency_key, "
        "correlation_id, max_attempts, timeout_s, state FROM taskq.tasks "
        "WHERE queue_id = $1 ORDER BY id",
        queue.id,
    )
    return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]


async def unusable_credentials(
    kind: str, make_key: Callable[..., Awaitable[str]], pool: asyncpg.Pool, namespace: str
) -> str:
    """A credential that must be refused, as an Authorization header's value (REST) or the
    `authorization` metadata's (gRPC): `kind` is unknown, malformed, basic, tampered, revoked
    or expired."""
    if kind == "unknown":
        return f"Bearer {auth.new_key().secret}"  # well formed, never stored
    if kind == "malformed":
        return "Bearer tq_' OR 1=1 --"
    if kind == "basic":
        return "Basic dXNlcjpwYXNz"
    secret = await make_key("admin", [namespace])
    prefix = auth.parse_prefix(secret)
    if kind == "tampered":
        return f"Bearer {secret[:-2]}{'AB' if secret[-2:] != 'AB' else 'CD'}"
    name = await pool.fetchval("SELECT name FROM taskq.api_keys WHERE prefix = $1", prefix)
    if kind == "revoked":
        await key_store.revoke_key(pool, name)
    else:  # expired: a microsecond after it was made
        await pool.execute("UPDATE taskq.api_keys SET expires_at = created_at + "
                           "interval '1 microsecond' WHERE name = $1", name)
    return f"Bearer {secret}"
