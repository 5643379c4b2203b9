"""`taskq-api` and `taskq api`: settings from TASKQ_API_* and flags, JSON logs, the database
pool, and uvicorn serving the REST application."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from socket import socket
from types import FrameType
from typing import Literal, get_args, get_origin

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from taskq.client import Client, create_pool, no_session_reset
from taskq.errors import DatabaseUnavailableError, TaskqError
from taskq.store.keys import PgKeyStore
from taskq.worker.logs import setup_logging
from taskq_api.rest import ApiMetrics, create_app
from taskq_api.server.settings import ENV_PREFIX, ApiSettings
from taskq_api.service import ApiService, RateLimiter

log = logging.getLogger("taskq_api")

EXIT_USAGE = 2


def service_opener(settings: ApiSettings) -> Callable[[], AbstractAsyncContextManager[ApiService]]:
    """Opens the pool for the application's lifetime. The pool connects on demand (min_size
    0): the server starts while the database is down, and /readyz says so until it is up."""

    @asynccontextmanager
    async def open_service() -> AsyncIterator[ApiService]:
        pool = await create_pool(
            settings.dsn.get_secret_value(),
            min_size=0,
            max_size=settings.pool_size,
            server_settings={"application_name": "taskq-api"},
            reset=no_session_reset,  # its queries leave no session state behind
        )
        try:
            limiter = (
                RateLimiter(settings.rate_limit, settings.rate_burst)
                if settings.rate_limit
                else None
            )
            service = ApiService(
                Client(pool),
                PgKeyStore(pool),
                max_wait=settings.max_wait_seconds,
                limiter=limiter,
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

    return open_service


def build_app(settings: ApiSettings, metrics: ApiMetrics | None = None) -> FastAPI:
    return create_app(
        service_opener(settings),
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        cors_origins=settings.cors_origins,
        metrics=metrics,
    )


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
    )


async def serve(settings: ApiSettings, sockets: Sequence[socket] | None = None) -> None:
    """Serve until stopped (SIGTERM/SIGINT when run by main; cancel or should_exit in tests)."""
    server = uvicorn.Server(uvicorn_config(settings, build_app(settings)))
    await server.serve(sockets=list(sockets) if sockets is not None else None)


# Flags whose name is not the setting's (a list is given one item per flag).
_FLAG_NAMES = {"cors_origins": "cors-origin"}


def _parser(prog: str) -> argparse.ArgumentParser:
    """One flag per setting of ApiSettings, with its description: the one definition."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the taskq REST API. Every flag overrides its "
        f"{ENV_PREFIX}* variable (docs/api.md).",
    )
    for name, field in ApiSettings.model_fields.items():
        flag = "--" + _FLAG_NAMES.get(name, name.replace("_", "-"))
        help_text = field.description
        if name == "dsn":
            parser.add_argument(flag, help=help_text)
        elif name == "cors_origins":
            parser.add_argument(
                flag,
                dest=name,
                action="append",
                metavar="ORIGIN",
                help=f"{help_text} (repeat the flag for more)",
            )
        elif get_origin(field.annotation) is Literal:
            parser.add_argument(flag, dest=name, choices=get_args(field.annotation), help=help_text)
        else:
            kind: Callable[[str], object] = str
            if field.annotation is int:
                kind = int
            elif field.annotation is float:
                kind = float
            parser.add_argument(flag, dest=name, type=kind, help=help_text)
    return parser


def settings_from(argv: Sequence[str] | None, prog: str = "taskq-api") -> ApiSettings:
    """The settings of this command line over the environment; SystemExit(2) with one line
    per problem when they are invalid."""
    args = _parser(prog).parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return ApiSettings(**overrides)
    except ValidationError as error:
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else "settings"
            if field.upper() in ("DSN", "TASKQ_API_DSN", "TASKQ_DSN"):
                field = "dsn"
            if field in ApiSettings.model_fields:
                field = f"{ENV_PREFIX}{field.upper()} (--{field.replace('_', '-')})"
            if field.startswith(f"{ENV_PREFIX}DSN"):
                field = "TASKQ_API_DSN or TASKQ_DSN (--dsn)"
            message = "required" if item["type"] == "missing" else item["msg"]
            print(f"{prog}: error: {field}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _stopped(_signal: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None, prog: str = "taskq-api") -> int:
    settings = settings_from(argv, prog)
    setup_logging(settings.log_level)
    # uvicorn stops gracefully on SIGTERM, then raises the signal again once it has stopped:
    # this handler turns that into exit status 0, as a stop asked for is no failure
    signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.Server(uvicorn_config(settings, build_app(settings))).run()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
