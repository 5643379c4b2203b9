"""What the dashboard says a bulk cancel or retry did: every outcome counted, and never a
success for an action that changed nothing."""

from __future__ import annotations

import pytest

from taskq.models import BulkCancelResult, BulkRetryResult
from taskq_api.dashboard.tasks import cancel_report, retry_report


@pytest.mark.parametrize(("result", "said"), [
    (BulkCancelResult(1, 0, 0, 0, 0), "Canceled 1 task."),
    (BulkCancelResult(3, 2, 0, 0, 0), "Canceled 3 tasks; asked 2 running tasks to stop."),
    (BulkCancelResult(0, 1, 0, 0, 0), "Asked 1 running task to stop."),
    (BulkCancelResult(2, 0, 1, 4, 1),
     "Canceled 2 tasks. Skipped 6: 4 already finished (succeeded or dead), 1 already canceled "
     "or asked to stop, 1 no longer there."),
    (BulkCancelResult(0, 0, 2, 0, 0),
     "Nothing canceled. Skipped 2: 2 already canceled or asked to stop."),
])
def test_a_bulk_cancel_is_reported_outcome_by_outcome(
    result: BulkCancelResult, said: str
) -> None:
    assert cancel_report(result) == said


@pytest.mark.parametrize(("result", "said"), [
    (BulkRetryResult(5, 0, 0), "Retried 5 dead tasks."),
    (BulkRetryResult(1, 1, 2),
     "Retried 1 dead task. Skipped 3: 2 not dead (retried already, never failed, or gone), "
     "1 whose idempotency key an unfinished task holds."),
    (BulkRetryResult(0, 0, 3),
     "Nothing retried. Skipped 3: 3 not dead (retried already, never failed, or gone)."),
])
def test_a_bulk_retry_is_reported_outcome_by_outcome(result: BulkRetryResult, said: str) -> None:
    assert retry_report(result) == said


def test_results_of_batches_add_up() -> None:
    assert BulkCancelResult(1, 2, 3, 4, 5) + BulkCancelResult(1, 1, 1, 1, 1) == (
        BulkCancelResult(2, 3, 4, 5, 6))
    assert BulkRetryResult(1, 2, 3) + BulkRetryResult(3, 2, 1) == BulkRetryResult(4, 4, 4)
