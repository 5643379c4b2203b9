"""The API server, started for real inside the test session: uvicorn on 127.0.0.1 and a free
port, over the session's PostgreSQL (tests/conftest.py), spoken to with httpx over a socket.

- ``api_url`` (session): the server's base URL.
- ``http`` (function): an httpx.AsyncClient on it, without a key.
- ``make_key`` (function): `await make_key("operator", ["t3"])` makes a real key in the
  database (taskq.store.keys) and returns its secret.
- ``openapi`` (session): the server's own /openapi.json, to validate responses against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from taskq.auth import Role
from taskq.store import keys as key_store
from taskq_api.rest import ApiMetrics
from taskq_api.server.main import build_app, uvicorn_config
from taskq_api.server.settings import ApiSettings
from tests.api.openapi import OpenApiChecker

# A small limit, so that "too large" tests send little; batches of 10,000 tiny tasks fit.
MAX_BODY_BYTES = 1024 * 1024
MAX_WAIT_SECONDS = 5.0

_key_numbers = itertools.count(1)

MakeKey = Callable[..., Awaitable[str]]


class RunningApi:
    def __init__(self, url: str, metrics: ApiMetrics) -> None:
        self.url = url
        self.metrics = metrics


@contextlib.asynccontextmanager
async def running_api(dsn: str, **settings: Any) -> AsyncIterator[RunningApi]:
    """The real server (uvicorn, the app as `taskq api` builds it) on 127.0.0.1 and a free
    port in this event loop, until the block ends."""
    options: dict[str, Any] = {
        "max_body_bytes": MAX_BODY_BYTES,
        "max_wait_seconds": MAX_WAIT_SECONDS,
        "pool_size": 10,
        "shutdown_grace": 5.0,
    }
    options.update(settings)
    # port: unused, the server takes the socket bound below
    api_settings = ApiSettings(dsn=dsn, host="127.0.0.1", port=1, **options)
    metrics = ApiMetrics()
    server = uvicorn.Server(uvicorn_config(api_settings, build_app(api_settings, metrics)))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(1000):  # uvicorn sets started once it listens (well under a second)
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "the API server did not start"
        try:
            yield RunningApi(f"http://127.0.0.1:{port}", metrics)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


@pytest.fixture(scope="session")
async def api(dsn: str) -> AsyncIterator[RunningApi]:
    async with running_api(dsn) as running:
        yield running


@pytest.fixture(scope="session")
def api_url(api: RunningApi) -> str:
    return api.url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def make_key(pool: asyncpg.Pool) -> MakeKey:
    """`await make_key(role, namespaces, reads_payloads=False)`: a new key's secret;
    namespaces None reaches every namespace."""

    async def make(
        role: str, namespaces: Sequence[str] | None, *, reads_payloads: bool = False
    ) -> str:
        name = f"test-{next(_key_numbers)}-{uuid.uuid4().hex[:8]}"
        _key, secret = await key_store.create_key(
            pool, name, Role.parse(role), namespaces, reads_payloads=reads_payloads
        )
        return secret

    return make


@pytest.fixture(scope="session")
async def openapi(api_url: str) -> OpenApiChecker:
    async with httpx.AsyncClient(base_url=api_url) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return OpenApiChecker(document)
