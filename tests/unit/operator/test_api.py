"""The TaskQueue, WorkerPool and TaskqApiKey models: defaults, the wire format, and errors
naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from taskq.models import COUNTS, BackoffPolicy, QueueSettings, QueueStats, setting_fields
from taskq_operator.api import (
    OPERATOR_ENV,
    AutoscalingSpec,
    Condition,
    SecretKeyRef,
    TaskqApiKeySpec,
    TaskQueueSpec,
    TaskQueueStatus,
    WorkerPoolSpec,
    set_condition,
)
from taskq_operator.openapi import structural_schema
from tests.queue_settings import other_settings, taskqueue_spec

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pool(**fields: Any) -> dict[str, Any]:
    return {"queues": ["emails"], "image": "example/app:1", "app": "app.tasks", **fields}


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(tuple(e["loc"]), e["msg"]) for e in exc.value.errors()]


def test_an_empty_task_queue_spec_has_the_queue_stores_defaults() -> None:
    assert TaskQueueSpec().queue_settings() == QueueSettings()
    assert TaskQueueSpec().deletion_policy == "Retain"
    assert TaskQueueSpec().database is None


def test_task_queue_spec_maps_every_field_to_queue_settings() -> None:
    spec = TaskQueueSpec.model_validate(
        {
            "database": {"secretKeyRef": {"name": "pg"}},
            "defaultPriority": 80,
            "retry": {
                "maxAttempts": 7,
                "backoff": {"kind": "linear", "baseSeconds": 0.5, "maxSeconds": 60, "jitter": 0},
            },
            "timeoutSeconds": 45,
            "payloadLimitBytes": 1024,
            "retention": {"succeededSeconds": 60, "deadSeconds": 0},
            "rateLimit": {"perSecond": 2.5, "burst": 10},
            "concurrencyLimit": 4,
            "paused": True,
            "deletionPolicy": "Delete",
        }
    )
    assert spec.queue_settings() == QueueSettings(
        default_priority=80,
        max_attempts=7,
        backoff=BackoffPolicy(kind="linear", base_seconds=0.5, max_seconds=60, jitter=0),
        timeout_seconds=45.0,
        payload_limit_bytes=1024,
        retention_succeeded_seconds=60,
        retention_dead_seconds=0,
        rate_limit_per_second=2.5,
        rate_burst=10,
        concurrency_limit=4,
        paused=True,
    )
    assert spec.database is not None
    assert spec.database.secret_key_ref == SecretKeyRef(name="pg", key="dsn")


def test_python_names_work_too() -> None:
    assert TaskQueueSpec(timeout_seconds=5).timeout_seconds == 5


def test_to_k8s_is_camel_case_without_unset_fields_and_round_trips() -> None:
    spec = TaskQueueSpec.model_validate({"rateLimit": {"perSecond": 1}})
    wire = spec.to_k8s()
    assert wire["rateLimit"] == {"perSecond": 1.0}
    assert wire["retry"]["backoff"]["baseSeconds"] == 1.0
    assert "database" not in wire
    assert "concurrencyLimit" not in wire
    assert TaskQueueSpec.model_validate(wire) == spec


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"timeout": 5}, ("timeout",), "Extra inputs are not permitted"),
        ({"retry": {"maxAttempts": 0}}, ("retry", "maxAttempts"), "greater than or equal to 1"),
        ({"defaultPriority": 101}, ("defaultPriority",), "less than or equal to 100"),
        ({"timeoutSeconds": 0}, ("timeoutSeconds",), "greater than or equal to 1"),
        ({"deletionPolicy": "Orphan"}, ("deletionPolicy",), "'Retain' or 'Delete'"),
        ({"rateLimit": {"perSecond": 0}}, ("rateLimit", "perSecond"), "greater than 0"),
        ({"rateLimit": {}}, ("rateLimit", "perSecond"), "Field required"),
        (
            {"retry": {"backoff": {"baseSeconds": 10, "maxSeconds": 5}}},
            ("retry", "backoff"),
            "baseSeconds must not exceed retry.backoff.maxSeconds",
        ),
        (
            {"database": {"secretKeyRef": {"name": "Not_A_Name"}}},
            ("database", "secretKeyRef", "name"),
            "should match pattern",
        ),
        (  # a signing secret has no conventional key: unlike the DSN's, it must be named
            {"webhooks": [{"name": "billing", "url": "https://hooks.example/x",
                           "secretRef": {"name": "hooks"}}]},
            ("webhooks", 0, "secretRef", "key"),
            "Field required",
        ),
    ],
)
def test_task_queue_spec_errors_name_the_field(
    body: dict[str, Any], loc: tuple[str | int, ...], words: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        TaskQueueSpec.model_validate(body)
    [(where, message)] = errors(exc)
    assert where == loc
    assert words in message


def test_a_minimal_worker_pool_spec_gets_defaults() -> None:
    spec = WorkerPoolSpec.model_validate(pool())
    assert spec.concurrency == 10
    assert spec.replicas is None
    assert spec.termination_grace_period_seconds == 30
    assert spec.autoscaling == AutoscalingSpec(
        mode="Builtin",
        min_replicas=1,
        max_replicas=10,
        target_backlog_per_replica=10,
        activation_threshold=1,
        scale_up_stabilization_seconds=0,
        scale_down_stabilization_seconds=60,
        poll_interval_seconds=10,
    )
    assert spec.env == []
    assert spec.pod.labels == {}


def test_worker_pool_spec_accepts_kubernetes_shaped_fields() -> None:
    spec = WorkerPoolSpec.model_validate(
        pool(
            app="app.tasks:registry",
            resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 2}},
            env=[
                {"name": "TASKQ_LOG_LEVEL", "value": "DEBUG"},
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "k"}}},
            ],
            envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
            pod={
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"anything": ["goes"]}},
                "labels": {"example.com/team": "mail", "tier": ""},
                "nodeSelector": {"kubernetes.io/arch": "amd64"},
            },
            autoscaling={"mode": "External", "minReplicas": 0},
            replicas=3,
        )
    )
    assert spec.resources is not None
    assert spec.resources.limits == {"cpu": 2}
    assert spec.to_k8s()["env"][1]["valueFrom"] == {"secretKeyRef": {"name": "api", "key": "k"}}
    assert spec.replicas == 3
    assert WorkerPoolSpec.model_validate(spec.to_k8s()) == spec


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"queues": []}, ("queues",), "at least 1 item"),
        ({"queues": ["Emails"]}, ("queues", 0), "should match pattern"),
        ({"queues": ["a", "a"]}, (), "must not repeat a queue"),
        ({"app": "my-app.tasks"}, ("app",), "should match pattern"),
        ({"image": ""}, ("image",), "at least 1 character"),
        ({"concurrency": 0}, ("concurrency",), "greater than or equal to 1"),
        ({"replicas": 2}, (), "spec.replicas is only honoured with autoscaling.mode External"),
        (
            {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            ("autoscaling",),
            "minReplicas must not exceed autoscaling.maxReplicas",
        ),
        ({"autoscaling": {"maxReplicas": 0}}, ("autoscaling", "maxReplicas"), "greater than"),
        ({"autoscaling": {"mode": "Keda"}}, ("autoscaling", "mode"), "'Builtin' or 'External'"),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "TASKQ_DSN", "value": "x"}]},
            (),
            "env must not set TASKQ_DSN: the operator sets these itself",
        ),
        (
            {
                "pooler": {"secretKeyRef": {"name": "pgbouncer"}},
                "env": [{"name": "TASKQ_LISTEN", "value": "true"}],
            },
            (),
            "env must not set TASKQ_DB_POOL_MODE or TASKQ_LISTEN with pooler",
        ),
        ({"pooler": {"secretKeyRef": {"key": "dsn"}}}, ("pooler", "secretKeyRef", "name"), ""),
        (
            {"resources": {"limits": {"memory": "lots"}}},
            ("resources", "limits", "memory"),
            "'lots' is not a quantity",
        ),
        ({"pod": {"tolerations": [{"effect": "Never"}]}}, ("pod", "tolerations", 0, "effect"), ""),
        ({"image": "x", "imagePull": "Always"}, ("imagePull",), "Extra inputs are not permitted"),
        (
            {
                "env": [
                    {"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}
                ]
            },
            ("env", 0),
            "value or valueFrom, not both",
        ),
        ({"envFrom": [{"prefix": "A_"}]}, ("envFrom", 0), "exactly one of configMapRef"),
        ({"image": " busybox:1"}, (), "image must not contain whitespace"),
        (
            {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"key": "k"}}}]},
            ("env", 0, "valueFrom", "secretKeyRef", "name"),
            "Field required",
        ),
        (
            {"env": [{"name": "A", "valueFrom": {}}]},
            ("env", 0, "valueFrom"),
            "exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef",
        ),
        (
            {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": ""}}}]},
            ("env", 0, "valueFrom", "fieldRef", "fieldPath"),
            "at least 1 character",
        ),
        ({"pod": {"labels": {"bad key!": "x"}}}, ("pod",), "pod.labels: 'bad key!': keys must"),
        ({"pod": {"labels": {"team": "a b"}}}, ("pod", "labels", "team"), "should match"),
        ({"pod": {"nodeSelector": {"a/b/c": "x"}}}, ("pod",), "pod.nodeSelector: 'a/b/c'"),
        ({"pod": {"annotations": {"x" * 64: "long"}}}, ("pod",), "pod.annotations"),
        (
            {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
            ("envFrom", 0),
            "exactly one of configMapRef",
        ),
    ],
)
def test_worker_pool_spec_errors_name_the_field(
    fields: dict[str, Any], loc: tuple[str | int, ...], words: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        WorkerPoolSpec.model_validate(pool(**fields))
    found = errors(exc)
    assert any(where == loc and words in message for where, message in found), found


def test_a_minimal_api_key_spec_reaches_its_namespace_forever() -> None:
    spec = TaskqApiKeySpec.model_validate({"role": "viewer"})
    assert (spec.namespaces, spec.all_namespaces, spec.reads_payloads) == (None, False, False)
    assert (spec.expires_at, spec.secret_name, spec.database) == (None, None, None)
    wire = {"role": "operator", "namespaces": ["a", "b"], "expiresAt": "2030-01-01T00:00:00Z"}
    assert TaskqApiKeySpec.model_validate(wire).to_k8s() == {
        **wire,
        "expiresAt": "2030-01-01T00:00:00Z",
        "allNamespaces": False,
        "readsPayloads": False,
    }


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"role": "root"}, ("role",), "'viewer', 'operator' or 'admin'"),
        ({}, ("role",), "Field required"),
        ({"role": "viewer", "namespaces": ["a"], "allNamespaces": True}, (), "exclude each other"),
        ({"role": "viewer", "namespaces": ["a", "a"]}, (), "must not repeat"),
        ({"role": "viewer", "namespaces": []}, ("namespaces",), "at least 1 item"),
        ({"role": "viewer", "namespaces": ["Shop"]}, ("namespaces", 0), "pattern"),
        ({"role": "viewer", "expiresAt": "2030-01-01T00:00:00"}, ("expiresAt",), "timezone"),
        ({"role": "viewer", "secretName": "Bad_Name"}, ("secretName",), "pattern"),
    ],
)
def test_api_key_spec_errors_name_the_field(
    fields: dict[str, Any], loc: tuple[str | int, ...], words: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        TaskqApiKeySpec.model_validate(fields)
    found = errors(exc)
    assert any(where == loc and words in message for where, message in found), found


@pytest.mark.parametrize("name", OPERATOR_ENV)
def test_every_variable_the_operator_sets_is_reserved(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        WorkerPoolSpec.model_validate(pool(env=[{"name": name, "value": "1"}]))


def test_models_are_immutable() -> None:
    spec = WorkerPoolSpec.model_validate(pool())
    with pytest.raises(ValidationError):
        spec.concurrency = 3  # type: ignore[misc]


def test_task_queue_status_takes_an_observation() -> None:
    stats = QueueStats(
        ready=4,
        scheduled=2,
        running=3,
        dead=1,
        oldest_ready_at=NOW - timedelta(seconds=90),
        succeeded_last_minute=120,
        dead_last_minute=5,
        observed_at=NOW,
        count_cap=1000,
    )
    status = TaskQueueStatus(observed_generation=2).with_stats(stats)
    assert status.to_k8s() == {
        "observedGeneration": 2,
        "conditions": [],
        "tasks": {"ready": 4, "scheduled": 2, "running": 3, "dead": 1},
        "oldestReadyTime": "2026-01-02T03:02:35Z",
        "throughput": {"succeededLastMinute": 120, "deadLastMinute": 5},
        "observedAt": "2026-01-02T03:04:05Z",
        "countCap": 1000,
    }
    empty = stats.model_copy(update={"oldest_ready_at": None})
    assert "oldestReadyTime" not in status.with_stats(empty).to_k8s()


def test_task_queue_status_names_the_counts_that_reached_the_cap() -> None:
    at_cap = {c: 1000 for c in COUNTS}
    stats = QueueStats(
        **at_cap, oldest_ready_at=None, observed_at=NOW, count_cap=1000
    )
    written = TaskQueueStatus().with_stats(stats).to_k8s()
    assert written["capped"] == [
        "tasks.ready",
        "tasks.scheduled",
        "tasks.running",
        "tasks.dead",
        "throughput.succeededLastMinute",
        "throughput.deadLastMinute",
    ]
    # what the API server stores reads back (every name is one the CRD's enum allows)
    assert TaskQueueStatus.model_validate(written).capped == written["capped"]
    below = stats.model_copy(update={"ready": 999, "dead": 0})
    assert "tasks.ready" not in TaskQueueStatus().with_stats(below).to_k8s()["capped"]


def test_set_condition_moves_the_transition_time_only_when_the_status_changes() -> None:
    later = NOW + timedelta(minutes=5)
    first = set_condition(
        [], type="Ready", status="False", reason="Provisioning", message="", now=NOW
    )
    assert first == [
        Condition(
            type="Ready",
            status="False",
            reason="Provisioning",
            message="",
            last_transition_time=NOW,
        )
    ]
    same = set_condition(
        first, type="Ready", status="False", reason="DatabaseDown", message="x", now=later
    )
    assert same[0].last_transition_time == NOW
    assert same[0].reason == "DatabaseDown"
    flipped = set_condition(
        same, type="Ready", status="True", reason="Provisioned", message="", now=later
    )
    assert flipped[0].last_transition_time == later


def test_set_condition_keeps_other_conditions_in_place() -> None:
    conditions = set_condition(
        [], type="Ready", status="True", reason="Ok", message="", now=NOW, observed_generation=1
    )
    conditions = set_condition(
        conditions, type="Scaling", status="True", reason="ScaleUp", message="", now=NOW
    )
    conditions = set_condition(
        conditions, type="Ready", status="False", reason="Down", message="", now=NOW
    )
    assert [(c.type, c.status) for c in conditions] == [("Ready", "False"), ("Scaling", "True")]
    assert conditions[0].observed_generation is None


@pytest.mark.parametrize("settings", [QueueSettings(), other_settings()], ids=["default", "other"])
def test_every_queue_setting_has_one_spec_field_and_round_trips(settings: QueueSettings) -> None:
    spec = TaskQueueSpec.model_validate(taskqueue_spec(settings))
    assert spec.queue_settings() == settings


def test_spec_fields_state_the_settings_bounds_and_descriptions() -> None:
    """The CRD's words and limits for a setting are QueueSettings'."""
    schema = structural_schema(TaskQueueSpec)

    def leaves(node: dict[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, (*prefix, key))
            else:
                yield (*prefix, key)

    paths = list(leaves(taskqueue_spec(other_settings()), ()))
    assert len(paths) == len(setting_fields())
    descriptions = {f.info.description for f in setting_fields()}
    for path in paths:
        node = schema
        for key in path:
            node = node["properties"][key]
        assert node["description"] in descriptions, path
    assert schema["properties"]["retry"]["properties"]["maxAttempts"]["maximum"] == 1000
    assert schema["properties"]["rateLimit"]["properties"]["perSecond"]["exclusiveMinimum"]
    assert schema["properties"]["timeoutSeconds"]["minimum"] == 1  # whole seconds, > 0
