"""The batch route's lean way (rest/models.py lean_batch_parser, batch_result_json) against the
declared models: it takes no body BatchSubmission refuses, makes what `to_request` makes, and
writes BatchResult's bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from taskq.models import EnqueueResult
from taskq_api.rest.models import (
    BatchResult,
    BatchSubmission,
    EnqueuedTask,
    batch_result_json,
    lean_batch_parser,
)

_parse = lean_batch_parser()
_declared = TypeAdapter(BatchSubmission).validate_json
_FULL = {
    "task_name": "t",
    "payload": {"a": [1, None, "x"]},
    "priority": "high",
    "delay_seconds": 1.5,
    "idempotency_key": "k",
    "correlation_id": "c",
    "max_attempts": 3,
    "timeout_seconds": 2,
    "callback_url": "https://example.com/done",
}

TAKEN: list[Any] = [
    {"tasks": [{"task_name": "t"}]},
    {"tasks": [{"task_name": "t", "payload": None}, _FULL]},
    {"tasks": [{"task_name": "t", "priority": 7, "delay_seconds": 0}]},
    {"tasks": [{"task_name": "t", "priority": None, "max_attempts": None}]},
    {"tasks": [{"task_name": "t", "payload": i} for i in range(100)]},
]
REFUSED: list[Any] = [
    {"tasks": []},
    {"tasks": [{"task_name": "t"}] * 10_001},
    {},
    {"tasks": [{"task_name": "t"}], "extra": 1},
    {"tasks": [{"task_name": ""}]},
    {"tasks": [{"task_name": 5}]},
    {"tasks": [{"payload": 1}]},
    {"tasks": [{"task_name": "t", "delay": 1}]},
    {"tasks": [{"task_name": "t", "timeout": 1}]},
    {"tasks": [{"task_name": "t", "priority": "soon"}]},
    {"tasks": [{"task_name": "t", "priority": True}]},
    {"tasks": [{"task_name": "t", "delay_seconds": -1}]},
    {"tasks": [{"task_name": "t", "delay_seconds": "1"}]},
    {"tasks": [{"task_name": "t", "max_attempts": 1.5}]},
    {"tasks": [{"task_name": "t", "timeout_seconds": 0}]},
    {"tasks": [{"task_name": "t", "callback_url": "ftp://x"}]},
    {"tasks": [{"task_name": "t", "idempotency_key": ""}]},
    {"tasks": [{"task_name": "t", "correlation_id": "x" * 256}]},
    {"tasks": {"task_name": "t"}},
    [],
]


@pytest.mark.parametrize("body", TAKEN)
def test_what_it_takes_is_what_to_request_makes(body: Any) -> None:
    raw = json.dumps(body).encode()
    now = datetime.now(UTC)
    assert _parse(raw)["tasks"] == [task.to_request(now) for task in _declared(raw).tasks]


@pytest.mark.parametrize("body", REFUSED)
def test_it_refuses_what_the_declared_body_refuses(body: Any) -> None:
    raw = json.dumps(body).encode()
    with pytest.raises(ValidationError):
        _declared(raw)
    with pytest.raises(ValidationError):
        _parse(raw)


def test_run_at_and_malformed_json_take_the_declared_way() -> None:
    run_at = {"tasks": [{"task_name": "t", "run_at": "2030-01-01T00:00:00Z"}]}
    _declared(json.dumps(run_at).encode())  # valid, but not the lean way's
    for raw in (json.dumps(run_at).encode(), b'{"tasks": [', b""):
        with pytest.raises(ValidationError):
            _parse(raw)


@pytest.mark.parametrize(
    "results",
    [[EnqueueResult(1, True)], [EnqueueResult(2**63 - 1, False), EnqueueResult(3, True)] * 5],
)
def test_its_answer_is_batch_results(results: list[EnqueueResult]) -> None:
    model = BatchResult(
        tasks=[EnqueuedTask(id=r.id, created=r.created) for r in results],
        created=sum(r.created for r in results),
    )
    assert batch_result_json(results) == TypeAdapter(BatchResult).dump_json(model)
