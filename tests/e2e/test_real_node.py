"""The real node (containerd + kubelet, cluster/node-up.sh): the project's worker image runs as a
pod there and drains a queue over the pod network.

The worker pod is what the operator's pods are made of: the image imported into containerd
(imagePullPolicy Never), TASKQ_DSN from a Secret through secretKeyRef, non-root with a read-only
root file system, no capabilities, seccomp RuntimeDefault, /tmp an emptyDir, and a readiness probe
the kubelet sends to the pod's own address. Its handler module comes from a ConfigMap mounted under
/app (on the image's PYTHONPATH). PostgreSQL listens on 127.0.0.1 for the test and on the bridge's
host address for the pod. Skipped only without root (what the kubelet, containerd and runc need).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from devenv.postgres import LocalPostgres

import taskq

from . import node

HANDLERS = '''\
import os
import socket

import taskq


@taskq.task("whoami")
async def whoami(ctx: taskq.TaskContext) -> dict[str, object]:
    return {"host": socket.gethostname(), "uid": os.getuid(), "n": ctx.payload["n"]}
'''
TASKS = 20


@pytest.fixture
async def queue_client(pod_pg: LocalPostgres) -> AsyncIterator[taskq.Client]:
    client = await taskq.connect(pod_pg.dsn)
    await client.migrate()
    yield client
    await client.close()


def _pod(name: str, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "e2e-worker"}},
        "spec": {
            **node.POD_PLACEMENT,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "worker",
                    "image": node.WORKER_IMAGE,
                    "imagePullPolicy": "Never",
                    "env": [
                        {
                            "name": "TASKQ_DSN",
                            "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}},
                        },
                        {"name": "TASKQ_QUEUES", "value": queue},
                        {"name": "TASKQ_APP", "value": "e2ehandlers.tasks"},
                        {"name": "TASKQ_METRICS_HOST", "value": "0.0.0.0"},  # the pod's own
                        {"name": "TASKQ_METRICS_PORT", "value": "9090"},
                    ],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": 9090},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},  # an emptyDir
                        {"name": "handlers", "mountPath": "/app/e2ehandlers", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "handlers", "configMap": {"name": "handlers"}},
            ],
        },
    }


def _wait(what: str, predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


async def test_worker_pod_drains_a_queue_on_the_real_node(
    real_node: None,
    bridge_ip: str,
    pod_pg: LocalPostgres,
    queue_client: taskq.Client,
    namespace: str,
    kubectl: Callable[..., Any],
) -> None:
    queue = f"{namespace}/work"
    await queue_client.ensure_queue(queue)
    ids = [(await queue_client.enqueue(queue, "whoami", {"n": n})).id for n in range(TASKS)]

    pod_dsn = f"postgresql://postgres@{bridge_ip}:{pod_pg.port}/postgres"
    kubectl("-n", namespace, "create", "secret", "generic", "db", f"--from-literal=dsn={pod_dsn}")
    kubectl(
        "-n", namespace, "create", "configmap", "handlers", "--from-file=tasks.py=/dev/stdin",
        input=HANDLERS,
    )
    name = "worker-0"
    created = time.monotonic()
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_pod(name, queue)))

    def pod() -> dict[str, Any]:
        got: dict[str, Any] = json.loads(
            kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
        )
        return got

    def phase() -> str | None:
        status = pod()["status"]
        if status.get("phase") == "Failed":
            raise AssertionError(f"pod failed: {json.dumps(status)}")
        return status.get("phase") if status.get("phase") == "Running" else None

    _wait("the worker pod Running", phase, 120)
    running_after = time.monotonic() - created

    def ready() -> bool:
        conditions = {c["type"]: c["status"] for c in pod()["status"].get("conditions", [])}
        return conditions.get("Ready") == "True"

    _wait("the worker pod Ready (its /readyz, probed on the pod's address)", ready, 60)
    ready_after = time.monotonic() - created
    print(f"worker pod on the real node: Running after {running_after:.2f}s, "
          f"Ready after {ready_after:.2f}s")

    status = pod()["status"]
    assert pod()["spec"]["nodeName"] == node.NODE_NAME
    pod_ip = ipaddress.ip_address(status["podIP"])
    assert pod_ip in ipaddress.ip_network(f"{bridge_ip}/24", strict=False)
    assert str(pod_ip) != bridge_ip

    deadline = time.monotonic() + 60
    while True:
        tasks = [await queue_client.get_task(i) for i in ids]
        if all(t.state == "succeeded" for t in tasks) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [t.state for t in tasks] == ["succeeded"] * TASKS, (
        kubectl("-n", namespace, "logs", name, check=False).stdout[-3000:]
    )
    # Ran in the pod (its hostname is the pod's name), as the image's non-root user.
    assert {(t.result["host"], t.result["uid"]) for t in tasks} == {(name, 10001)}
    assert sorted(t.result["n"] for t in tasks) == list(range(TASKS))

    # kubectl logs goes API server -> kubelet (x509 client cert) -> containerd.
    logs = kubectl("-n", namespace, "logs", name).stdout
    assert logs.strip(), "no log lines from the worker"

    # SIGTERM from the kubelet: the worker stops well within the grace period (30 s).
    deleted = time.monotonic()
    kubectl("-n", namespace, "delete", "pod", name, "--wait=true", timeout=90)
    assert time.monotonic() - deleted < 30


SERVICE_PROBE = """\
import json, os, ssl, urllib.request
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
request = urllib.request.Request(
    f"https://{host}:{port}/version",
    headers={"Authorization": "Bearer " + open(sa + "token").read()},
)
context = ssl.create_default_context(cafile=sa + "ca.crt")
version = json.load(urllib.request.urlopen(request, context=context, timeout=10))
print(json.dumps({"host": host, "port": port, "version": version["gitVersion"]}))
"""


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    real_node: None, namespace: str, kubectl: Callable[..., Any]
) -> None:
    """kube-proxy: the ClusterIP the kubelet hands pods (10.96.0.1:443) leads to the API server
    through the EndpointSlice node-up.sh writes; TLS checks the serving cert's 10.96.0.1."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "service-probe"},
        "spec": {
            **node.POD_PLACEMENT,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [
                {
                    "name": "probe",
                    "image": node.WORKER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", SERVICE_PROBE],
                }
            ],
        },
    }
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))

    def finished() -> str | None:
        phase: str = kubectl(
            "-n", namespace, "get", "pod", "service-probe", "-o", "jsonpath={.status.phase}"
        ).stdout
        return phase if phase in ("Succeeded", "Failed") else None

    phase = _wait("the probe pod to finish", finished, 120)
    out = kubectl("-n", namespace, "logs", "service-probe").stdout
    assert phase == "Succeeded", out
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert json.loads(out.strip().splitlines()[-1]) == {
        "host": "10.96.0.1", "port": "443", "version": server["gitVersion"]
    }
