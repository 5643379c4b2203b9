"""API keys in PostgreSQL (taskq.store.keys): created, listed, revoked, and authenticated by
the KeyStore the front door uses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from devenv.postgres import LocalPostgres

from taskq import auth
from taskq.auth import ApiKey, Grants, KeyStore, Role
from taskq.errors import (
    ApiKeyConflictError,
    InvalidArgumentError,
    SchemaMissingError,
    UnknownApiKeyError,
)
from taskq.store import keys
from taskq.store.keys import PgKeyStore
from tests.conftest import fresh_database


def _tail(secret: str) -> str:
    """The random part of `tq_<prefix>_<random>` (which may itself hold '_')."""
    return secret[len("tq_") + auth.KEY_PREFIX_LENGTH + 1 :]


def _name() -> str:
    return f"key-{uuid.uuid4().hex[:10]}"


async def _last_used(pool: asyncpg.Pool, key: ApiKey) -> datetime | None:
    used: datetime | None = await pool.fetchval(
        "SELECT last_used_at FROM taskq.api_keys WHERE id = $1", key.id
    )
    return used


async def test_a_created_key_authenticates_as_itself(pool: asyncpg.Pool) -> None:
    name = _name()
    key, secret = await keys.create_key(
        pool, name, Role.OPERATOR, ["shop", "billing", "shop"], expires_in=timedelta(days=90)
    )
    assert (key.name, key.role, key.namespaces) == (name, Role.OPERATOR, ("billing", "shop"))
    assert auth.parse_prefix(secret) == key.prefix
    assert key.expires_at is not None
    assert key.expires_at - key.created_at == timedelta(days=90)
    assert (key.revoked_at, key.last_used_at, key.reads_payloads) == (None, None, False)

    store: KeyStore = PgKeyStore(pool)
    found = await store.authenticate(secret)
    assert found is not None
    assert (found.id, found.name, found.role, found.namespaces) == (
        key.id,
        name,
        Role.OPERATOR,
        ("billing", "shop"),
    )
    assert found.last_used_at is not None


async def test_the_database_holds_a_digest_never_the_secret(pool: asyncpg.Pool) -> None:
    key, secret = await keys.create_key(pool, _name(), Role.VIEWER, None)
    row = await pool.fetchrow("SELECT * FROM taskq.api_keys WHERE id = $1", key.id)
    assert row is not None
    assert row["digest"] == auth.digest(secret)
    assert all(_tail(secret) not in str(value) for value in row.values())
    assert row["namespaces"] is None


async def test_unknown_wrong_and_malformed_secrets_authenticate_nobody(pool: asyncpg.Pool) -> None:
    key, secret = await keys.create_key(pool, _name(), Role.ADMIN, None)
    store = PgKeyStore(pool)
    wrong_tail = f"tq_{key.prefix}_{_tail(auth.new_key().secret)}"
    assert auth.parse_prefix(wrong_tail) == key.prefix
    for attempt in (
        wrong_tail,
        auth.new_key().secret,  # well formed, no such prefix
        "",
        secret[:-1],
        secret + "x",
        f"Bearer {secret}",
        "tq_' OR 1=1 --_" + "A" * 43,
    ):
        assert await store.authenticate(attempt) is None, attempt
    assert await _last_used(pool, key) is None  # no failed attempt counts as a use
    assert await store.authenticate(secret) is not None


async def test_an_expired_key_authenticates_nobody(pool: asyncpg.Pool) -> None:
    key, secret = await keys.create_key(pool, _name(), Role.VIEWER, ["shop"])
    await pool.execute(
        "UPDATE taskq.api_keys SET created_at = now() - interval '2 days',"
        " expires_at = now() - interval '1 second' WHERE id = $1",
        key.id,
    )
    assert await PgKeyStore(pool).authenticate(secret) is None
    assert await _last_used(pool, key) is None


async def test_a_revoked_key_authenticates_nobody(pool: asyncpg.Pool) -> None:
    store = PgKeyStore(pool)
    key, secret = await keys.create_key(pool, _name(), Role.OPERATOR, None)
    assert await store.authenticate(secret) is not None
    revoked = await keys.revoke_key(pool, key.name)
    assert revoked.id == key.id
    assert revoked.revoked_at is not None
    assert await store.authenticate(secret) is None
    listed = await keys.get_key(pool, key.name)
    assert listed is not None
    assert listed.revoked_at == revoked.revoked_at


async def test_revoking_twice_or_an_unknown_key_is_an_error_naming_it(pool: asyncpg.Pool) -> None:
    key, _ = await keys.create_key(pool, _name(), Role.VIEWER, None)
    await keys.revoke_key(pool, key.name)
    with pytest.raises(ApiKeyConflictError, match=f"API key '{key.name}' was already revoked at"):
        await keys.revoke_key(pool, key.name)
    missing = _name()
    with pytest.raises(UnknownApiKeyError, match=f"no API key named '{missing}'"):
        await keys.revoke_key(pool, missing)
    assert await keys.get_key(pool, missing) is None


async def test_last_use_is_recorded_at_most_once_per_period(pool: asyncpg.Pool) -> None:
    key, secret = await keys.create_key(pool, _name(), Role.VIEWER, None)
    store = PgKeyStore(pool)
    first = await store.authenticate(secret)
    assert first is not None
    recorded = await _last_used(pool, key)
    assert recorded is not None
    assert first.last_used_at == recorded

    for _ in range(5):  # within the minute: read, not written
        again = await store.authenticate(secret)
        assert again is not None
        assert again.last_used_at == recorded
    assert await _last_used(pool, key) == recorded

    # a minute later, the next use is written again
    await pool.execute(
        "UPDATE taskq.api_keys SET last_used_at = now() - interval '61 seconds' WHERE id = $1",
        key.id,
    )
    stale = await _last_used(pool, key)
    assert stale is not None
    later = await store.authenticate(secret)
    assert later is not None
    assert later.last_used_at is not None
    assert later.last_used_at > stale
    assert later.last_used_at == await _last_used(pool, key)


async def test_the_recording_period_is_the_stores_to_choose(pool: asyncpg.Pool) -> None:
    key, secret = await keys.create_key(pool, _name(), Role.VIEWER, None)
    eager = PgKeyStore(pool, record_every=timedelta(0))
    seen: list[datetime] = []
    for _ in range(3):
        found = await eager.authenticate(secret)
        assert found is not None
        assert found.last_used_at is not None
        seen.append(found.last_used_at)
    assert seen == sorted(seen)
    assert len(set(seen)) == 3
    assert seen[-1] == await _last_used(pool, key)


async def test_names_are_unique_even_after_revocation(pool: asyncpg.Pool) -> None:
    name = _name()
    await keys.create_key(pool, name, Role.VIEWER, None)
    with pytest.raises(ApiKeyConflictError, match=f"API key '{name}' already exists"):
        await keys.create_key(pool, name, Role.ADMIN, None)
    await keys.revoke_key(pool, name)
    with pytest.raises(ApiKeyConflictError, match="choose another name"):
        await keys.create_key(pool, name, Role.VIEWER, None)
    assert [k.name for k in await keys.list_keys(pool)].count(name) == 1


async def test_list_shows_every_key_by_name_and_no_secret(pool: asyncpg.Pool) -> None:
    suffix = uuid.uuid4().hex[:8]
    made = [
        await keys.create_key(pool, f"b-{suffix}", Role.VIEWER, ["shop"], reads_payloads=True),
        await keys.create_key(pool, f"a-{suffix}", Role.ADMIN, None),
    ]
    await keys.revoke_key(pool, f"b-{suffix}")
    listed = {k.name: k for k in await keys.list_keys(pool) if k.name.endswith(suffix)}
    assert list(listed) == [f"a-{suffix}", f"b-{suffix}"]
    viewer = listed[f"b-{suffix}"]
    assert (viewer.role, viewer.namespaces, viewer.reads_payloads) == (
        Role.VIEWER,
        ("shop",),
        True,
    )
    assert viewer.revoked_at is not None
    assert listed[f"a-{suffix}"].revoked_at is None
    assert not hasattr(viewer, "digest")
    for _, secret in made:
        assert secret not in repr(listed)


@pytest.mark.parametrize(
    ("name", "namespaces", "expires_in", "field"),
    [
        ("Bad_Name", None, None, "key name"),
        ("-x", None, None, "key name"),
        ("x" * 64, None, None, "key name"),
        ("ok", [], None, "namespaces"),
        ("ok", ["Shop"], None, "namespace"),
        ("ok", ["shop", "a/b"], None, "namespace"),
        ("ok", None, timedelta(0), "expires_in"),
        ("ok", None, timedelta(seconds=-5), "expires_in"),
        ("ok", None, timedelta(days=3651), "expires_in"),
    ],
)
async def test_bad_input_is_refused_before_the_database(
    pool: asyncpg.Pool,
    name: str,
    namespaces: list[str] | None,
    expires_in: timedelta | None,
    field: str,
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await keys.create_key(pool, name, Role.VIEWER, namespaces, expires_in=expires_in)
    assert raised.value.field == field
    assert await keys.get_key(pool, name) is None


@pytest.mark.parametrize(
    "namespaces",
    [[], ["Shop"], ["shop", None], ["a/b"], ["-a"], ["a" * 64], ["shop", ""]],
)
async def test_the_table_itself_refuses_bad_namespaces(
    pool: asyncpg.Pool, namespaces: list[str | None]
) -> None:
    """Keys written by other means (SQL, a later operator) meet the same rules."""
    made = auth.new_key()
    with pytest.raises(asyncpg.CheckViolationError, match="api_key_namespaces_are_dns_labels"):
        await pool.execute(
            "INSERT INTO taskq.api_keys (name, prefix, digest, role, namespaces)"
            " VALUES ($1, $2, $3, 'viewer', $4)",
            _name(),
            made.prefix,
            made.digest,
            namespaces,
        )


async def test_database_errors_are_taskq_errors(pg: LocalPostgres) -> None:
    bare = await fresh_database(pg, "taskq_keys_unmigrated", migrated=False)
    pool = await asyncpg.create_pool(bare, min_size=1, max_size=1)
    assert pool is not None
    try:
        with pytest.raises(SchemaMissingError, match="taskq migrate"):
            await PgKeyStore(pool).authenticate(auth.new_key().secret)
        with pytest.raises(SchemaMissingError):
            await keys.create_key(pool, _name(), Role.VIEWER, None)
        with pytest.raises(SchemaMissingError):
            await keys.list_keys(pool)
        with pytest.raises(SchemaMissingError):
            await keys.revoke_key(pool, "x")
    finally:
        await pool.close()


# -- keys declared by Kubernetes objects (the operator's TaskqApiKey) --------------------------


def _object() -> str:
    return f"team-{uuid.uuid4().hex[:6]}/{_name()}"


async def test_a_declared_key_is_found_by_its_object_and_authenticates(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    expires = datetime.now(UTC) + timedelta(days=30)
    grants = Grants(Role.OPERATOR, ("billing", "shop"), False, expires)
    assert await keys.declared_key(pool, declared_by) is None

    key, secret = await keys.declare_key(pool, declared_by, grants)

    assert key.declared_by == declared_by
    assert key.name == f"{declared_by.replace('/', '-')}-{key.prefix}"
    assert key.grants == grants
    found = await keys.declared_key(pool, declared_by)
    assert found is not None and found.key == key
    assert found.opened_by(secret) and not found.opened_by(auth.new_key().secret)
    authenticated = await PgKeyStore(pool).authenticate(secret)
    assert authenticated is not None and authenticated.grants == grants


async def test_declaring_again_revokes_the_objects_key_before(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    grants = Grants(Role.VIEWER, None, True, None)
    first, first_secret = await keys.declare_key(pool, declared_by, grants)
    second, second_secret = await keys.declare_key(pool, declared_by, grants)

    store = PgKeyStore(pool)
    assert await store.authenticate(first_secret) is None
    assert await store.authenticate(second_secret) is not None
    found = await keys.declared_key(pool, declared_by)
    assert found is not None and found.key.id == second.id
    listed = [k for k in await keys.list_keys(pool) if k.declared_by == declared_by]
    assert sorted((k.id, k.revoked_at is None) for k in listed) == [
        (first.id, False),
        (second.id, True),
    ]


async def test_a_refused_declaration_keeps_the_key_before(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    key, secret = await keys.declare_key(pool, declared_by, Grants(Role.VIEWER, None, False, None))
    past = Grants(Role.VIEWER, None, False, datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidArgumentError) as raised:
        await keys.declare_key(pool, declared_by, past)
    assert raised.value.field == "api_key_expires_after_creation"
    # the revocation and the insert are one transaction: the old key still stands
    assert await PgKeyStore(pool).authenticate(secret) is not None
    found = await keys.declared_key(pool, declared_by)
    assert found is not None and found.key.id == key.id


async def test_grants_change_in_place(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    key, secret = await keys.declare_key(pool, declared_by, Grants(Role.VIEWER, None, False, None))
    later = datetime.now(UTC) + timedelta(days=1)
    changed = await keys.set_grants(pool, key, Grants(Role.ADMIN, ("shop",), True, later))

    assert (changed.id, changed.prefix) == (key.id, key.prefix)
    assert changed.grants == Grants(Role.ADMIN, ("shop",), True, later)
    authenticated = await PgKeyStore(pool).authenticate(secret)
    assert authenticated is not None and authenticated.grants == changed.grants

    await keys.revoke_declared(pool, declared_by)
    with pytest.raises(ApiKeyConflictError, match="was revoked meanwhile"):
        await keys.set_grants(pool, key, Grants(Role.VIEWER, None, False, None))


async def test_revoking_what_an_object_declares(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    key, secret = await keys.declare_key(pool, declared_by, Grants(Role.VIEWER, None, False, None))
    revoked = await keys.revoke_declared(pool, declared_by)
    assert revoked is not None and revoked.id == key.id and revoked.revoked_at is not None
    assert await PgKeyStore(pool).authenticate(secret) is None
    assert await keys.declared_key(pool, declared_by) is None
    assert await keys.revoke_declared(pool, declared_by) is None  # nothing left to revoke


async def test_long_object_names_make_label_key_names(pool: asyncpg.Pool) -> None:
    declared_by = f"{'n' * 62}x/{'k' * 62}y"
    key, _ = await keys.declare_key(pool, declared_by, Grants(Role.VIEWER, None, False, None))
    assert len(key.name) == 63
    assert key.name == f"{'n' * 54}-{key.prefix}"
    await keys.revoke_declared(pool, declared_by)


@pytest.mark.parametrize("declared_by", ["shop", "Shop/ci", "shop/ci/x", "shop/", "/ci"])
async def test_a_malformed_object_is_refused(pool: asyncpg.Pool, declared_by: str) -> None:
    grants = Grants(Role.VIEWER, None, False, None)
    with pytest.raises(InvalidArgumentError) as raised:
        await keys.declare_key(pool, declared_by, grants)
    assert raised.value.field.startswith("declared_by")


async def test_the_table_keeps_one_unrevoked_key_per_object(pool: asyncpg.Pool) -> None:
    declared_by = _object()
    await keys.declare_key(pool, declared_by, Grants(Role.VIEWER, None, False, None))
    made = auth.new_key()
    with pytest.raises(asyncpg.UniqueViolationError, match="api_keys_declared_by_unrevoked"):
        await pool.execute(
            "INSERT INTO taskq.api_keys (name, prefix, digest, role, declared_by)"
            " VALUES ($1, $2, $3, 'viewer', $4)",
            _name(),
            made.prefix,
            made.digest,
            declared_by,
        )
