"""A minimal HTTP endpoint for /metrics, /healthz (the worker does its job; otherwise the body
says why not) and /readyz (the database answered recently). Plain asyncio: three fixed GET
routes need no web framework."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        health_problem: Callable[[], str | None],
        ready: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._health_problem = health_problem
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            status, ctype, body = self._route(parts[0] if parts else "", path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method != "GET":
            return "405 Method Not Allowed", text, b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            problem = self._health_problem()
            if problem is None:
                return "200 OK", text, b"ok\n"
            return "503 Service Unavailable", text, f"{problem}\n".encode()
        if path == "/readyz":
            ok = self._ready()
            return (
                ("200 OK" if ok else "503 Service Unavailable"),
                text,
                (b"ok\n" if ok else b"database unreachable\n"),
            )
        return "404 Not Found", text, b"try /metrics, /healthz or /readyz\n"
