"""Prometheus metrics of the operator: queue depth and age, throughput, replicas, scaling
decisions, reconcile errors, and its share of maintenance. Gauges of a deleted resource are
removed with it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from taskq.models import COUNTS, QueueStats
from taskq_operator.autoscaling import Decision


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        queue = ["namespace", "queue"]
        pool = ["namespace", "pool"]
        self.tasks = Gauge(
            "taskq_queue_tasks",
            "Tasks in a queue by state",
            [*queue, "state"],
            registry=self.registry,
        )
        self.oldest = Gauge(
            "taskq_queue_oldest_ready_age_seconds",
            "How long the oldest ready task has waited",
            queue,
            registry=self.registry,
        )
        self.finished = Gauge(
            "taskq_queue_finished_last_minute",
            "Tasks that finished in the last minute, by outcome",
            [*queue, "outcome"],
            registry=self.registry,
        )
        self.capped = Gauge(
            "taskq_queue_count_capped",
            "1 when a count of taskq_queue_tasks (count: its state) or "
            "taskq_queue_finished_last_minute (count: succeeded_last_minute, dead_last_minute) "
            "reached the operator's count cap: at least that many, not exactly",
            [*queue, "count"],
            registry=self.registry,
        )
        self.desired = Gauge(
            "taskq_workerpool_desired_replicas",
            "Workers the operator asks for",
            pool,
            registry=self.registry,
        )
        self.current = Gauge(
            "taskq_workerpool_replicas",
            "Workers the Deployment had when the pool was reconciled",
            pool,
            registry=self.registry,
        )
        self.ready = Gauge(
            "taskq_workerpool_ready_replicas", "Ready workers", pool, registry=self.registry
        )
        self.decisions = Counter(
            "taskq_scaling_decisions",
            "Scaling passes by direction (up, down, hold) and reason",
            [*pool, "direction", "reason"],
            registry=self.registry,
        )
        self.errors = Counter(
            "taskq_reconcile_errors",
            "Reconcile passes that hit a problem",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.maintenance_turns = Counter(
            "taskq_maintenance_turns",
            "Turns at a maintenance service the operator won and ran, by service",
            ["service"],
            registry=self.registry,
        )
        self.maintenance_errors = Counter(
            "taskq_maintenance_errors",
            "Maintenance turns that failed and are retried, by service",
            ["service"],
            registry=self.registry,
        )
        self.rescues = Counter(
            "taskq_tasks_rescued",
            "Running tasks the operator's maintenance gave back to their queue, by cause",
            ["cause"],
            registry=self.registry,
        )
        self.purges = Counter(
            "taskq_tasks_purged",
            "Finished tasks the operator's maintenance deleted past their queue's retention",
            registry=self.registry,
        )
        self.dispatched = Counter(
            "taskq_webhooks_dispatched",
            "Webhook deliveries the operator's dispatcher enqueued",
            registry=self.registry,
        )
        self.ticks = Counter(
            "taskq_schedule_ticks",
            "Schedule ticks the operator's scheduler handled, by outcome",
            ["outcome"],
            registry=self.registry,
        )

    def queue_observed(self, namespace: str, queue: str, stats: QueueStats) -> None:
        for state in ("ready", "scheduled", "running", "dead"):
            self.tasks.labels(namespace, queue, state).set(getattr(stats, state))
        self.oldest.labels(namespace, queue).set(stats.oldest_ready_age_seconds)
        self.finished.labels(namespace, queue, "succeeded").set(stats.succeeded_last_minute)
        self.finished.labels(namespace, queue, "dead").set(stats.dead_last_minute)
        for count in COUNTS:
            self.capped.labels(namespace, queue, count).set(count in stats.capped)

    def queue_deleted(self, namespace: str, queue: str) -> None:
        for state in ("ready", "scheduled", "running", "dead"):
            _remove(self.tasks, namespace, queue, state)
        _remove(self.oldest, namespace, queue)
        for outcome in ("succeeded", "dead"):
            _remove(self.finished, namespace, queue, outcome)
        for count in COUNTS:
            _remove(self.capped, namespace, queue, count)

    def pool_decided(
        self, namespace: str, pool: str, decision: Decision, current: int, ready: int
    ) -> None:
        self.desired.labels(namespace, pool).set(decision.desired)
        self.current.labels(namespace, pool).set(current)
        self.ready.labels(namespace, pool).set(ready)
        self.decisions.labels(namespace, pool, decision.direction, decision.reason).inc()

    def pool_deleted(self, namespace: str, pool: str) -> None:
        for gauge in (self.desired, self.current, self.ready):
            _remove(gauge, namespace, pool)

    def reconcile_error(self, kind: str, reason: str) -> None:
        self.errors.labels(kind, reason).inc()

    # the maintenance port (taskq.maintenance.ports.MaintenanceMetrics)

    def turn_taken(self, service: str) -> None:
        self.maintenance_turns.labels(service).inc()

    def maintenance_failed(self, service: str) -> None:
        self.maintenance_errors.labels(service).inc()

    def rescued(self, cause: str, count: int) -> None:
        self.rescues.labels(cause).inc(count)

    def purged(self, count: int) -> None:
        self.purges.inc(count)

    def schedule_ticks(self, outcome: str, count: int) -> None:
        self.ticks.labels(outcome).inc(count)

    def webhooks_dispatched(self, count: int) -> None:
        self.dispatched.inc(count)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


class ConnectionsCollector:
    """The operator's connections to each database, read from its pools at scrape time."""

    def __init__(self, connections: Callable[[], list[tuple[str, int, int]]]) -> None:
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "taskq_operator_db_connections",
            "Connections of the operator's pool to each database, by use (one LISTEN more each)",
            labels=["database", "use"],
        )
        for database, busy, idle in self._connections():
            family.add_metric([database, "busy"], busy)
            family.add_metric([database, "idle"], idle)
        yield family
