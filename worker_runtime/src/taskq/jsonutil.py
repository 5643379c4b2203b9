"""JSON encoding for payloads, results and errors: compact, and strict about what is JSON."""

from __future__ import annotations

import json
from typing import Any

from taskq.errors import InvalidArgumentError

encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any, field: str = "payload") -> str:
    """Encode as JSON text, or raise an error naming the field (NaN and sets are not JSON)."""
    try:
        return encoder.encode(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(field, f"not JSON-serialisable: {error}") from None


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
