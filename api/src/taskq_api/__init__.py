"""taskq's front door: the REST API server (`taskq api`, `taskq-api`).

Layers (import-linter holds them): `server` wires uvicorn and the settings, `rest` is the
FastAPI application (routes, request and response models, problem+json), `service` is what the
API does, with authorization, shared by every protocol so that they cannot drift.
"""
