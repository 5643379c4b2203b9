"""What every gRPC call goes through: its correlation id, a status for every error (status.py),
one JSON log line and the call metrics, as REST's rest/observe.py does for requests.

The log line and the metrics name the method (`/taskq.v1.TaskqService/Enqueue`) and the status
code, never a message, metadata, a key or a payload: the key appears only as its public
prefix, which the servicer records in the call once it has authenticated it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from taskq_api.grpc.status import status_of
from taskq_api.service import DURATION_BUCKETS, correlation_id

log = logging.getLogger("taskq_api.access")

CORRELATION_METADATA = "x-correlation-id"
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
# The stubs type the synchronous API's behaviors; under grpc.aio they are coroutine functions
# (unary) and async generator functions (server streaming).
_Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
_Streaming = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


class GrpcMetrics:
    """Beside REST's (rest/observe.py's ApiMetrics), in the same registry: /metrics has both."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "taskq_api_grpc_calls",
            "gRPC calls answered, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "taskq_api_grpc_call_duration_seconds",
            "Time to answer a gRPC call (waits included; a WatchTask stream lasts until its "
            "task finishes), by method and status code",
            ["method", "code"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )


@dataclass(slots=True)
class Call:
    """Filled in while a call is served (the key's prefix, once authenticated)."""

    correlation_id: str
    key_prefix: str | None = None


_current: ContextVar[Call] = ContextVar("taskq_api_grpc_call")


def current_call() -> Call:
    """The call being served (set by Observer, in the call's task)."""
    return _current.get()


class Observer(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:  # grpc answers UNIMPLEMENTED
            return None
        if handler.unary_unary is not None:
            unary = cast(_Unary, handler.unary_unary)

            async def observed_unary(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                async with self._observed(method, context):
                    return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                observed_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            streaming = cast(_Streaming, handler.unary_stream)

            async def observed_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                async with self._observed(method, context):
                    async for response in streaming(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(
                observed_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # taskq.v1 has no client-streaming methods

    @asynccontextmanager
    async def _observed(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        began = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get(CORRELATION_METADATA)
        call = Call(correlation_id(given if isinstance(given, str) else None))
        token = _current.set(call)
        code = grpc.StatusCode.OK
        try:
            await context.send_initial_metadata(((CORRELATION_METADATA, call.correlation_id),))
            try:
                yield
            except Exception as error:
                code, details = status_of(error, call.correlation_id)
                await context.abort(code, details)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the caller went away, or its deadline passed
            raise
        finally:
            _current.reset(token)
            elapsed = time.perf_counter() - began
            self.metrics.calls.labels(method, code.name).inc()
            self.metrics.duration.labels(method, code.name).observe(elapsed)
            log.info(
                "%s %s",
                method,
                code.name,
                extra={
                    "method": method,
                    "code": code.name,
                    "duration_ms": round(elapsed * 1000, 2),
                    "key_prefix": call.key_prefix,
                    "correlation_id": call.correlation_id,
                },
            )
