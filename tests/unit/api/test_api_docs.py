"""docs/api.md against the code it describes: every setting with its variable and flag, every
endpoint and gRPC method, every problem type and status code. A new setting, route, method or
error fails here until it is documented."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

from taskq_api.grpc.status import STATUS_CODES
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.rest import create_app
from taskq_api.rest.problems import (
    HEADERS_TOO_LARGE,
    INTERNAL,
    INVALID_REQUEST,
    MALFORMED_JSON,
    PROBLEMS,
    REQUEST_TOO_LARGE,
    UNAUTHENTICATED,
    UNSUPPORTED_MEDIA_TYPE,
)
from taskq_api.server.main import _parser
from taskq_api.server.settings import ENV_PREFIX, ApiSettings
from taskq_api.service import ApiService

_DOC = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text(encoding="utf-8")


def _no_service() -> AbstractAsyncContextManager[ApiService]:
    raise AssertionError("the OpenAPI document needs no service")


def test_every_setting_has_its_variable_and_flag_in_the_table() -> None:
    flags = {a.dest: a.option_strings[0] for a in _parser("taskq-api")._actions if a.dest != "help"}
    for name in ApiSettings.model_fields:
        start = f"| `{ENV_PREFIX}{name.upper()}`"
        row = next((line for line in _DOC.splitlines() if line.startswith(start)), None)
        assert row is not None, f"docs/api.md has no row for {ENV_PREFIX}{name.upper()}"
        assert f"`{flags[name]}`" in row, (name, row)
    assert set(flags) == set(ApiSettings.model_fields)


def test_every_endpoint_is_in_the_table() -> None:
    app = create_app(_no_service, max_body_bytes=1024)  # no lifespan: no service
    for path, item in app.openapi()["paths"].items():
        for method in item:
            assert f"`{method.upper()} {path}`" in _DOC, f"{method.upper()} {path}"


def test_every_problem_type_is_in_the_table() -> None:
    kinds = [kind for _cls, kind in PROBLEMS] + [
        HEADERS_TOO_LARGE, INTERNAL, INVALID_REQUEST, MALFORMED_JSON, REQUEST_TOO_LARGE,
        UNAUTHENTICATED, UNSUPPORTED_MEDIA_TYPE,
    ]
    for kind in kinds:
        assert f"`{kind.type}`" in _DOC, kind


def test_every_grpc_method_and_status_code_is_in_the_tables() -> None:
    for method in pb.DESCRIPTOR.services_by_name["TaskqService"].methods_by_name:
        assert f"`{method}`" in _DOC, method
    for _cls, code in STATUS_CODES:
        assert f"| `{code.name}` |" in _DOC, code
