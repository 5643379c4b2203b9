"""Prometheus metrics of a worker process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["queue", "task"]
        self._started = Counter("taskq_tasks_started", "Attempts started", labels,
                                registry=self.registry)
        self._finished = Counter("taskq_tasks_finished", "Attempts finished, by outcome",
                                 [*labels, "outcome"], registry=self.registry)
        self._states = Counter("taskq_tasks_settled", "Tasks left in a state by an attempt "
                               "(succeeded, retrying, dead, canceled)", ["queue", "state"],
                               registry=self.registry)
        self._duration = Histogram("taskq_task_duration_seconds", "Handler run time", labels,
                                   buckets=_DURATION_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("taskq_tasks_in_flight", "Attempts running in this process",
                               registry=self.registry)
        self.lost_leases = Counter("taskq_leases_lost", "Attempts stopped because their lease "
                                   "was lost", registry=self.registry)
        self.db_errors = Counter("taskq_database_errors", "Database calls that failed and are "
                                 "retried", ["operation"], registry=self.registry)
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}

    def started(self, queue: str, task: str) -> None:
        key = (queue, task)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._started.labels(queue, task), self._duration.labels(queue, task)
            )
        children[0].inc()
        self.in_flight.inc()

    def finished(self, queue: str, task: str, outcome: str, seconds: float) -> None:
        self._finished.labels(queue, task, outcome).inc()
        self._children[(queue, task)][1].observe(seconds)
        self.in_flight.dec()

    def settled(self, queue: str, state: str, count: int = 1) -> None:
        self._states.labels(queue, state).inc(count)
