"""The health server's routes, without a socket: _route is a pure function of method and path."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from taskq.worker.http import HealthServer
from taskq.worker.metrics import WorkerMetrics


def _server(live: bool = True, ready: bool = True) -> tuple[HealthServer, CollectorRegistry]:
    registry = CollectorRegistry()
    Counter("taskq_probe", "a metric to find", registry=registry).inc(3)
    return HealthServer(registry, lambda: None if live else "stalled", lambda: ready), registry


def test_metrics_exposes_the_registry() -> None:
    server, _ = _server()
    status, ctype, body = server._route("GET", "/metrics")
    assert status == "200 OK"
    assert ctype.startswith("text/plain")
    assert b"taskq_probe_total 3.0" in body


def test_metrics_of_a_worker() -> None:
    metrics = WorkerMetrics()
    metrics.started("default/q", "t")
    metrics.finished("default/q", "t", "succeeded", 0.2)
    metrics.settled("default/q", "succeeded", 2)
    metrics.db_connections = lambda: (1, 3)
    server = HealthServer(metrics.registry, lambda: None, lambda: True)
    body = server._route("GET", "/metrics")[2].decode()
    assert 'taskq_tasks_started_total{queue="default/q",task="t"} 1.0' in body
    assert ('taskq_tasks_finished_total{outcome="succeeded",queue="default/q",task="t"} 1.0'
            in body)
    assert 'taskq_tasks_settled_total{queue="default/q",state="succeeded"} 2.0' in body
    assert "taskq_tasks_in_flight 0.0" in body
    assert 'taskq_db_connections{use="busy"} 1.0' in body
    assert 'taskq_db_connections{use="idle"} 3.0' in body


@pytest.mark.parametrize(
    ("path", "live", "ready", "status", "body"),
    [
        ("/healthz", True, False, "200 OK", b"ok\n"),
        ("/healthz", False, True, "503 Service Unavailable", b"stalled\n"),
        ("/readyz", False, True, "200 OK", b"ok\n"),
        ("/readyz", True, False, "503 Service Unavailable", b"database unreachable\n"),
    ],
)
def test_probes(path: str, live: bool, ready: bool, status: str, body: bytes) -> None:
    server, _ = _server(live=live, ready=ready)
    assert server._route("GET", path) == (status, "text/plain; charset=utf-8", body)


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/", ""])
def test_unknown_paths_are_404(path: str) -> None:
    server, _ = _server()
    status, _, body = server._route("GET", path)
    assert status == "404 Not Found"
    assert b"/metrics" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", ""])
def test_other_methods_are_405(method: str) -> None:
    server, _ = _server()
    assert server._route(method, "/metrics")[0] == "405 Method Not Allowed"
