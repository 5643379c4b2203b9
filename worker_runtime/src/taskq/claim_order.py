"""Claim order: priority (higher first), then run_at, then id, as taskq.claim reads the ready
index. A point in that order is where a worker's next claim on a queue resumes (docs/design.md,
"Claims resume where they left off")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """A point in claim order (priority descending, then run_at, then id): a claim reads the
    queue's ready tasks after it. The last task the worker claimed, or a point before tasks
    that became ready (id 0: before every task of that priority and run_at)."""

    priority: int
    run_at: datetime
    id: int = 0

    def before(self, other: ResumePoint) -> bool:
        """Whether this point comes first in claim order."""
        return (-self.priority, self.run_at, self.id) < (-other.priority, other.run_at, other.id)
