"""The local control plane behaves like a real cluster: CRDs with a status subresource,
Deployments that end in Running pods (kwok), and RBAC that refuses what a Role does not allow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from . import cluster


def as_dict(api_client: ApiClient, model: object) -> Any:
    """A client model (or a list of them) as the JSON the server sent: camelCase keys."""
    return api_client.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


def as_obj(result: object) -> dict[str, Any]:
    """CustomObjectsApi returns untyped JSON objects."""
    assert isinstance(result, dict)
    return result


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_server_reports_the_pinned_version(kubectl: Callable[..., Any]) -> None:
    gomod = (cluster.REPO / "tools" / "kube" / "go.mod").read_text()
    pinned = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)", gomod, re.M)
    assert pinned is not None
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == pinned.group(1)
    if cluster.kubectl_binary().startswith(str(cluster.REPO)):  # the kubectl built by tools/
        assert versions["clientVersion"]["gitVersion"] == pinned.group(1)


def test_nodes_are_fake_and_ready(api_client: ApiClient) -> None:
    nodes = as_dict(api_client, client.CoreV1Api(api_client).list_node(label_selector="type=kwok"))
    assert len(nodes["items"]) >= 1
    for node in nodes["items"]:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


# --- custom resources -------------------------------------------------------------------------

CRD_TEMPLATE = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1}}
          status:
            type: object
            properties:
              phase: {{type: string}}
              observedGeneration: {{type: integer}}
"""


@pytest.fixture
def widget_group(namespace: str, kubectl: Callable[..., Any]) -> Iterator[str]:
    """A CRD of its own per test (CRDs are cluster-scoped), removed afterwards."""
    group = f"{namespace}.e2e.taskq.dev"
    kubectl("apply", "-f", "-", input=CRD_TEMPLATE.format(group=group))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s")
    try:
        yield group
    finally:
        kubectl(
            "delete", "crd", f"widgets.{group}", "--wait=false", "--ignore-not-found", check=False
        )


def test_custom_resource_lifecycle_with_status_subresource(
    api_client: ApiClient, namespace: str, widget_group: str
) -> None:
    api = client.CustomObjectsApi(api_client)
    ref = (widget_group, "v1", namespace, "widgets")

    # The schema is enforced by the server.
    with pytest.raises(ApiException) as invalid:
        api.create_namespaced_custom_object(
            *ref,
            {
                "apiVersion": f"{widget_group}/v1",
                "kind": "Widget",
                "metadata": {"name": "bad"},
                "spec": {"size": 0},
            },
        )
    assert invalid.value.status == 422

    body = {
        "apiVersion": f"{widget_group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 1},
        "status": {"phase": "ignored-on-create"},
    }
    created = as_obj(api.create_namespaced_custom_object(*ref, body))
    assert created["metadata"]["generation"] == 1
    assert "status" not in created  # status is dropped on create when the subresource is on

    # Status goes through /status only, and does not bump the generation.
    status = as_obj(
        api.patch_namespaced_custom_object_status(
            *ref, "w1", {"status": {"phase": "Ready", "observedGeneration": 1}}
        )
    )
    assert status["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert status["metadata"]["generation"] == 1

    # A spec patch bumps the generation and cannot touch status.
    patched = as_obj(
        api.patch_namespaced_custom_object(
            *ref, "w1", {"spec": {"size": 3}, "status": {"phase": "Hacked"}}
        )
    )
    assert patched["spec"] == {"size": 3}
    assert patched["metadata"]["generation"] == 2
    assert patched["status"]["phase"] == "Ready"

    # ... and /status cannot touch spec.
    status = as_obj(
        api.patch_namespaced_custom_object_status(
            *ref, "w1", {"spec": {"size": 9}, "status": {"observedGeneration": 2}}
        )
    )
    assert status["spec"] == {"size": 3}
    assert status["status"] == {"phase": "Ready", "observedGeneration": 2}

    listed = as_obj(api.list_namespaced_custom_object(*ref))
    assert [w["metadata"]["name"] for w in listed["items"]] == ["w1"]

    api.delete_namespaced_custom_object(*ref, "w1")

    def gone() -> bool:
        try:
            api.get_namespaced_custom_object(*ref, "w1")
        except ApiException as e:
            return bool(e.status == 404)
        return False

    wait_for("widget w1 to be deleted", gone, timeout=30)


# --- workloads ------------------------------------------------------------------------------------


def test_deployment_gets_a_replicaset_and_running_pods(
    api_client: ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    # kwok never pulls or runs the image: no registry is contacted.
                    containers=[client.V1Container(name="web", image="registry.invalid/web:1")]
                ),
            ),
        ),
    )
    uid = as_dict(api_client, apps.create_namespaced_deployment(namespace, deployment))["metadata"][
        "uid"
    ]

    def owned_by(owner_uid: str, items: list[Any]) -> list[Any]:
        return [
            o
            for o in items
            if any(r["uid"] == owner_uid for r in o["metadata"].get("ownerReferences", []))
        ]

    replicasets = wait_for(
        "a ReplicaSet owned by the Deployment",
        lambda: owned_by(
            uid, as_dict(api_client, apps.list_namespaced_replica_set(namespace))["items"]
        ),
    )
    assert len(replicasets) == 1
    rs_uid = replicasets[0]["metadata"]["uid"]

    def pods() -> list[Any]:
        listed = core.list_namespaced_pod(namespace, label_selector="app=web")
        items: list[Any] = as_dict(api_client, listed)["items"]
        return items

    def running_pods() -> list[Any]:
        running = [
            p
            for p in pods()
            if p["status"].get("phase") == "Running"
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return running if len(running) == 2 else []

    for pod in wait_for("2 Running pods", running_pods):
        assert pod["spec"]["nodeName"].startswith("kwok-node-")  # placed by kube-scheduler
        assert [o["uid"] for o in pod["metadata"]["ownerReferences"]] == [rs_uid]
        assert pod["spec"]["serviceAccountName"] == "default"  # ServiceAccount admission ran
        assert pod["status"]["podIP"]  # invented by kwok; never contacted

    wait_for(
        "the Deployment to report 2 available replicas",
        lambda: (
            as_dict(api_client, apps.read_namespaced_deployment("web", namespace))["status"].get(
                "availableReplicas"
            )
            == 2
        ),
    )

    # Scaling down goes through the ReplicaSet and kwok's pod-delete stage.
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
    wait_for("1 pod left", lambda: len(pods()) == 1)


# --- RBAC -----------------------------------------------------------------------------------------


def test_service_account_is_refused_what_its_role_does_not_allow(
    api_client: ApiClient, namespace: str, kubectl: Callable[..., Any], tmp_path: Path
) -> None:
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads-pods"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )

    # A real bound token, signed by the API server's service-account key.
    token_request = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    )
    token: str = as_dict(api_client, token_request)["status"]["token"]

    config = client.Configuration()
    config.host = api_client.configuration.host
    config.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as as_reader:
        reader = client.CoreV1Api(as_reader)

        def allowed() -> bool:  # RBAC reaches the authorizer's cache quickly, not synchronously
            try:
                reader.list_namespaced_pod(namespace)
            except ApiException as e:
                if e.status != 403:
                    raise
                return False
            return True

        wait_for("the RoleBinding to take effect", allowed, timeout=10)

        def refused(call: Callable[[], Any]) -> int:
            with pytest.raises(ApiException) as e:
                call()
            return int(e.value.status)

        assert refused(lambda: reader.list_namespaced_secret(namespace)) == 403
        assert refused(lambda: reader.list_namespaced_pod("default")) == 403
        assert (
            refused(
                lambda: reader.create_namespaced_pod(
                    namespace,
                    client.V1Pod(
                        metadata=client.V1ObjectMeta(name="p"),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                    ),
                )
            )
            == 403
        )
        assert refused(lambda: reader.delete_namespaced_service_account("reader", namespace)) == 403

    # The same through kubectl, with the token instead of the admin certificate.
    token_kubeconfig = tmp_path / "reader.kubeconfig"
    token_kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "reader",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": api_client.configuration.host,
                            "certificate-authority": api_client.configuration.ssl_ca_cert,
                        },
                    }
                ],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [{"name": "reader", "context": {"cluster": "local", "user": "reader"}}],
            }
        )
    )
    ok = cluster.kubectl("-n", namespace, "get", "pods", kubeconfig=token_kubeconfig, check=False)
    assert ok.returncode == 0, ok.stderr
    no = cluster.kubectl(
        "-n", namespace, "get", "secrets", kubeconfig=token_kubeconfig, check=False
    )
    assert no.returncode != 0
    assert "forbidden" in no.stderr.lower(), no.stderr
    can_i = kubectl(
        "auth",
        "can-i",
        "create",
        "deployments",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:reader",
        check=False,
    )
    assert can_i.stdout.strip() == "no"


def _server_of(kubeconfig: Path) -> str:
    match = re.search(r"server: (\S+)", kubeconfig.read_text())
    assert match, f"no server in {kubeconfig}"
    return match.group(1)


def test_a_second_cluster_beside_this_one_moves_to_free_ports(
    kubeconfig: Path, tmp_path: Path
) -> None:
    """Another clone's cluster holding the default ports (here this session's own, seen from
    another state directory) makes cluster/up.sh move to free ports instead of failing."""
    state = tmp_path / "second"
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"TASKQ_\w+_PORT", k)}
    env["TASKQ_CLUSTER_DIR"] = str(state)
    try:
        proc = subprocess.run([str(cluster.UP)], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert cluster.is_healthy(state / "kubeconfig")
        assert cluster.is_healthy(kubeconfig)  # the first one is untouched
        assert _server_of(state / "kubeconfig") != _server_of(kubeconfig)
        assert "TASKQ_APISERVER_PORT:=" in (state / "ports.env").read_text()
    finally:
        subprocess.run([str(cluster.DOWN)], env=env, capture_output=True, timeout=120,
                       check=False)
