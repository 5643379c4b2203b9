"""Real responses checked against the server's own /openapi.json with openapi-core: the status
must be documented for the operation, the content type too, and the body must match its schema
(headers as well, where the document describes them)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


class _Request:
    """An httpx request as openapi-core reads one (openapi_core.protocols.Request)."""

    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return str(self._request.headers.get("content-type", "")).lower()


class _Response:
    """An httpx response as openapi-core reads one (openapi_core.protocols.Response)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return str(self._response.headers.get("content-type", "")).lower()

    @property
    def headers(self) -> Headers:
        return Headers(dict(self._response.headers))

    @property
    def data(self) -> bytes | None:
        return self._response.content


class OpenApiChecker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        # from_dict validates the document itself first (openapi-spec-validator)
        # problem documents are JSON: openapi-core knows application/json only by name
        config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
        self._api = OpenAPI.from_dict(document, config=config)

    def check(self, response: httpx.Response) -> httpx.Response:
        """Raise when the response does not match the document; return it for chaining."""
        self._api.validate_response(_Request(response.request), _Response(response))
        return response
