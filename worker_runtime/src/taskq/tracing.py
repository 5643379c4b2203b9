"""Traces from enqueue to execution, with OpenTelemetry (docs/tracing.md).

A task keeps the W3C traceparent of the span that enqueued it (`send <queue>`, a PRODUCER
span), and the worker runs its handler in a `process <queue>` CONSUMER span that is that span's
child, so one trace spans producer -> worker. Attributes follow the OpenTelemetry messaging
semantic conventions. Tracing is on when a TracerProvider is installed: `configure_from_env`
does so for taskq's own processes from the standard OTEL_* variables, and an application
using the client installs its own. Off, each call below costs one check and returns.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("taskq.tracing")

SYSTEM = "taskq"
_PROPAGATOR = TraceContextTextMapPropagator()
# W3C trace context, version 00's layout (a later version may only append fields)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?")


def active() -> bool:
    """Whether a TracerProvider was installed (else every span would be a no-op)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _tracer() -> trace.Tracer:
    return trace.get_tracer("taskq")


def current_traceparent() -> str | None:
    """The traceparent of the current span, if it is a valid one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def caller_traceparent(header: str | None) -> str | None:
    """A caller's `traceparent` header if it is a valid W3C trace context, else None: as the
    W3C recommendation says, an invalid one is ignored (the enqueue starts a trace of its own),
    never a reason to refuse the request."""
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, extra = match.groups()
    if version == "ff" or (version == "00" and extra) or not int(trace_id, 16) or not int(
        span_id, 16
    ):
        return None
    return match.group(0)[:55]


@contextmanager
def attached(traceparent: str | None) -> Iterator[None]:
    """Make a caller's trace context (from an HTTP header, say) the current one."""
    if traceparent is None or not active():
        yield
        return
    token = context.attach(_PROPAGATOR.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def send_span(queue: str, count: int) -> Iterator[str | None]:
    """A `send <queue>` span around an enqueue of `count` tasks; yields the traceparent to store
    with them (None when tracing is off)."""
    if not active():
        yield None
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue,
    }
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with _tracer().start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield current_traceparent()


@contextmanager
def process_span(
    queue: str,
    task_name: str,
    task_id: int,
    attempt: int,
    worker_id: str,
    traceparent: str | None,
    correlation_id: str | None,
) -> Iterator[Span | None]:
    """A `process <queue>` span around one attempt, the child of the span that enqueued the
    task; None when tracing is off."""
    if not active():
        yield None
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": str(task_id),
        "messaging.client.id": worker_id,
        "taskq.task.name": task_name,
        "taskq.attempt": attempt,
    }
    if correlation_id is not None:
        attributes["messaging.message.conversation_id"] = correlation_id
    with _tracer().start_as_current_span(
        f"process {queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def outcome(span: Span | None, outcome: str, error_json: str | None) -> None:
    """Record an attempt's outcome on its span (succeeded, failed, fatal, timed_out, canceled,
    released); a failure is an error status with the error's type and message."""
    if span is None:
        return
    span.set_attribute("taskq.outcome", outcome)
    if outcome in ("failed", "fatal", "timed_out"):
        error = json.loads(error_json) if error_json else {}
        span.set_attribute("error.type", str(error.get("type", outcome)))
        span.set_status(Status(StatusCode.ERROR, str(error.get("message", outcome))))


@contextmanager
def batch_span(operation: str, queue: str, count: int, worker_id: str) -> Iterator[None]:
    """A `receive <queue>` span (a claim of up to `count` tasks) or a `settle` span (outcomes
    of `count` tasks recorded, across queues: `queue` empty), each a root of its own."""
    if not active():
        yield
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.client.id": worker_id,
        "messaging.batch.message_count": count,
    }
    if queue:
        attributes["messaging.destination.name"] = queue
    name = f"{operation} {queue}" if queue else operation
    # a new trace, not the current one: the worker's loops have no trace of their own
    with _tracer().start_as_current_span(
        name, context=context.Context(), kind=SpanKind.CLIENT, attributes=attributes
    ):
        yield


def log_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for log lines; empty without one."""
    if not active():
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def configure_from_env(service_name: str) -> bool:
    """Install a TracerProvider exporting over OTLP/HTTP when the OTEL_* variables ask for
    traces (an OTLP endpoint, or OTEL_TRACES_EXPORTER=otlp), unless OTEL_SDK_DISABLED=true or
    OTEL_TRACES_EXPORTER=none. The exporter reads the rest of OTEL_EXPORTER_OTLP_*; the service
    name is OTEL_SERVICE_NAME when set. True when tracing is on."""
    env = os.environ
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    wanted = exporter == "otlp" or any(
        env.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or exporter == "none":
        return False
    if not wanted or active():
        return active()
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol and protocol != "http/protobuf":
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: taskq exports traces over OTLP/HTTP "
            "only; set it to http/protobuf (receivers listen on port 4318 for it)"
        )
    # the SDK only when tracing is wanted: importing it costs time at every start
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing on: spans exported over OTLP/HTTP")
    return True


def shutdown() -> None:
    """Flush and stop the provider configure_from_env installed (at process exit)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()
