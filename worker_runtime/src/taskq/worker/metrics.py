"""Prometheus metrics of a worker process.

Counting happens on the hot path of every task, so counts are plain integers in dicts and a
collector turns them into metric families at scrape time (prometheus_client's Counter and
Histogram cost several microseconds per update, which at tens of thousands of tasks per second
was a tenth of the worker's CPU). Scrapes run on the worker's event loop: no locks needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class _Durations:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.started_count: dict[tuple[str, str], int] = {}
        self.finished_count: dict[tuple[str, str, str], int] = {}
        self.settled_count: dict[tuple[str, str], int] = {}
        self.durations: dict[tuple[str, str], _Durations] = {}
        self.lost_leases = 0
        self.db_errors: dict[str, int] = {}
        self.loop_restarts: dict[str, int] = {}
        self.rescues: dict[str, int] = {}
        self.maintenance_turns: dict[str, int] = {}
        self.purged_count = 0
        self.ticks: dict[str, int] = {}
        self.dispatched_count = 0
        self.in_flight: Callable[[], int] = lambda: 0
        self.outcomes_pending: Callable[[], int] = lambda: 0
        # the pool's connections open (busy, idle); the beat and LISTEN hold one more each
        self.db_connections: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.registry.register(self)

    def started(self, queue: str, task: str) -> None:
        key = (queue, task)
        self.started_count[key] = self.started_count.get(key, 0) + 1

    def finished(self, queue: str, task: str, outcome: str, seconds: float) -> None:
        key = (queue, task, outcome)
        self.finished_count[key] = self.finished_count.get(key, 0) + 1
        durations = self.durations.get((queue, task))
        if durations is None:
            durations = self.durations[(queue, task)] = _Durations()
        durations.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        durations.total += seconds

    def settled(self, queue: str, state: str, count: int = 1) -> None:
        self.settled_count[(queue, state)] = self.settled_count.get((queue, state), 0) + count

    def db_error(self, operation: str) -> None:
        self.db_errors[operation] = self.db_errors.get(operation, 0) + 1

    def rescued(self, cause: str, count: int) -> None:
        """Tasks this process gave back for others to run: `worker_died` (a dead worker's,
        noticed by this process's beat), `lease_expired` (by the Rescuer, when this process
        had its turn) or `orphaned_claim` (its own, taken by a claim whose reply was lost)."""
        self.rescues[cause] = self.rescues.get(cause, 0) + count

    # the maintenance port (taskq.maintenance.ports.MaintenanceMetrics)

    def turn_taken(self, service: str) -> None:
        self.maintenance_turns[service] = self.maintenance_turns.get(service, 0) + 1

    def maintenance_failed(self, service: str) -> None:
        self.db_error("maintenance")

    def purged(self, count: int) -> None:
        self.purged_count += count

    def schedule_ticks(self, outcome: str, count: int) -> None:
        self.ticks[outcome] = self.ticks.get(outcome, 0) + count

    def webhooks_dispatched(self, count: int) -> None:
        self.dispatched_count += count

    def loop_restarted(self, loop: str) -> None:
        self.loop_restarts[loop] = self.loop_restarts.get(loop, 0) + 1

    def collect(self) -> Iterator[Metric]:
        started = CounterMetricFamily(
            "taskq_tasks_started", "Attempts started", labels=["queue", "task"]
        )
        for (queue, task), n in self.started_count.items():
            started.add_metric([queue, task], n)
        yield started
        finished = CounterMetricFamily(
            "taskq_tasks_finished",
            "Attempts finished, by outcome "
            "(succeeded, failed, fatal, timed_out, canceled, "
            "lease_lost, shutdown)",
            labels=["queue", "task", "outcome"],
        )
        for (queue, task, outcome), n in self.finished_count.items():
            finished.add_metric([queue, task, outcome], n)
        yield finished
        settled = CounterMetricFamily(
            "taskq_tasks_settled",
            "Tasks an attempt left in a state: succeeded, retrying, dead or canceled",
            labels=["queue", "state"],
        )
        for (queue, state), n in self.settled_count.items():
            settled.add_metric([queue, state], n)
        yield settled
        duration = HistogramMetricFamily(
            "taskq_task_duration_seconds", "Handler run time", labels=["queue", "task"]
        )
        for (queue, task), d in self.durations.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*DURATION_BUCKETS, float("inf")), d.counts, strict=True):
                cumulative += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            duration.add_metric([queue, task], buckets, d.total)
        yield duration
        yield GaugeMetricFamily(
            "taskq_tasks_in_flight", "Attempts running in this process", value=self.in_flight()
        )
        yield CounterMetricFamily(
            "taskq_leases_lost",
            "Attempts stopped because their lease was lost",
            value=self.lost_leases,
        )
        errors = CounterMetricFamily(
            "taskq_database_errors",
            "Database calls that failed and are retried",
            labels=["operation"],
        )
        for operation, n in self.db_errors.items():
            errors.add_metric([operation], n)
        yield errors
        yield GaugeMetricFamily(
            "taskq_outcomes_pending",
            "Finished attempts whose outcome is not yet recorded in the database",
            value=self.outcomes_pending(),
        )
        connections = GaugeMetricFamily(
            "taskq_db_connections",
            "Connections of the worker's pool to PostgreSQL (or to PgBouncer), by use",
            labels=["use"],
        )
        busy, idle = self.db_connections()
        connections.add_metric(["busy"], busy)
        connections.add_metric(["idle"], idle)
        yield connections
        restarts = CounterMetricFamily(
            "taskq_worker_loop_restarts",
            "Worker loops that crashed and were started again",
            labels=["loop"],
        )
        for loop, n in self.loop_restarts.items():
            restarts.add_metric([loop], n)
        yield restarts
        rescues = CounterMetricFamily(
            "taskq_tasks_rescued",
            "Running tasks this process gave back to the queue, by cause "
            "(worker_died, lease_expired, orphaned_claim)",
            labels=["cause"],
        )
        for cause, n in self.rescues.items():
            rescues.add_metric([cause], n)
        yield rescues
        turns = CounterMetricFamily(
            "taskq_maintenance_turns",
            "Turns at a maintenance service this process won and ran, by service",
            labels=["service"],
        )
        for service, n in self.maintenance_turns.items():
            turns.add_metric([service], n)
        yield turns
        ticks = CounterMetricFamily(
            "taskq_schedule_ticks",
            "Schedule ticks this process's scheduler handled, by outcome",
            labels=["outcome"],
        )
        for outcome, n in self.ticks.items():
            ticks.add_metric([outcome], n)
        yield ticks
        yield CounterMetricFamily(
            "taskq_webhooks_dispatched",
            "Webhook deliveries this process's dispatcher enqueued",
            value=self.dispatched_count,
        )
        yield CounterMetricFamily(
            "taskq_tasks_purged",
            "Finished tasks this process deleted past their queue's retention",
            value=self.purged_count,
        )
