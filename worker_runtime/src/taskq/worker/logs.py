"""Structured JSON logs, one object per line, carrying the running task's ids."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from taskq import tracing
from taskq.worker.context import current_task

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = current_task.get()
        if ctx is not None:
            entry.update(
                queue=ctx.queue,
                task=ctx.task_name,
                task_id=ctx.task_id,
                attempt_id=str(ctx.attempt_id),
                attempt=ctx.attempt,
                correlation_id=ctx.correlation_id,
            )
        entry.update(tracing.log_ids())
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
