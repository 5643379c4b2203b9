"""What a task submission may say beyond what taskq's store checks, the same through every
protocol: the length of its correlation id, and a start time, which becomes a delay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from taskq.errors import InvalidArgumentError
from taskq.models import TaskRequest

MAX_CORRELATION_ID: Final = 255


def delay_until(run_at: datetime, now: datetime) -> timedelta:
    """A start time as a delay by the server's clock: a past time means now."""
    return max(timedelta(0), run_at - now)


def check_correlation_ids(tasks: Sequence[TaskRequest]) -> None:
    """Errors name the task as the store does, `tasks[i].correlation_id`."""
    for i, task in enumerate(tasks):
        if task.correlation_id is not None and not (
            1 <= len(task.correlation_id) <= MAX_CORRELATION_ID
        ):
            raise InvalidArgumentError(
                f"tasks[{i}].correlation_id",
                f"must be 1..{MAX_CORRELATION_ID} characters (leave it out for none)",
            )
