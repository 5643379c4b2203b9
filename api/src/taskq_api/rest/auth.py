"""The service and the API key of a request, as FastAPI dependencies of the routes (and as
plain calls of the enqueue routes' common path, rest/bodyroute.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskq.auth import ApiKey
from taskq_api.service import (
    OBSERVATION_SCOPE_KEY,
    ApiService,
    Observation,
    RateLimitedError,
)

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="tq_<prefix>_<secret>",
    description="An API key (`taskq keys create`): `Authorization: Bearer tq_...`",
)


# async, though it awaits nothing: FastAPI runs a plain function dependency in a worker thread
# (a thread handoff per request)
async def request_service(request: Request) -> ApiService:
    service: ApiService = request.state.service
    return service


Service = Annotated[ApiService, Depends(request_service)]


async def request_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    service: Service,
) -> ApiKey:
    observation: Observation | None = request.scope.get(OBSERVATION_SCOPE_KEY)
    try:
        key = await service.authenticate(
            credentials.credentials if credentials else None
        )
    except RateLimitedError as error:
        if observation is not None:  # the log line names the key that was held back
            observation.key_prefix = error.key_prefix
        raise
    if observation is not None:
        observation.key_prefix = key.prefix
    return key


Key = Annotated[ApiKey, Depends(request_key)]
