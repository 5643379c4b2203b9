"""TaskqApiKeys on the real local control plane and a real PostgreSQL: the operator issues a key
into a Secret the object owns, the API's key store authenticates it with the spec's grants, an
edit changes them in place, deleting the Secret rotates the key, deleting the object revokes
it (and the Secret goes with it); a namespace cannot declare keys beyond itself, the keys
namespace can; the API server refuses invalid manifests naming the field."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from taskq.auth import ApiKey, Role
from taskq.store.keys import PgKeyStore

from . import cluster
from .operator import (
    Operator,
    apply,
    assert_refused,
    condition,
    events,
    example,
    get,
    install_crds,
    wait_for,
)


@pytest.fixture(scope="module")
def keys_namespace(kubeconfig: Path) -> Iterator[str]:
    """The operator's keys namespace: its TaskqApiKeys may reach any namespace."""
    name = f"e2e-keys-platform-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name, kubeconfig=kubeconfig)
    yield name
    cluster.kubectl(
        "delete", "namespace", name, "--wait=false", kubeconfig=kubeconfig, check=False
    )


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, dsn: str, keys_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    install_crds(kubeconfig)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = Operator(kubeconfig, dsn, log, keys_namespace=keys_namespace)
    running.start()
    yield running
    # the keys namespace's objects carry the operator's finalizer: release them while it runs
    _delete_keys(kubeconfig, keys_namespace)
    running.stop()


def _delete_keys(kubeconfig: Path, namespace: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "delete",
        "taskqapikeys",
        "--all",
        "--wait=true",
        "--timeout=60s",
        kubeconfig=kubeconfig,
        check=False,
    )


@pytest.fixture(autouse=True)
def _release_finalizers(kubeconfig: Path, namespace: str, operator: Operator) -> Iterator[None]:
    yield
    _delete_keys(kubeconfig, namespace)


def authenticate(dsn: str, secret: str) -> ApiKey | None:
    """What the API server's key store makes of the secret (PgKeyStore, as `taskq api`)."""

    async def run() -> ApiKey | None:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        assert pool is not None
        try:
            return await PgKeyStore(pool).authenticate(secret)
        finally:
            await pool.close()

    return asyncio.run(run())


def key_in(kubeconfig: Path, namespace: str, secret: str) -> str | None:
    found = get(kubeconfig, namespace, "secret", secret)
    if found is None or "key" not in (found.get("data") or {}):
        return None
    return base64.b64decode(found["data"]["key"]).decode()


def ready(kubeconfig: Path, namespace: str, name: str, reason: str = "KeyReady") -> Any:
    """The TaskqApiKey once its Ready condition has `reason` for its current generation."""
    obj = get(kubeconfig, namespace, "taskqapikey", name)
    found = condition(obj)
    if (
        obj
        and found
        and found["reason"] == reason
        and found.get("observedGeneration") == obj["metadata"]["generation"]
    ):
        return obj
    return None


def posted(kubeconfig: Path, namespace: str, name: str, reason: str) -> list[str]:
    """The messages of the Events of this reason, once there is one (kopf posts them
    asynchronously)."""
    messages: list[str] = wait_for(
        lambda: [
            m for _, r, m in events(kubeconfig, namespace, "TaskqApiKey", name) if r == reason
        ],
        f"a {reason} Event on the TaskqApiKey {name}",
    )
    return messages


def test_a_declared_key_lives_in_its_secret_with_the_specs_grants_until_the_object_goes(
    kubeconfig: Path, namespace: str, operator: Operator, dsn: str
) -> None:
    manifest = example("taskqapikey.yaml")
    apply(kubeconfig, namespace, manifest)
    obj = wait_for(lambda: ready(kubeconfig, namespace, "ci"), "the TaskqApiKey Ready")
    secret = key_in(kubeconfig, namespace, "ci-taskq-key")
    assert secret is not None

    key = authenticate(dsn, secret)
    assert key is not None
    assert (key.role, key.namespaces, key.declared_by) == (
        Role.OPERATOR,
        (namespace,),
        f"{namespace}/ci",
    )
    status = obj["status"]
    assert (status["prefix"], status["keyName"], status["secretName"]) == (
        key.prefix,
        key.name,
        "ci-taskq-key",
    )
    assert status["namespaces"] == [namespace]
    holder = get(kubeconfig, namespace, "secret", "ci-taskq-key")
    assert holder is not None
    [owner] = holder["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("TaskqApiKey", "ci")
    assert owner["uid"] == obj["metadata"]["uid"]
    [issued] = posted(kubeconfig, namespace, "ci", "Issued")
    assert f"issued key {key.prefix}" in issued
    printed = cluster.kubectl("-n", namespace, "get", "taskqapikeys", kubeconfig=kubeconfig).stdout
    assert printed.split()[:6] == ["NAME", "ROLE", "NAMESPACES", "PREFIX", "READY", "LAST"]
    assert key.prefix in printed
    assert secret not in json.dumps(obj) and secret not in str(
        events(kubeconfig, namespace, "TaskqApiKey", "ci")
    )

    # an edit changes the key's grants in place: same key, same Secret
    manifest["spec"].update(role="viewer", readsPayloads=True)
    apply(kubeconfig, namespace, manifest)
    wait_for(lambda: ready(kubeconfig, namespace, "ci"), "the edit applied")
    edited = authenticate(dsn, secret)
    assert edited is not None and edited.prefix == key.prefix
    assert (edited.role, edited.reads_payloads) == (Role.VIEWER, True)
    assert key_in(kubeconfig, namespace, "ci-taskq-key") == secret

    # deleting the Secret rotates the key: a new one in a new Secret, the old one revoked
    cluster.kubectl("-n", namespace, "delete", "secret", "ci-taskq-key", kubeconfig=kubeconfig)

    def rotated_key() -> str | None:
        held = key_in(kubeconfig, namespace, "ci-taskq-key")
        return held if held != secret else None

    rotated = wait_for(rotated_key, "a new key in a new Secret")
    assert authenticate(dsn, secret) is None
    new_key = authenticate(dsn, rotated)
    assert new_key is not None and new_key.role == Role.VIEWER and new_key.prefix != key.prefix
    [why] = posted(kubeconfig, namespace, "ci", "Rotated")
    assert "Secret ci-taskq-key was deleted" in why

    # deleting the TaskqApiKey revokes its key; its Secret is garbage-collected with it
    cluster.kubectl(
        "-n", namespace, "delete", "taskqapikey", "ci", "--timeout=60s", kubeconfig=kubeconfig
    )
    assert authenticate(dsn, rotated) is None
    wait_for(
        lambda: get(kubeconfig, namespace, "secret", "ci-taskq-key") is None,
        "the Secret garbage-collected with its TaskqApiKey",
        limit=90,  # the garbage collector of a control plane just started may lag behind
    )


def test_a_namespace_declares_keys_of_itself_only(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    manifest = {
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskqApiKey",
        "metadata": {"name": "wide"},
        "spec": {"role": "viewer", "namespaces": [namespace, "billing"]},
    }
    apply(kubeconfig, namespace, manifest)
    obj = wait_for(
        lambda: ready(kubeconfig, namespace, "wide", reason="InvalidSpec"), "InvalidSpec"
    )
    found = condition(obj)
    assert found is not None
    assert found["message"].startswith(f"spec.namespaces: a TaskqApiKey in namespace {namespace}")
    assert "TASKQ_OPERATOR_KEYS_NAMESPACE" in found["message"]
    assert get(kubeconfig, namespace, "secret", "wide") is None
    assert posted(kubeconfig, namespace, "wide", "InvalidSpec") == [found["message"]]


def test_the_keys_namespace_declares_an_admin_key_of_every_namespace(
    kubeconfig: Path, keys_namespace: str, operator: Operator, dsn: str
) -> None:
    manifest = {
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskqApiKey",
        "metadata": {"name": "platform"},
        "spec": {"role": "admin", "allNamespaces": True},
    }
    apply(kubeconfig, keys_namespace, manifest)
    obj = wait_for(lambda: ready(kubeconfig, keys_namespace, "platform"), "the key Ready")
    secret = key_in(kubeconfig, keys_namespace, "platform")
    assert secret is not None
    key = authenticate(dsn, secret)
    assert key is not None and (key.role, key.namespaces) == (Role.ADMIN, None)
    assert obj["status"]["namespaces"] == ["*"]


def test_a_secret_the_operator_did_not_make_is_left_alone(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "taken", "--from-literal=key=mine",
        kubeconfig=kubeconfig,
    )  # fmt: skip
    apply(kubeconfig, namespace, {
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskqApiKey",
        "metadata": {"name": "taken"},
        "spec": {"role": "viewer"},
    })  # fmt: skip
    obj = wait_for(
        lambda: ready(kubeconfig, namespace, "taken", reason="SecretConflict"), "SecretConflict"
    )
    found = condition(obj)
    assert found is not None and "is not owned by this TaskqApiKey" in found["message"]
    assert key_in(kubeconfig, namespace, "taken") == "mine"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"role": "root"}, "spec.role"),
        ({}, "spec.role"),
        ({"role": "viewer", "namespaces": ["a"], "allNamespaces": True}, "exclude each other"),
        ({"role": "viewer", "namespaces": ["Not_A_Label"]}, "spec.namespaces[0]"),
        ({"role": "viewer", "expiresAt": "tomorrow"}, "spec.expiresAt"),
    ],
)
def test_invalid_taskqapikeys_are_refused_naming_the_field(
    kubeconfig: Path, namespace: str, operator: Operator, spec: dict[str, Any], message: str
) -> None:
    manifest = {
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskqApiKey",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    assert_refused(kubeconfig, namespace, manifest, message)


def test_the_secret_of_a_key_cannot_change(
    kubeconfig: Path, namespace: str, operator: Operator
) -> None:
    manifest = {
        "apiVersion": "taskq.dev/v1alpha1",
        "kind": "TaskqApiKey",
        "metadata": {"name": "fixed"},
        "spec": {"role": "viewer"},
    }
    apply(kubeconfig, namespace, manifest)
    manifest["spec"] = {"role": "viewer", "secretName": "elsewhere"}
    assert_refused(kubeconfig, namespace, manifest, "spec.secretName is immutable")
