"""The API server's paths in a refused worker Deployment, mapped back to the WorkerPool."""

from __future__ import annotations

import pytest

from taskq_operator.api import OPERATOR_SETTINGS
from taskq_operator.pool_fields import pool_field

CONTAINER = "spec.template.spec.containers[0]"


@pytest.mark.parametrize(
    ("deployment_field", "expected"),
    [
        (f"{CONTAINER}.resources.requests", "spec.resources.requests"),
        (f"{CONTAINER}.resources", "spec.resources"),
        (f"{CONTAINER}.image", "spec.image"),
        (f"{CONTAINER}.imagePullPolicy", "spec.imagePullPolicy"),
        (f"{CONTAINER}.envFrom[1].secretRef.name", "spec.envFrom[1].secretRef.name"),
        ("spec.template.labels", "spec.pod.labels"),
        ("spec.template.metadata.annotations", "spec.pod.annotations"),
        ("spec.template.spec.nodeSelector", "spec.pod.nodeSelector"),
        ("spec.template.spec.tolerations[0].key", "spec.pod.tolerations[0].key"),
        (
            ".spec.template.spec.affinity.nodeAffinity.foo",
            "spec.pod.affinity.nodeAffinity.foo",
        ),
        ("spec.template.spec.imagePullSecrets[2].name", "spec.pod.imagePullSecrets[2].name"),
        ("spec.template.spec.priorityClassName", "spec.pod.priorityClassName"),
        ("spec.template.spec.serviceAccountName", "spec.pod.serviceAccountName"),
        ("spec.template.spec.terminationGracePeriodSeconds", "spec.terminationGracePeriodSeconds"),
    ],
)
def test_fields_the_pool_sets_are_named_as_the_user_wrote_them(
    deployment_field: str, expected: str
) -> None:
    assert pool_field(deployment_field) == expected


def test_env_entries_are_the_users_index_after_the_operators_variables() -> None:
    first = len(OPERATOR_SETTINGS)
    assert pool_field(f"{CONTAINER}.env[{first}].name") == "spec.env[0].name"
    assert (
        pool_field(f"{CONTAINER}.env[{first + 2}].valueFrom.secretKeyRef.name")
        == "spec.env[2].valueFrom.secretKeyRef.name"
    )
    assert pool_field(f"{CONTAINER}.env[0].valueFrom") is None  # TASKQ_DSN, the operator's


def test_fields_only_the_operator_sets_have_no_pool_field() -> None:
    assert pool_field("spec.selector") is None
    assert pool_field(f"{CONTAINER}.livenessProbe.httpGet.port") is None
    assert pool_field(f"{CONTAINER}.imageX") is None
