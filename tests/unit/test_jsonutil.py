"""JSON encoding of payloads, results and progress: compact, and strict about what is JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskq import jsonutil
from taskq.errors import InvalidArgumentError


@pytest.mark.parametrize(
    "value",
    [
        {"to": "ada@example.com", "n": [1, 2.5, None, True, False]},
        {"nested": {"é": "naïve \"quoted\" back\\slash\nnewline", "emoji": "🙂"}},
        "just a string",
        12345678901234567890,
        None,
        [],
        {},
        {1: "int keys become strings"},
        (1, 2),
    ],
)
def test_encodes_as_compact_json_with_unicode_kept(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert jsonutil.encode(value) == expected
    assert json.loads(jsonutil.encode(value)) == json.loads(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "Out of range float"),
        ({"x": float("inf")}, "Out of range float"),
        ({1, 2}, "set is not JSON serializable"),
        (object(), "object is not JSON serializable"),
    ],
)
def test_refuses_what_is_not_json(value: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as error:
        jsonutil.dumps(value, "result")
    assert "result" in str(error.value)


def test_refuses_a_cycle() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidArgumentError, match="circular reference"):
        jsonutil.dumps(cyclic)


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ("a\x00b", True),
        ({"key\x00": 1}, True),
        (["\\\x00"], True),  # an escaped backslash, then U+0000
        ("\\u0000", False),  # the six characters \u0000, not U+0000
        ("\\\\u0000", False),
        ("plain", False),
    ],
)
def test_finds_the_nul_character_postgres_cannot_store(value: Any, holds: bool) -> None:
    assert jsonutil.holds_nul(jsonutil.encode(value)) is holds
