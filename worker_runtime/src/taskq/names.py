"""Queue names: `namespace/name`, each part a DNS-1123 label, as Kubernetes names them."""

from __future__ import annotations

import re
from typing import NamedTuple

from taskq.errors import InvalidArgumentError

LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_LABEL = re.compile(LABEL_PATTERN)
_MAX_LABEL = 63


class QueueName(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str, what: str = "queue") -> QueueName:
        """Parse `namespace/name` (of a queue, or a schedule); the error says what is wrong
        and what a valid name is."""
        parts = text.split("/")
        if len(parts) != 2:
            raise InvalidArgumentError(
                what, f"{text!r} is not of the form NAMESPACE/NAME (for example default/emails)"
            )
        for part, which in zip(parts, ("namespace", "name"), strict=True):
            check_label(part, f"{what} {which}")
        return cls(parts[0], parts[1])


def check_label(value: str, field: str) -> str:
    if len(value) > _MAX_LABEL or not _LABEL.match(value):
        raise InvalidArgumentError(
            field,
            f"{value!r} must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit",
        )
    return value
