"""The TaskqApiKey reconciler's decisions, on in-memory fakes of its ports: it issues one key
into a Secret the object owns, changes grants in place, issues a new key (revoking the old)
whenever the Secret no longer holds the key, refuses a Secret it does not own and grants a
namespace may not declare, names the field and the fix, and revokes the key on deletion."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from taskq import auth
from taskq.auth import Grants, Role
from taskq.errors import DatabaseUnavailableError
from taskq_operator.api import TaskqApiKeySpec, TaskqApiKeyStatus
from taskq_operator.reconcile.apikey import delete_api_key, reconcile_api_key
from taskq_operator.reconcile.context import ApiKeyContext, Context
from taskq_operator.reconcile.runtime import KeyMemory
from taskq_operator.resources import API_KEY_DATA_KEY

from .fakes import DEFAULT_DSN, NOW, FakeKeyDatabase, World

NS, NAME, UID = "shop", "ci", "key-uid"
DECLARED = f"{NS}/{NAME}"
PLATFORM = "taskq-system"


class Key:
    """One TaskqApiKey across passes: its status carries over as in the daemon."""

    def __init__(self, world: World, namespace: str = NS, **spec: Any) -> None:
        self.world = world
        self.namespace = namespace
        self.spec = TaskqApiKeySpec.model_validate(spec)
        self.generation = 1
        self.status = TaskqApiKeyStatus()
        self.memory = KeyMemory()
        self.now = NOW

    def context(self) -> ApiKeyContext:
        return Context(
            ports=self.world.ports,
            namespace=self.namespace,
            name=NAME,
            uid=UID,
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            memory=self.memory,
            emit=self.world.events,
            now=self.now,
        )

    async def reconcile(self) -> TaskqApiKeyStatus:
        self.status = await reconcile_api_key(self.context())
        return self.status

    def edit(self, **spec: Any) -> None:
        self.spec = TaskqApiKeySpec.model_validate(spec)
        self.generation += 1

    def ready(self) -> tuple[str, str, str]:
        (condition,) = [c for c in self.status.conditions if c.type == "Ready"]
        return condition.status, condition.reason, condition.message

    def secret(self, name: str = NAME) -> str:
        return self.world.k8s.secrets[self.namespace, name][API_KEY_DATA_KEY]


def keys(world: World) -> FakeKeyDatabase:
    return world.databases.key_database(DEFAULT_DSN)


async def test_a_new_key_is_issued_once_into_a_secret_the_object_owns() -> None:
    world = World()
    key = Key(world, role="operator")

    status = await key.reconcile()

    secret = key.secret()
    found = keys(world).authenticates(secret)
    assert found is not None
    assert found.declared_by == DECLARED
    assert found.grants == Grants(Role.OPERATOR, (NS,), False, None)
    assert auth.parse_prefix(secret) == found.prefix == status.prefix
    assert (status.key_name, status.secret_name) == (found.name, NAME)
    assert (status.role, status.namespaces, status.issued_at) == ("operator", [NS], NOW)
    assert world.k8s.secret_owners[NS, NAME] == UID
    [manifest] = world.k8s.applied
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "TaskqApiKey"
    assert key.ready()[:2] == ("True", "KeyReady")
    assert f"key {found.prefix} is in Secret {NAME}" in key.ready()[2]
    assert world.events.reasons() == ["Issued"]
    assert secret not in str(world.events.posted) and secret not in status.model_dump_json()

    for _ in range(3):
        await key.reconcile()
    assert key.secret() == secret
    assert len(world.k8s.applied) == 1
    assert len(keys(world).keys) == 1
    assert world.events.reasons() == ["Issued"]


async def test_an_edited_spec_changes_the_keys_grants_in_place() -> None:
    world = World()
    key = Key(world, role="viewer")
    await key.reconcile()
    secret = key.secret()
    expires = NOW + timedelta(days=30)

    key.edit(role="operator", readsPayloads=True, expiresAt=expires.isoformat())
    status = await key.reconcile()

    found = keys(world).authenticates(secret)
    assert found is not None
    assert found.grants == Grants(Role.OPERATOR, (NS,), True, expires)
    assert key.secret() == secret and len(world.k8s.applied) == 1
    assert status.observed_generation == 2
    assert world.events.reasons() == ["Issued", "Configured"]
    assert "role operator" in world.events.posted[-1][2]
    assert "expires 2025-01-31T12:00:00Z" in world.events.posted[-1][2]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("delete", "Secret ci was deleted"),
        ("empty", "Secret ci lost its data key 'key'"),
        ("overwrite", "Secret ci holds a key other than"),
        ("revoke", "was revoked outside the operator"),
    ],
)
async def test_a_secret_that_lost_its_key_gets_a_new_one_and_the_old_is_revoked(
    damage: str, why: str
) -> None:
    world = World()
    key = Key(world, role="viewer")
    await key.reconcile()
    old, old_prefix = key.secret(), key.status.prefix
    if damage == "delete":
        del world.k8s.secrets[NS, NAME]
    elif damage == "empty":
        world.k8s.secrets[NS, NAME] = {"other": "x"}
    elif damage == "overwrite":
        world.k8s.secrets[NS, NAME] = {API_KEY_DATA_KEY: auth.new_key().secret}
    else:
        keys(world).revoke(DECLARED)

    status = await key.reconcile()

    new = key.secret()
    assert new != old
    assert keys(world).authenticates(old) is None
    found = keys(world).authenticates(new)
    assert found is not None and found.prefix == status.prefix
    assert key.ready()[:2] == ("True", "KeyReady")
    assert world.events.reasons() == ["Issued", "Rotated"]
    assert why in world.events.posted[-1][2]
    if damage != "revoke":  # then it is the operator that revokes the old key
        assert f"revoked key {old_prefix}, issued key {status.prefix}" in world.events.posted[-1][2]
    if damage == "empty":
        assert world.k8s.secrets[NS, NAME]["other"] == "x"  # only the key is the operator's


async def test_a_secret_the_object_does_not_own_is_left_alone() -> None:
    world = World()
    world.k8s.secrets[NS, NAME] = {API_KEY_DATA_KEY: "the team's own"}
    key = Key(world, role="viewer")

    await key.reconcile()

    assert key.ready()[:2] == ("False", "SecretConflict")
    assert "delete that Secret, or re-create this TaskqApiKey with another spec.secretName" in (
        key.ready()[2]
    )
    assert world.k8s.secrets[NS, NAME] == {API_KEY_DATA_KEY: "the team's own"}
    assert keys(world).keys == [] and world.k8s.applied == []


async def test_the_secret_may_be_named() -> None:
    world = World()
    key = Key(world, role="viewer", secretName="ci-taskq-key")
    status = await key.reconcile()
    assert keys(world).authenticates(key.secret("ci-taskq-key")) is not None
    assert status.secret_name == "ci-taskq-key"
    assert (NS, NAME) not in world.k8s.secrets


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"role": "viewer", "namespaces": [NS, "billing"]}, "spec.namespaces"),
        ({"role": "viewer", "allNamespaces": True}, "spec.allNamespaces"),
        ({"role": "admin"}, "spec.role"),
    ],
)
@pytest.mark.parametrize("keys_namespace", [None, PLATFORM])
async def test_a_namespace_declares_keys_of_itself_only(
    spec: dict[str, Any], field: str, keys_namespace: str | None
) -> None:
    world = World(keys_namespace=keys_namespace)
    key = Key(world, **spec)

    await key.reconcile()

    state, reason, message = key.ready()
    assert (state, reason) == ("False", "InvalidSpec")
    assert message.startswith(f"{field}: a TaskqApiKey in namespace {NS}")
    if keys_namespace:
        assert f"keys namespace {PLATFORM} (TASKQ_OPERATOR_KEYS_NAMESPACE)" in message
    else:
        assert "TASKQ_OPERATOR_KEYS_NAMESPACE is not set" in message
        assert "taskq keys create" in message
    assert keys(world).keys == [] and world.k8s.applied == []
    assert world.events.reasons() == ["InvalidSpec"]
    assert world.errors("TaskqApiKey", "InvalidSpec") == 1


@pytest.mark.parametrize(
    ("spec", "grants"),
    [
        ({"role": "admin", "allNamespaces": True}, Grants(Role.ADMIN, None, False, None)),
        (
            {"role": "viewer", "namespaces": ["shop", "billing"], "readsPayloads": True},
            Grants(Role.VIEWER, ("billing", "shop"), True, None),
        ),
        ({"role": "operator"}, Grants(Role.OPERATOR, (PLATFORM,), False, None)),
    ],
)
async def test_the_keys_namespace_declares_keys_of_any_reach(
    spec: dict[str, Any], grants: Grants
) -> None:
    world = World(keys_namespace=PLATFORM)
    key = Key(world, namespace=PLATFORM, **spec)
    status = await key.reconcile()
    found = keys(world).authenticates(key.secret())
    assert found is not None and found.grants == grants
    assert status.namespaces == (["*"] if grants.namespaces is None else list(grants.namespaces))


async def test_an_invalid_edit_keeps_the_keys_grants_until_it_is_fixed() -> None:
    world = World()
    key = Key(world, role="viewer")
    await key.reconcile()
    secret = key.secret()

    key.edit(role="viewer", namespaces=[NS, "billing"])
    await key.reconcile()
    await key.reconcile()

    assert key.ready()[1] == "InvalidSpec"
    found = keys(world).authenticates(secret)
    assert found is not None and found.namespaces == (NS,)
    assert key.status.observed_generation == 1
    assert world.events.reasons() == ["Issued", "InvalidSpec"]  # once, not every pass

    key.edit(role="viewer")
    await key.reconcile()
    assert key.ready()[:2] == ("True", "KeyReady")


async def test_expiry_bounds_name_the_field() -> None:
    world = World()
    far = Key(world, role="viewer", expiresAt=(NOW + timedelta(days=3651)).isoformat())
    await far.reconcile()
    assert far.ready()[1] == "InvalidSpec"
    assert far.ready()[2].startswith("spec.expiresAt: 2034-12-31T12:00:00Z is more than 3650")

    world = World()
    past = Key(world, role="viewer", expiresAt=(NOW - timedelta(hours=1)).isoformat())
    await past.reconcile()
    assert past.ready()[1] == "InvalidSpec"
    assert "spec.expiresAt: 2025-01-01T11:00:00Z has passed" in past.ready()[2]
    assert keys(world).keys == []


async def test_an_expired_key_says_so_and_a_later_expiry_renews_it() -> None:
    world = World()
    key = Key(world, role="viewer", expiresAt=(NOW + timedelta(hours=1)).isoformat())
    await key.reconcile()
    secret = key.secret()

    key.now = NOW + timedelta(hours=2)
    status = await key.reconcile()
    state, reason, message = key.ready()
    assert (state, reason) == ("False", "Expired")
    assert "expired at 2025-01-01T13:00:00Z (spec.expiresAt): set a later" in message
    assert status.prefix is not None  # which key expired

    key.edit(role="viewer", expiresAt=(NOW + timedelta(days=1)).isoformat())
    await key.reconcile()
    assert key.ready()[:2] == ("True", "KeyReady")
    assert key.secret() == secret  # the same key, working again


async def test_moving_the_expiry_before_the_key_was_issued_is_refused() -> None:
    world = World()
    key = Key(world, role="viewer")
    await key.reconcile()
    key.edit(role="viewer", expiresAt=(NOW - timedelta(days=1)).isoformat())
    await key.reconcile()
    assert key.ready()[1] == "InvalidSpec"
    assert "is before key" in key.ready()[2] and "was issued" in key.ready()[2]


async def test_database_failures_are_not_ready_with_their_reason() -> None:
    world = World()
    key = Key(world, role="viewer")
    keys(world).error = DatabaseUnavailableError("connection refused")
    await key.reconcile()
    assert key.ready()[:2] == ("False", "DatabaseUnavailable")

    without = World(default_dsn=None)
    orphan = Key(without, role="viewer")
    await orphan.reconcile()
    assert orphan.ready()[1] == "NoDatabase"

    elsewhere = World()
    named = Key(elsewhere, role="viewer", database={"secretKeyRef": {"name": "api-db"}})
    await named.reconcile()
    assert named.ready()[:2] == ("False", "SecretNotFound")
    assert "Secret shop/api-db not found" in named.ready()[2]


async def test_deleting_the_object_revokes_its_key_and_no_pass_issues_another() -> None:
    world = World()
    key = Key(world, role="viewer")
    await key.reconcile()
    secret = key.secret()

    revoked = await delete_api_key(world.ports, NS, NAME, key.spec, key.memory)

    assert revoked is not None and revoked.prefix == key.status.prefix
    assert keys(world).authenticates(secret) is None
    before = key.status
    assert await key.reconcile() is before  # the daemon, still running: it does nothing
    assert keys(world).usable(DECLARED) is None
    assert await delete_api_key(world.ports, NS, NAME, key.spec, key.memory) is None


async def test_a_deletion_waits_for_a_pass_in_progress() -> None:
    """kopf runs the deletion handler while the daemon may be in a pass: a key the pass
    issues is revoked, never left usable."""
    world = World()
    key = Key(world, role="viewer")
    database = keys(world)
    database.pause = asyncio.Event()
    reconciling = asyncio.create_task(key.reconcile())
    await database.paused.wait()  # the pass is about to issue the first key
    deleting = asyncio.create_task(
        delete_api_key(world.ports, NS, NAME, key.spec, key.memory)
    )
    await asyncio.sleep(0)
    assert not deleting.done()
    database.pause.set()
    await reconciling
    await deleting
    assert key.status.prefix is not None  # a key was issued by the pass, then revoked
    assert database.usable(DECLARED) is None
    assert database.authenticates(key.secret()) is None
