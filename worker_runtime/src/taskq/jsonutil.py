"""JSON encoding for payloads, results and errors: compact, and strict about what is JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import Any

from taskq.errors import InvalidArgumentError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# JSONEncoder.encode builds a new C encoder on every call, which was most of the cost of
# encoding a small payload (1.7 us of 2; a bulk enqueue encodes one per task). This one is
# built once, with the same settings; without cycle tracking, a cyclic value ends in
# RecursionError (reported below like any other value that is not JSON).
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # undeclared in typeshed
_c_encode: Callable[[Any, int], Sequence[str]] | None = (
    _make_c_encoder(None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
    if _make_c_encoder is not None
    else None
)


def encode(value: Any) -> str:
    """Compact JSON text; TypeError or ValueError when the value is not JSON (NaN, sets,
    cycles, objects)."""
    if _c_encode is None:  # no C accelerator (not CPython)
        return _encoder.encode(value)
    try:
        return "".join(_c_encode(value, 0))
    except RecursionError:
        raise ValueError("circular reference (or nesting too deep)") from None


def dumps(value: Any, field: str = "payload") -> str:
    """Encode as JSON text, or raise an error naming the field (NaN and sets are not JSON)."""
    try:
        return encode(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(field, f"not JSON-serialisable: {error}") from None


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# U+0000 in a JSON string is written \u0000; an escaped backslash before "u0000" is not it.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def holds_nul(text: str) -> bool:
    """True when the JSON text has U+0000 in a string or key: PostgreSQL's jsonb cannot store
    it. The substring test first keeps the common case to one scan in C."""
    return "\\u0000" in text and _NUL_ESCAPE.search(text) is not None
