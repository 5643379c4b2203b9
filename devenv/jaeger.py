"""Jaeger (v2, built from Go modules by tools/build.sh jaeger) as a local process: an OTLP/HTTP
receiver and an in-memory trace store that tests query, every port on 127.0.0.1.

    with LocalJaeger(tmp_path) as jaeger:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, ...}
        ...
        traces = jaeger.traces("taskq-worker")
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import yaml

from devenv.postgres import free_port

REPO = Path(__file__).resolve().parent.parent


def jaeger_binary() -> Path:
    """Built on first use (minutes when cold, milliseconds when cached)."""
    built = subprocess.run(
        [str(REPO / "tools" / "build.sh"), "jaeger"], capture_output=True, text=True, check=True
    )
    return Path(built.stdout.strip()) / "jaeger"


def _config(otlp_port: int, query_port: int, query_grpc_port: int) -> dict[str, Any]:
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            # no metrics endpoint of its own (the default binds a port), no traces of its own
            # (the default exports them to 127.0.0.1:4317)
            "telemetry": {
                "metrics": {"level": "none"},
                "traces": {"level": "none"},
                "logs": {"level": "warn"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 10000}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                # it would trace its own queries to 127.0.0.1:4317
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{query_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{query_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}},
        },
        # spans reach the store within 100 ms, so a test does not wait long for them
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


class LocalJaeger:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.otlp_port, self.query_port = free_port(), free_port()
        self.otlp_endpoint = f"http://127.0.0.1:{self.otlp_port}"
        self.query_url = f"http://127.0.0.1:{self.query_port}"
        self._config = _config(self.otlp_port, self.query_port, free_port())
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        config = self.workdir / "jaeger.yaml"
        config.write_text(yaml.safe_dump(self._config))
        log = self.workdir / "jaeger.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(jaeger_binary()), "--config", str(config)],
                # Jaeger traces itself to 127.0.0.1:4317 by default: not here
                env={"PATH": os.environ.get("PATH", ""), "OTEL_SDK_DISABLED": "true",
                     "OTEL_TRACES_EXPORTER": "none"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jaeger exited: {log.read_text()[-3000:]}")
            try:
                self.services()
            except httpx.TransportError:
                time.sleep(0.2)
            else:
                return
        raise TimeoutError(f"jaeger's query API did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _get(self, path: str, **query: str) -> Any:
        answer = httpx.get(f"{self.query_url}{path}", params=query, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def services(self) -> list[str]:
        found: list[str] = self._get("/api/services")["data"] or []
        return found

    def traces(self, service: str) -> list[dict[str, Any]]:
        """The stored traces with a span of `service` (Jaeger's JSON: spans, processes)."""
        found: list[dict[str, Any]] = self._get("/api/traces", service=service, limit="100")[
            "data"
        ]
        return found
