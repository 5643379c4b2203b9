"""What every request goes through, outermost: its correlation id, the body size limit, one
JSON log line, the request metrics, and a problem response for an error nothing else caught.

The log line and the metrics name the route by its template (`/v1/tasks/{task_id}`), never the
path, the query, a header, a key or a body: the key appears only as its public prefix.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskq_api.rest.problems import (
    HEADERS_TOO_LARGE,
    REQUEST_TOO_LARGE,
    BodyTooLargeError,
    error_response,
    problem_response,
)
from taskq_api.service import (
    CORRELATION_SCOPE_KEY,
    DURATION_BUCKETS,
    OBSERVATION_SCOPE_KEY,
    Observation,
    correlation_id,
)

log = logging.getLogger("taskq_api.access")

CORRELATION_HEADER = "X-Correlation-Id"
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The template of the route that answered, with the path of the application mounted
    under it (the dashboard's `/dashboard/queues/{namespace}/{name}`, not its own
    `/queues/...`); a mount itself (static files) by its path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return UNMATCHED_ROUTE
    root = str(scope.get("root_path", ""))
    mounted = root[len(str(scope.get("app_root_path", ""))):]
    return mounted if isinstance(route, Mount) else mounted + path


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "taskq_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "taskq_api_request_duration_seconds",
            "Time to answer an HTTP request (long-polls included), by method, route template "
            "and status",
            ["method", "route", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # each label set's children, found once: labels() takes a lock and builds a key
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            labels = (method, route, str(status))
            children = self.requests.labels(*labels), self.duration.labels(*labels)
            self._children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)


class Observer:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer long-polls' tasks)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int, metrics: ApiMetrics
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        headers = Headers(scope=scope)
        correlation = correlation_id(headers.get(CORRELATION_HEADER))
        observation = Observation(correlation)
        scope[OBSERVATION_SCOPE_KEY] = observation
        scope[CORRELATION_SCOPE_KEY] = correlation
        status = 500
        started = False

        async def send_observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                MutableHeaders(scope=message)[CORRELATION_HEADER] = correlation
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_observed)
            else:
                await self.app(scope, receive_limited, send_observed)
        except Exception as error:
            log.exception(
                "request failed", extra={"correlation_id": correlation, "error": repr(error)}
            )
            if not started:
                await error_response(scope, error)(scope, receive, send_observed)
        finally:
            template = route_template(scope)
            method = scope["method"]
            elapsed = time.perf_counter() - began
            self.metrics.observe(method, template, status, elapsed)
            if log.isEnabledFor(logging.INFO):  # the line's fields cost, even when dropped
                log.info(
                    "%s %s %s",
                    method,
                    template,
                    status,
                    extra={
                        "method": method,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "key_prefix": observation.key_prefix,
                        "correlation_id": correlation,
                    },
                )

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        """A problem response for a request over a size limit, before the application runs."""
        head = len(scope.get("raw_path") or b"") + len(scope["query_string"])
        head += sum(len(name) + len(value) for name, value in scope["headers"])
        if head > self.max_header_bytes:
            return problem_response(
                scope,
                HEADERS_TOO_LARGE,
                f"the request line and headers are {head} bytes, over the server's limit of "
                f"{self.max_header_bytes}: send fewer or shorter headers",
            )
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            detail = str(BodyTooLargeError(self.max_body_bytes).detail)
            response = problem_response(scope, REQUEST_TOO_LARGE, detail)
            # the body is left unread: close the connection rather than drain it
            response.headers["Connection"] = "close"
            return response
        return None
