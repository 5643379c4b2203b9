"""The API server, started for real inside the test session: uvicorn and the gRPC server on
127.0.0.1 and free ports, over the session's PostgreSQL (tests/conftest.py), spoken to with
httpx and grpcio over sockets.

- ``api_url`` (session): the server's base URL.
- ``http`` (function): an httpx.AsyncClient on it, without a key.
- ``grpc_stub`` (function): a taskq.v1 stub on a grpc.aio channel to the server's gRPC port.
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
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest
from devenv.postgres import free_port
from prometheus_client import CollectorRegistry

from taskq.auth import Role
from taskq.store import keys as key_store
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc
from taskq_api.server.process import ApiServer, open_service
from taskq_api.server.settings import ApiSettings
from taskq_api.service import ApiService
from tests.api.openapi import OpenApiChecker

if TYPE_CHECKING:  # the stub's type on a grpc.aio channel (the stubs have it, the module not)
    from taskq_api.grpc.v1.taskq_pb2_grpc import TaskqServiceAsyncStub as GrpcStub

# A small limit, so that "too large" tests send little; batches of 10,000 tiny tasks fit.
MAX_BODY_BYTES = 1024 * 1024
MAX_WAIT_SECONDS = 5.0

_key_numbers = itertools.count(1)

MakeKey = Callable[..., Awaitable[str]]


class RunningApi:
    def __init__(
        self, url: str, grpc_target: str, registry: CollectorRegistry, server: ApiServer
    ) -> None:
        self.url = url
        self.grpc_target = grpc_target
        self.registry = registry  # the REST and the gRPC metrics
        self.server = server


@contextlib.asynccontextmanager
async def running_api(
    dsn: str, service: ApiService | None = None, **settings: Any
) -> AsyncIterator[RunningApi]:
    """The real server (ApiServer, as `taskq api` runs it) on 127.0.0.1 and free ports in this
    event loop, until the block ends; over `service` when given, else the one `taskq api`
    opens."""
    options: dict[str, Any] = {
        "max_body_bytes": MAX_BODY_BYTES,
        "max_wait_seconds": MAX_WAIT_SECONDS,
        "pool_size": 10,
        "shutdown_grace": 5.0,
        "grpc_port": free_port(),
    }
    options.update(settings)
    # port: unused, the server takes the socket bound below
    api_settings = ApiSettings(dsn=dsn, host="127.0.0.1", port=1, **options)
    registry = CollectorRegistry()
    async with contextlib.AsyncExitStack() as stack:
        if service is None:
            service = await stack.enter_async_context(open_service(api_settings))
        server = ApiServer(api_settings, service, registry)
        sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(1000):  # uvicorn sets started once it listens (well under a second)
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "the API server did not start"
        try:
            yield RunningApi(
                f"http://127.0.0.1:{port}", f"127.0.0.1:{server.grpc_port}", registry, server
            )
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
async def grpc_stub(api: RunningApi) -> AsyncIterator[GrpcStub]:
    async with grpc.aio.insecure_channel(api.grpc_target) as channel:
        yield pb_grpc.TaskqServiceStub(channel)


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
