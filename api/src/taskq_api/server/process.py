"""The API server process: one database pool and one service, served by uvicorn (REST) and by
the gRPC server beside it on the same event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from socket import socket

import grpc
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from taskq.auth import KeyStore
from taskq.client import Client, create_pool, no_session_reset
from taskq.errors import DatabaseUnavailableError, TaskqError
from taskq.store.keys import PgKeyStore
from taskq_api import dashboard
from taskq_api.grpc import GrpcMetrics, create_server
from taskq_api.rest import ApiMetrics, create_app
from taskq_api.server.settings import ApiSettings
from taskq_api.service import ApiService, CachedKeyStore, RateLimiter

log = logging.getLogger("taskq_api")


class StartupError(Exception):
    """The server cannot start as its settings say; the message names the setting."""


@asynccontextmanager
async def open_service(settings: ApiSettings) -> AsyncIterator[ApiService]:
    """The service over a pool for the server's lifetime. The pool connects on demand
    (min_size 0): the server starts while the database is down, and /readyz says so until it
    is up."""
    pool = await create_pool(
        settings.dsn.get_secret_value(),
        min_size=0,
        max_size=settings.pool_size,
        server_settings={"application_name": "taskq-api"},
        reset=no_session_reset,  # its queries leave no session state behind
    )
    try:
        limiter = (
            RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit else None
        )
        stored = PgKeyStore(pool)
        keys: KeyStore = stored
        if settings.key_cache_seconds:
            keys = CachedKeyStore(keys, settings.key_cache_seconds)
        service = ApiService(
            Client(pool), keys, max_wait=settings.max_wait_seconds, limiter=limiter,
            key_admin=stored,
        )
        try:
            version = await service.schema_version()
            log.info("database ready", extra={"schema_version": version})
        except ValueError as error:  # asyncpg parses the DSN when it first connects
            raise DatabaseUnavailableError(f"invalid database DSN: {error}") from None
        except TaskqError as error:
            log.warning("database not ready (%s): /readyz answers 503 until it is", error)
        yield service
    finally:
        await pool.close()


def uvicorn_config(settings: ApiSettings, app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,  # our JSON lines (setup_logging), not uvicorn's format
        access_log=False,  # one line per request comes from rest/observe.py
        server_header=False,
        # h11 cuts off far larger heads itself; the exact limit is the application's (431)
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


class ApiServer(uvicorn.Server):
    """uvicorn serving the REST application, with the gRPC server (unless grpc_port is 0)
    started before it and stopped with it: on SIGTERM both stop taking calls and drain the
    ones in flight, for up to the shutdown grace, at the same time. uvicorn handles the
    signals; the service (its pool) outlives both."""

    def __init__(
        self,
        settings: ApiSettings,
        service: ApiService,
        registry: CollectorRegistry | None = None,
    ) -> None:
        registry = registry or CollectorRegistry()
        self.metrics = ApiMetrics(registry)
        app = create_app(
            lambda: nullcontext(service),
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
            cors_origins=settings.cors_origins,
            metrics=self.metrics,
        )
        if settings.dashboard:
            assert settings.session_secret is not None  # the settings require it
            app.mount(
                dashboard.PATH,
                dashboard.create_dashboard(
                    settings.session_secret.get_secret_value(),
                    # live pages end their streams at once, not after the shutdown grace
                    stopping=lambda: self.should_exit,
                ),
            )
        super().__init__(uvicorn_config(settings, app))
        self.grace = settings.shutdown_grace
        self.grpc: grpc.aio.Server | None = None
        self.grpc_port: int | None = None
        if settings.grpc_port:
            self.grpc = create_server(
                service,
                metrics=GrpcMetrics(registry),
                max_message_bytes=settings.max_body_bytes,
                max_metadata_bytes=settings.max_header_bytes,
            )
            self.grpc_port = _listen(self.grpc, settings.host, settings.grpc_port)

    async def startup(self, sockets: list[socket] | None = None) -> None:
        if self.grpc is not None:
            await self.grpc.start()
            log.info("serving gRPC", extra={"port": self.grpc_port})
        try:
            await super().startup(sockets)
        except BaseException:  # uvicorn exits when it cannot listen
            if self.grpc is not None:
                await self.grpc.stop(None)
            raise

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        stopping = [self.grpc.stop(self.grace)] if self.grpc is not None else []
        await asyncio.gather(super().shutdown(sockets), *stopping)


def _listen(server: grpc.aio.Server, host: str, port: int) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return server.add_insecure_port(address)
    except RuntimeError:
        raise StartupError(
            f"cannot serve gRPC on {address}: the port is in use, or the host is not an address "
            "of this machine; choose another TASKQ_API_GRPC_PORT (--grpc-port), or 0 for no gRPC"
        ) from None


async def serve(settings: ApiSettings) -> None:
    """Serve until SIGTERM or SIGINT."""
    async with open_service(settings) as service:
        await ApiServer(settings, service).serve()
