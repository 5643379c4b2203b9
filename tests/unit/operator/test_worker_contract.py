"""What the operator's worker pods and the images must agree on, checked against one source
each: the environment against WorkerSettings, the user against resources.WORKER_UID."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskq.worker.settings import WorkerSettings, env_name
from taskq_operator.api import OPERATOR_ENV, OPERATOR_SETTINGS, SecretKeyRef, WorkerPoolSpec
from taskq_operator.resources import METRICS_PORT, WORKER_UID, ObjectRef, worker_deployment

REPO = Path(__file__).resolve().parents[3]
POOL = ObjectRef(name="mailers", namespace="shop", uid="0b1c2d3e-uid")
# What the kubelet would put in the variables the pod reads from elsewhere.
RESOLVED = {
    "secretKeyRef": "postgresql://worker@db.shop:5432/shop",
    "fieldRef": "5f0c6a1e-pod-uid",
}


def pod_env(**fields: Any) -> dict[str, str]:
    spec = WorkerPoolSpec.model_validate(
        {"queues": ["emails", "receipts"], "image": "shop/app:1.2", "app": "shop.tasks", **fields}
    )
    manifest = worker_deployment(
        POOL, spec, replicas=1, dsn=SecretKeyRef(name="shop-db", key="url")
    )
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    resolved = {}
    for entry in container["env"]:
        if "value" in entry:
            resolved[entry["name"]] = entry["value"]
        else:
            [(kind, _)] = entry["valueFrom"].items()
            resolved[entry["name"]] = RESOLVED[kind]
    return resolved


def test_the_operator_names_its_variables_after_worker_settings() -> None:
    assert set(OPERATOR_SETTINGS) <= set(WorkerSettings.model_fields)
    assert tuple(env_name(setting) for setting in OPERATOR_SETTINGS) == OPERATOR_ENV
    assert tuple(pod_env()) == OPERATOR_ENV


def test_an_unknown_setting_has_no_variable() -> None:
    with pytest.raises(KeyError, match="no setting 'pod_id'"):
        env_name("pod_id")


def test_the_pods_environment_is_read_by_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in WorkerSettings.model_fields:
        monkeypatch.delenv(env_name(setting), raising=False)
    env = pod_env(
        concurrency=32,
        terminationGracePeriodSeconds=60,
        env=[{"name": "TASKQ_LOG_LEVEL", "value": "DEBUG"}],
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    assert settings.dsn.get_secret_value() == RESOLVED["secretKeyRef"]
    assert settings.queues == ["shop/emails", "shop/receipts"]
    assert settings.app == "shop.tasks"
    assert settings.concurrency == 32
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", METRICS_PORT)
    assert settings.shutdown_grace == 55
    assert settings.pod_uid == RESOLVED["fieldRef"]
    assert settings.log_level == "DEBUG"


# The pods' uid is pinned in resources.WORKER_UID; every other place that says it is read here.
# A "uid N" below 1000 is another image's system user (the trial PostgreSQL's 999), not ours.
_UID_MENTIONS = re.compile(
    r"--(?:uid|gid) (\d+)|(?:\bUSER|--user) (\d+):(\d+)|`(\d+):(\d+)`|\buid(?:/gid)? (\d{4,})"
)


@pytest.mark.parametrize(
    ("path", "at_least"),
    [
        ("Dockerfile", 16),  # each final stage: groupadd --gid, useradd --uid --gid, USER u:g
        ("docs/operator.md", 1),
        ("docs/image.md", 6),
        ("docs/helm.md", 1),
    ],
)
def test_the_image_and_docs_say_the_pods_uid(path: str, at_least: int) -> None:
    text = (REPO / path).read_text(encoding="utf-8")
    said = [int(n) for match in _UID_MENTIONS.finditer(text) for n in match.groups() if n]
    assert len(said) >= at_least, f"{path}: the uid is no longer found where it was"
    assert set(said) == {WORKER_UID}, f"{path} disagrees with resources.WORKER_UID"


def test_the_charts_operator_pod_runs_as_the_same_uid() -> None:
    values = yaml.safe_load((REPO / "charts/taskq/values.yaml").read_text(encoding="utf-8"))
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (WORKER_UID,) * 3
    assert (container["runAsUser"], container["runAsGroup"]) == (WORKER_UID,) * 2
