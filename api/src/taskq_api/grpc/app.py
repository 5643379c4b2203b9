"""The gRPC server of taskq.v1: the servicer behind the observer, with the size limits. The
server layer binds it to its port and starts and stops it beside uvicorn."""

from __future__ import annotations

import grpc

from taskq_api.grpc.observe import GrpcMetrics, Observer
from taskq_api.grpc.servicer import TaskqServicer
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc
from taskq_api.service import ApiService


def create_server(
    service: ApiService, *, metrics: GrpcMetrics, max_message_bytes: int, max_metadata_bytes: int
) -> grpc.aio.Server:
    """Over the limits, grpc itself answers RESOURCE_EXHAUSTED: a message over
    `max_message_bytes` (the REST body limit), metadata over `max_metadata_bytes`."""
    server = grpc.aio.server(
        interceptors=[Observer(metrics)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_metadata_size", max_metadata_bytes),
            # a port in use is an error, not a port shared with whoever holds it
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_TaskqServiceServicer_to_server(TaskqServicer(service), server)
    return server
