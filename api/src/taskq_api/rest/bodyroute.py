"""A route that answers its common case, a JSON body that is valid, without FastAPI's per-request
work (dependency solving, validation of the parsed body): the body is read and validated in one
pass by a TypeAdapter built once (pydantic-core parses the JSON itself), the key is resolved by
the same functions the dependencies call, the endpoint is called as FastAPI would call it, and
its answer serialized once by pydantic.

Any other request (another content type, malformed JSON, an invalid body) goes to FastAPI's
own handler of the route, so that every refusal is the one FastAPI gives, in its order (400
for malformed JSON before 401, then 422). The declaration is FastAPI's too, and so is the
OpenAPI document.

A route may have a leaner way still for its common case (`Lean`, registered with `lean_body`
before the route is added): a parser that accepts only a subset of the bodies the declared body
accepts, into what the route needs rather than the declared models, an endpoint taking that,
and a serializer writing the response model's bytes. A body it refuses takes the way above.
The batch enqueue route has one: a batch of 1,000 tasks is otherwise 1,000 pydantic models,
1,000 `TaskRequest`s made from them in Python and 1,000 response models.

For routes whose parameters are path parameters (strings), one body, the service, the key,
optional headers (strings) and optionally the Response: the enqueue routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from taskq_api.rest.auth import bearer, request_key, request_service


@dataclass(frozen=True, slots=True)
class Lean:
    """`parse` raises ValidationError for any body it does not take, and takes none that the
    declared body refuses; `endpoint` is called with the route's arguments, the body being
    what `parse` returned; `dump` writes its answer as the response model would be written
    (status and headers as the route declares: a lean endpoint sets none)."""

    parse: Callable[[bytes], Any]
    endpoint: Callable[..., Awaitable[Any]]
    dump: Callable[[Any], bytes]


_LEAN: dict[Callable[..., Any], Lean] = {}


def lean_body(endpoint: Callable[..., Any], lean: Lean) -> None:
    """Registers `lean` for the route of `endpoint`: before the route is added."""
    _LEAN[endpoint] = lean


class JsonBodyRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        dependant, body = self.dependant, self.body_field
        names = {dependency.call: dependency.name for dependency in dependant.dependencies}
        key_name, service_name = names.get(request_key), names.get(request_service)
        if (
            body is None
            or body.field_info.annotation is None
            or key_name is None
            or service_name is None
            or dependant.query_params
            or dependant.cookie_params
            or set(names) != {request_key, request_service}
            or any(f.field_info.annotation is not str for f in dependant.path_params)
        ):
            raise TypeError(f"{self.path}: not a route JsonBodyRoute can answer")
        path_names = [field.name for field in dependant.path_params]
        headers = [(field.name, field.alias) for field in dependant.header_params]
        response_name = dependant.response_param_name
        parse = TypeAdapter[Any](body.field_info.annotation).validate_json
        dump = TypeAdapter(self.response_model).dump_json
        endpoint, status = self.endpoint, self.status_code
        lean = _LEAN.get(endpoint)
        if lean is not None and response_name is not None:
            raise TypeError(f"{self.path}: a lean endpoint sets no status nor headers")

        async def handle(request: Request) -> Response:
            if not _is_plain_json(request.headers.get("content-type")):
                return await declared(request)
            received = await request.body()
            if lean is not None:
                try:
                    value = lean.parse(received)
                except ValidationError:
                    pass
                else:
                    return await answer_lean(lean, request, value)
            try:
                value = parse(received)
            except ValidationError:
                return await declared(request)  # the body is kept: FastAPI reads it again
            values = await arguments(request, value)
            # what the endpoint sets on it (status, headers) goes into the answer, as FastAPI does
            sub_response = Response()
            del sub_response.headers["content-length"]
            sub_response.status_code = None  # type: ignore[assignment]
            if response_name is not None:
                values[response_name] = sub_response
            answer = Response(
                dump(await endpoint(**values)),
                status_code=sub_response.status_code or status or 200,
                media_type="application/json",
            )
            answer.headers.raw.extend(sub_response.headers.raw)
            return answer

        async def arguments(request: Request, value: Any) -> dict[str, Any]:
            service = await request_service(request)
            values: dict[str, Any] = {name: request.path_params[name] for name in path_names}
            values.update((name, request.headers.get(alias)) for name, alias in headers)
            values[body.name] = value
            values[service_name] = service
            values[key_name] = await request_key(request, await bearer(request), service)
            return values

        async def answer_lean(lean: Lean, request: Request, value: Any) -> Response:
            values = await arguments(request, value)
            return Response(
                lean.dump(await lean.endpoint(**values)),
                status_code=status or 200,
                media_type="application/json",
            )

        return handle


def _is_plain_json(content_type: str | None) -> bool:
    """application/json, with parameters or not; other JSON types take FastAPI's path."""
    return (
        content_type is not None
        and content_type.partition(";")[0].strip().lower() == "application/json"
    )
