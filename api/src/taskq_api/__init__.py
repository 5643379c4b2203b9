"""taskq's front door: the API server (`taskq api`, `taskq-api`), REST and gRPC.

Layers (import-linter holds them): `server` runs the process (settings, the database pool,
uvicorn and the gRPC server), `rest` is the FastAPI application (routes, request and response
models, problem+json), `grpc` is the taskq.v1 service (servicer, messages, status codes), and
`service` is what the API does, with authorization, shared by both so that they cannot drift.
"""
