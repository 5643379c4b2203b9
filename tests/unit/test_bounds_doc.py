"""docs/bounds.md is generated from the models and MAX_* constants that enforce the bounds
(devenv/bounds_doc.py): it fails here while stale, so it cannot drift from them."""

from __future__ import annotations

from pathlib import Path

from devenv import bounds_doc

from taskq.models import MAX_DELAY_SECONDS, MAX_PERIOD_SECONDS, MAX_RETENTION_SECONDS
from taskq.schedules import MAX_MISSED_RUNS

_DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_page_is_up_to_date() -> None:
    assert bounds_doc.main(["--check"]) == 0, "run: .venv/bin/python -m devenv.bounds_doc"


def test_the_page_states_the_constants() -> None:
    text = bounds_doc.DOC.read_text(encoding="utf-8")
    for row, bound in (
        ("| `spec.retention.succeededSeconds` | `--retention-succeeded` |", MAX_RETENTION_SECONDS),
        ("| `delay` | `--delay` | `p_delay_s` |", MAX_DELAY_SECONDS),
        ("| `claim`, `heartbeat` | `p_lease_s` |", MAX_PERIOD_SECONDS),
        ("| `TASKQ_LEASE_SECONDS` |", MAX_PERIOD_SECONDS),
        ("| `spec.maxMissedRuns` | `max_missed_runs` |", MAX_MISSED_RUNS),
    ):
        [line] = [line for line in text.splitlines() if line.startswith(row)]
        assert bounds_doc._number(bound) in line, line


def test_the_page_is_linked() -> None:
    assert "(bounds.md)" in (_DOCS / "design.md").read_text(encoding="utf-8")
