"""The worker Deployment, the DSN Secret and an API key's Secret, asserted field by field."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from taskq_operator.api import OPERATOR_ENV, DatabaseRef, SecretKeyRef, WorkerPoolSpec
from taskq_operator.resources import (
    MixedDatabasesError,
    ObjectRef,
    api_key_secret,
    default_dsn_ref,
    default_dsn_secret,
    label_selector,
    worker_deployment,
    worker_dsn,
)

POOL = ObjectRef(name="mailers", namespace="shop", uid="0b1c2d3e-uid")
DSN_REF = SecretKeyRef(name="shop-db", key="url")
OWNER = {
    "apiVersion": "taskq.dev/v1alpha1",
    "kind": "WorkerPool",
    "name": "mailers",
    "uid": "0b1c2d3e-uid",
    "controller": True,
    "blockOwnerDeletion": True,
}
LABELS = {
    "app.kubernetes.io/name": "taskq-worker",
    "app.kubernetes.io/instance": "mailers",
    "app.kubernetes.io/component": "worker",
    "app.kubernetes.io/managed-by": "taskq-operator",
}
SELECTOR = {"app.kubernetes.io/name": "taskq-worker", "app.kubernetes.io/instance": "mailers"}


def spec(**fields: Any) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate(
        {"queues": ["emails", "receipts"], "image": "shop/app:1.2", "app": "shop.tasks", **fields}
    )


def deployment(replicas: int = 3, **fields: Any) -> dict[str, Any]:
    return worker_deployment(POOL, spec(**fields), replicas=replicas, dsn=DSN_REF)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    [only] = manifest["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    entries = container(manifest)["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in entries}


def test_deployment_identity_ownership_and_replicas() -> None:
    manifest = deployment(replicas=4)
    assert manifest["apiVersion"] == "apps/v1"
    assert manifest["kind"] == "Deployment"
    assert manifest["metadata"] == {
        "name": "mailers",
        "namespace": "shop",
        "labels": LABELS,
        "ownerReferences": [OWNER],
    }
    assert manifest["spec"]["replicas"] == 4
    assert manifest["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert manifest["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }
    assert manifest["spec"]["template"]["metadata"] == {"labels": LABELS}


def test_zero_replicas_is_a_valid_deployment() -> None:
    assert deployment(replicas=0)["spec"]["replicas"] == 0


def test_the_worker_container() -> None:
    worker = container(deployment())
    assert worker["name"] == "worker"
    assert worker["image"] == "shop/app:1.2"
    assert worker["command"] == ["taskq"]
    assert worker["args"] == ["worker"]
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert (
        worker["startupProbe"]["periodSeconds"] * worker["startupProbe"]["failureThreshold"] == 60
    )
    assert worker["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    for absent in ("envFrom", "imagePullPolicy", "resources"):
        assert absent not in worker


def test_the_environment_contract() -> None:
    assert env(deployment()) == {
        "TASKQ_DSN": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "TASKQ_QUEUES": "shop/emails,shop/receipts",
        "TASKQ_APP": "shop.tasks",
        "TASKQ_CONCURRENCY": "10",
        "TASKQ_METRICS_PORT": "9090",
        "TASKQ_METRICS_HOST": "0.0.0.0",
        "TASKQ_SHUTDOWN_GRACE": "25",
        "TASKQ_POD_UID": {"fieldRef": {"fieldPath": "metadata.uid"}},
    }
    assert tuple(env(deployment())) == OPERATOR_ENV


def test_the_dsn_is_only_ever_a_secret_reference() -> None:
    [dsn] = [e for e in container(deployment())["env"] if e["name"] == "TASKQ_DSN"]
    assert "value" not in dsn
    assert dsn["valueFrom"] == {"secretKeyRef": {"name": "shop-db", "key": "url"}}
    assert "postgres" not in json.dumps(deployment())


@pytest.mark.parametrize(("grace", "shutdown"), [(30, "25"), (120, "115"), (6, "1"), (1, "1")])
def test_shutdown_grace_fits_in_the_termination_grace_period(grace: int, shutdown: str) -> None:
    manifest = deployment(terminationGracePeriodSeconds=grace)
    assert manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace
    assert env(manifest)["TASKQ_SHUTDOWN_GRACE"] == shutdown


def test_user_settings_follow_the_operators() -> None:
    manifest = deployment(
        concurrency=50,
        imagePullPolicy="Always",
        env=[
            {"name": "TASKQ_LOG_LEVEL", "value": "DEBUG"},
            {"name": "SMTP_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "smtp", "key": "pw"}}},
        ],
        envFrom=[{"configMapRef": {"name": "shop-settings"}, "prefix": "SHOP_"}],
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    )
    worker = container(manifest)
    assert [e["name"] for e in worker["env"]][len(OPERATOR_ENV) :] == [
        "TASKQ_LOG_LEVEL",
        "SMTP_PASSWORD",
    ]
    assert worker["env"][-1] == {
        "name": "SMTP_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "smtp", "key": "pw"}},
    }
    assert env(manifest)["TASKQ_CONCURRENCY"] == "50"
    assert worker["envFrom"] == [{"configMapRef": {"name": "shop-settings"}, "prefix": "SHOP_"}]
    assert worker["imagePullPolicy"] == "Always"
    assert worker["resources"] == {
        "limits": {"memory": "1Gi"},
        "requests": {"cpu": "250m", "memory": "256Mi"},
    }


def test_restricted_pod_security() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(deployment())["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


def test_without_overrides_the_pod_spec_has_no_scheduling_fields() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert set(pod) == {
        "containers",
        "volumes",
        "terminationGracePeriodSeconds",
        "securityContext",
        "enableServiceLinks",
        "automountServiceAccountToken",
    }


def test_pod_overrides() -> None:
    affinity: dict[str, Any] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}
    }
    manifest = deployment(
        pod={
            "labels": {"team": "shop", "app.kubernetes.io/instance": "hijack"},
            "annotations": {"prometheus.io/scrape": "true"},
            "nodeSelector": {"pool": "workers"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": affinity,
            "serviceAccountName": "shop-worker",
            "imagePullSecrets": [{"name": "registry"}],
            "priorityClassName": "batch",
        }
    )
    template = manifest["spec"]["template"]
    assert template["metadata"]["labels"] == {"team": "shop", **LABELS}
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == affinity
    assert pod["serviceAccountName"] == "shop-worker"
    assert "automountServiceAccountToken" not in pod
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["priorityClassName"] == "batch"


def test_the_selector_selects_the_pods() -> None:
    manifest = deployment(pod={"labels": {"team": "shop"}})
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert manifest["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert label_selector("mailers") == (
        "app.kubernetes.io/instance=mailers,app.kubernetes.io/name=taskq-worker"
    )


def test_builders_are_deterministic() -> None:
    assert deployment() == deployment()
    assert json.dumps(deployment(), sort_keys=True) == json.dumps(deployment(), sort_keys=True)


def test_the_default_dsn_copy_is_owned_by_the_pool() -> None:
    secret = default_dsn_secret(POOL, "postgresql://taskq:pw@db:5432/taskq")
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "mailers-taskq-dsn",
            "namespace": "shop",
            "labels": LABELS,
            "ownerReferences": [OWNER],
        },
        "type": "Opaque",
        "data": {"dsn": base64.b64encode(b"postgresql://taskq:pw@db:5432/taskq").decode()},
    }
    assert default_dsn_ref("mailers") == SecretKeyRef(name="mailers-taskq-dsn", key="dsn")


def test_an_api_keys_secret_is_owned_by_its_taskqapikey() -> None:
    owner = ObjectRef(name="ci", namespace="shop", uid="4e5f-uid")
    secret = api_key_secret(owner, "ci-taskq-key", "tq_abcd1234_s3cret")
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "ci-taskq-key",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "taskq-operator", "taskq.dev/api-key": "ci"},
            "ownerReferences": [{**OWNER, "kind": "TaskqApiKey", "name": "ci", "uid": "4e5f-uid"}],
        },
        "type": "Opaque",
        "data": {"key": base64.b64encode(b"tq_abcd1234_s3cret").decode()},
    }


def test_a_pool_on_the_default_database_reads_the_copy() -> None:
    assert worker_dsn({"emails": None, "receipts": None}) is None
    ref = default_dsn_ref(POOL.name)
    assert env(worker_deployment(POOL, spec(), replicas=1, dsn=ref))["TASKQ_DSN"] == {
        "secretKeyRef": {"name": "mailers-taskq-dsn", "key": "dsn"}
    }


def test_a_pool_through_a_pooler_connects_with_its_dsn_in_transaction_mode() -> None:
    pooled = deployment(pooler={"secretKeyRef": {"name": "pgbouncer", "key": "shop"}})
    found = env(pooled)
    assert found["TASKQ_DSN"] == {"secretKeyRef": {"name": "pgbouncer", "key": "shop"}}
    assert (found["TASKQ_DB_POOL_MODE"], found["TASKQ_LISTEN"]) == ("transaction", "false")
    # without one: the queues' database, and the worker's defaults
    direct = env(deployment())
    assert direct["TASKQ_DSN"] == {"secretKeyRef": {"name": "shop-db", "key": "url"}}
    assert "TASKQ_DB_POOL_MODE" not in direct
    assert "TASKQ_LISTEN" not in direct


def test_a_pool_on_a_named_database_reads_its_secret() -> None:
    db = DatabaseRef(secret_key_ref=DSN_REF)
    same = DatabaseRef.model_validate({"secretKeyRef": {"name": "shop-db", "key": "url"}})
    assert worker_dsn({"emails": db, "receipts": same}) == DSN_REF


def test_a_pool_cannot_span_databases() -> None:
    db = DatabaseRef(secret_key_ref=DSN_REF)
    with pytest.raises(MixedDatabasesError) as exc:
        worker_dsn({"receipts": db, "emails": None})
    assert str(exc.value) == (
        "the pool's queues are in different databases (emails: the operator's default "
        "database, receipts: Secret shop-db key url); split the pool into one per database"
    )
