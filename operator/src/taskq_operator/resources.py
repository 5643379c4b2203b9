"""Pure builders of the Kubernetes objects the operator owns, as plain manifests (dicts).

The reconciler sends them; nothing here talks to the API server, so every field is asserted
by unit tests. Names are fixed by the owner's name, so create-or-patch never duplicates.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskq.worker.settings import env_name
from taskq_operator.api import (
    API_VERSION,
    OPERATOR_SETTINGS,
    DatabaseRef,
    SecretKeyRef,
    WorkerPoolSpec,
)

Manifest = dict[str, Any]

WORKER_NAME = "taskq-worker"
MANAGED_BY = "taskq-operator"
CONTAINER = "worker"
METRICS_PORT = 9090
# The uid and gid of the worker base image's user; pods run as them whatever the image says,
# so runAsNonRoot holds even for an image whose USER is a name or root. Pinned here: the
# Dockerfile, the chart's securityContext and the docs are tested against it
# (tests/unit/operator/test_worker_contract.py).
WORKER_UID = 10001
# Seconds of terminationGracePeriodSeconds kept back from TASKQ_SHUTDOWN_GRACE, for the worker
# to give unfinished tasks back and exit before the kubelet kills it.
SHUTDOWN_MARGIN_SECONDS = 5
DEFAULT_DSN_KEY = "dsn"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Identity of a WorkerPool or a TaskqApiKey, from its metadata."""

    name: str
    namespace: str
    uid: str


class MixedDatabasesError(ValueError):
    """A pool's queues live in different databases; a worker connects to one."""


def selector_labels(pool: str) -> dict[str, str]:
    """The labels that select a pool's pods; a Deployment's selector is immutable, so these
    never change."""
    return {"app.kubernetes.io/name": WORKER_NAME, "app.kubernetes.io/instance": pool}


def worker_labels(pool: str) -> dict[str, str]:
    return {
        **selector_labels(pool),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def label_selector(pool: str) -> str:
    """selector_labels as a selector string, for WorkerPool status.selector (HPA, KEDA)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(pool).items()))


def owner_reference(owner: ObjectRef, kind: str) -> Manifest:
    """The owner (of `kind`) controls what it owns: deleting it deletes them (garbage
    collection)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def default_dsn_ref(pool: str) -> SecretKeyRef:
    """Where a pool's pods read the operator's default DSN: pods cannot reference a Secret
    in another namespace, so the operator copies it next to them (default_dsn_secret)."""
    return SecretKeyRef(name=f"{pool}-taskq-dsn", key=DEFAULT_DSN_KEY)


def worker_dsn(databases: Mapping[str, DatabaseRef | None]) -> SecretKeyRef | None:
    """The DSN Secret key of a pool whose queues (name -> spec.database) are `databases`;
    None for the operator's default database. All queues must share one database."""
    distinct = {db.secret_key_ref if db else None for db in databases.values()}
    if len(distinct) > 1:
        where = ", ".join(f"{queue}: {_describe(db)}" for queue, db in sorted(databases.items()))
        raise MixedDatabasesError(
            f"the pool's queues are in different databases ({where}); "
            "split the pool into one per database"
        )
    return next(iter(distinct), None)


def _describe(db: DatabaseRef | None) -> str:
    if db is None:
        return "the operator's default database"
    return f"Secret {db.secret_key_ref.name} key {db.secret_key_ref.key}"


def default_dsn_secret(pool: ObjectRef, dsn: str) -> Manifest:
    """The copy of the operator's default DSN a pool's pods read. Owned by the pool, so it
    lives exactly as long as the pods that need it and no credential outlives its user."""
    ref = default_dsn_ref(pool.name)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": ref.name,
            "namespace": pool.namespace,
            "labels": worker_labels(pool.name),
            "ownerReferences": [owner_reference(pool, "WorkerPool")],
        },
        "type": "Opaque",
        # data, not stringData: it is what the API server returns, so a compare is exact.
        "data": {ref.key: base64.b64encode(dsn.encode()).decode("ascii")},
    }


def worker_deployment(
    pool: ObjectRef, spec: WorkerPoolSpec, *, replicas: int, dsn: SecretKeyRef
) -> Manifest:
    """The Deployment running `taskq worker` for a pool, configured only through the
    environment contract of docs/worker.md. `dsn`: the queues' database, unless the pool
    connects through a pooler."""
    if spec.pooler is not None:
        dsn = spec.pooler.secret_key_ref
    labels = worker_labels(pool.name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": pool.name,
            "namespace": pool.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(pool, "WorkerPool")],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool.name)},
            # New workers must be ready before old ones stop, so a rollout keeps capacity and
            # a broken image leaves the old workers serving.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**spec.pod.labels, **labels},
                    **({"annotations": dict(spec.pod.annotations)} if spec.pod.annotations else {}),
                },
                "spec": _pod_spec(pool, spec, dsn),
            },
        },
    }


def _pod_spec(pool: ObjectRef, spec: WorkerPoolSpec, dsn: SecretKeyRef) -> Manifest:
    pod = spec.pod
    pod_spec: Manifest = {
        "containers": [_container(pool, spec, dsn)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Service links would add *_PORT variables to the TASKQ_ namespace of settings.
        "enableServiceLinks": False,
    }
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    else:
        # Workers do not call the Kubernetes API; without a chosen account, carry no token.
        pod_spec["automountServiceAccountToken"] = False
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in pod.tolerations]
    if pod.affinity:
        pod_spec["affinity"] = dict(pod.affinity)
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in pod.image_pull_secrets]
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    return pod_spec


def _container(pool: ObjectRef, spec: WorkerPoolSpec, dsn: SecretKeyRef) -> Manifest:
    container: Manifest = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["taskq"],
        "args": ["worker"],
        "env": [*_operator_env(pool, spec, dsn), *(e.to_k8s() for e in spec.env)],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Importing the application may take a while; liveness starts counting after it.
        "startupProbe": _probe("/healthz", period=2, failures=30),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    if spec.env_from:
        container["envFrom"] = [e.to_k8s() for e in spec.env_from]
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources:
        container["resources"] = spec.resources.to_k8s()
    return container


def _operator_env(pool: ObjectRef, spec: WorkerPoolSpec, dsn: SecretKeyRef) -> list[Manifest]:
    """The OPERATOR_SETTINGS, in that order, named as WorkerSettings reads them."""
    grace = max(1, spec.termination_grace_period_seconds - SHUTDOWN_MARGIN_SECONDS)
    sources: dict[str, Manifest] = {
        "dsn": {"valueFrom": {"secretKeyRef": {"name": dsn.name, "key": dsn.key}}},
        "queues": {"value": ",".join(f"{pool.namespace}/{q}" for q in spec.queues)},
        "app": {"value": spec.app},
        "concurrency": {"value": str(spec.concurrency)},
        "metrics_port": {"value": str(METRICS_PORT)},
        "metrics_host": {"value": "0.0.0.0"},  # noqa: S104 - Prometheus scrapes pods
        "shutdown_grace": {"value": str(grace)},
        "pod_uid": {"valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    }
    env = [{"name": env_name(setting), **sources[setting]} for setting in OPERATOR_SETTINGS]
    if spec.pooler is not None:
        # through transaction pooling: no session state, so no LISTEN (workers poll)
        env += [{"name": env_name("db_pool_mode"), "value": "transaction"},
                {"name": env_name("listen"), "value": "false"}]
    return env


def _probe(path: str, *, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


# The data key of an API key's Secret, as apps read it (secretKeyRef key: key).
API_KEY_DATA_KEY = "key"


def api_key_secret(owner: ObjectRef, secret_name: str, secret: str) -> Manifest:
    """The Secret holding a TaskqApiKey's key. Owned by it, so the key's only copy goes with
    the object that declares it (the key itself is revoked by the operator)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "namespace": owner.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "taskq.dev/api-key": owner.name},
            "ownerReferences": [owner_reference(owner, "TaskqApiKey")],
        },
        "type": "Opaque",
        "data": {API_KEY_DATA_KEY: base64.b64encode(secret.encode()).decode("ascii")},
    }
