"""What every protocol records of a call, the same way: the call's correlation id, and the
buckets of its duration histogram. Each protocol writes its own log line and metrics from
these (REST: rest/observe.py, gRPC: grpc/observe.py)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

# A caller's correlation id is kept when it looks like an id; anything else is replaced, so
# that a log line never carries what a caller smuggled into a header or metadata.
_CORRELATION: Final = re.compile(r"^[A-Za-z0-9._:/@+=-]{1,128}$")
# Where the HTTP side keeps a request's correlation id in its ASGI scope, for every front end
# served on the HTTP port (the REST API and the dashboard) to find.
CORRELATION_SCOPE_KEY: Final = "taskq.correlation_id"
# Where it keeps the request's Observation, for the front end that authenticates the key.
OBSERVATION_SCOPE_KEY: Final = "taskq.observation"
# Up to a minute: long-polls (?wait=, wait_seconds) count here too.
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
)  # fmt: skip


@dataclass(slots=True)
class Observation:
    """Filled in while an HTTP request is served (the key's prefix, once authenticated), for
    its log line."""

    correlation_id: str
    key_prefix: str | None = None


def correlation_id(given: str | None) -> str:
    """The caller's correlation id when it looks like one (1-128 letters, digits and
    `._:/@+=-`), else a new one."""
    return given if given is not None and _CORRELATION.match(given) else uuid.uuid4().hex
