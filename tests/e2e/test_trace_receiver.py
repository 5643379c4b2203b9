"""The trace receiver the tracing tests stand on (issue 13, part 3): Jaeger v2 built from its
Go module by tools/build.sh, run on 127.0.0.1 with in-memory storage, takes spans from the
Python OpenTelemetry SDK over OTLP/HTTP and answers queries for them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from devenv.jaeger import LocalJaeger
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind


def test_spans_sent_over_otlp_come_back_from_the_query_api(tmp_path: Path) -> None:
    with LocalJaeger(tmp_path) as jaeger:
        provider = TracerProvider(resource=Resource.create({"service.name": "taskq-test"}))
        exporter = OTLPSpanExporter(endpoint=f"{jaeger.otlp_endpoint}/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("taskq-test")
        with (
            tracer.start_as_current_span("send default/emails", kind=SpanKind.PRODUCER),
            tracer.start_as_current_span("process default/emails", kind=SpanKind.CONSUMER),
        ):
            pass
        provider.shutdown()

        deadline = time.monotonic() + 15
        traces: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not traces:
            traces = jaeger.traces("taskq-test")
            time.sleep(0.1)
        (trace,) = traces
        spans = {s["operationName"]: s for s in trace["spans"]}
        assert set(spans) == {"send default/emails", "process default/emails"}
        (parent,) = spans["process default/emails"]["references"]
        assert parent["refType"] == "CHILD_OF"
        assert parent["spanID"] == spans["send default/emails"]["spanID"]
