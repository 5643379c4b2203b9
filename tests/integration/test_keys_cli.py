"""`taskq keys create|list|revoke`, run for real as a subprocess against the test database."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import asyncpg

from taskq import auth
from taskq.auth import Role
from taskq.store import keys
from taskq.store.keys import PgKeyStore
from tests.integration.test_cli import ok, one_line_error, taskq


def _name() -> str:
    return f"cli-key-{uuid.uuid4().hex[:8]}"


async def test_create_prints_the_secret_once_and_it_authenticates(
    dsn: str, pool: asyncpg.Pool
) -> None:
    name = _name()
    run = ok(
        await taskq(
            "keys", "create", name, "--namespace", "shop", "--namespace", "billing",
            "--role", "operator", "--expires-in", "90d", dsn=dsn,
        )
    )  # fmt: skip
    (secret,) = run.out.splitlines()  # the secret alone on stdout
    assert run.err.count("\n") == 1
    assert "will not be shown again" in run.err
    assert f"created API key '{name}'" in run.err
    assert "role operator, namespaces billing,shop" in run.err
    assert secret not in run.err

    key = await PgKeyStore(pool).authenticate(secret)
    assert key is not None
    assert (key.name, key.role, key.namespaces, key.reads_payloads) == (
        name,
        Role.OPERATOR,
        ("billing", "shop"),
        False,
    )
    assert key.prefix == auth.parse_prefix(secret)
    assert key.expires_at is not None
    assert key.expires_at - key.created_at == timedelta(days=90)


async def test_every_namespace_and_payloads_for_a_viewer(dsn: str, pool: asyncpg.Pool) -> None:
    name = _name()
    run = ok(
        await taskq(
            "keys", "create", name, "--all-namespaces", "--role", "VIEWER", "--reads-payloads",
            dsn=dsn,
        )
    )  # fmt: skip
    key = await PgKeyStore(pool).authenticate(run.out.strip())
    assert key is not None
    assert (key.role, key.namespaces, key.expires_at) == (Role.VIEWER, None, None)
    assert key.sees_payloads()
    assert "namespaces *, expires never" in run.err


async def test_list_shows_keys_without_secrets_and_revoke_refuses_them(
    dsn: str, pool: asyncpg.Pool
) -> None:
    live, gone = _name(), _name()
    created = await asyncio.gather(
        taskq("keys", "create", live, "--namespace", "shop", "--role", "viewer", dsn=dsn),
        taskq("keys", "create", gone, "--all-namespaces", "--role", "admin", dsn=dsn),
    )
    live_secret, gone_secret = (ok(run).out.strip() for run in created)
    store = PgKeyStore(pool)
    assert await store.authenticate(live_secret) is not None  # records its last use

    revoked = ok(await taskq("keys", "revoke", gone, dsn=dsn))
    assert f"revoked API key '{gone}'" in revoked.out
    assert await store.authenticate(gone_secret) is None
    assert await store.authenticate(live_secret) is not None

    listing = ok(await taskq("keys", "list", dsn=dsn)).out
    header, *rows = listing.splitlines()
    assert header.split() == [
        "NAME", "PREFIX", "ROLE", "NAMESPACES", "PAYLOADS", "STATE", "EXPIRES", "REVOKED",
        "LAST", "USED", "DECLARED", "BY",
    ]  # fmt: skip
    by_name = {row.split()[0]: row.split() for row in rows}
    live_key, gone_key = await keys.get_key(pool, live), await keys.get_key(pool, gone)
    assert live_key is not None
    assert gone_key is not None
    assert by_name[live][:7] == [live, live_key.prefix, "viewer", "shop", "no", "active", "never"]
    assert by_name[live][7] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_name[live][8])  # used
    assert by_name[gone][:6] == [gone, gone_key.prefix, "admin", "*", "yes", "revoked"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_name[gone][7])  # revoked
    assert by_name[gone][8] == "never"
    assert by_name[live][9:] == by_name[gone][9:] == ["-"]  # made here, not declared
    for secret in (live_secret, gone_secret):
        assert secret not in listing
        assert auth.digest(secret).hex() not in listing
        assert secret[len("tq_") + auth.KEY_PREFIX_LENGTH + 1 :] not in listing


async def test_a_declared_key_is_listed_with_its_object_and_revoking_it_says_what_follows(
    dsn: str, pool: asyncpg.Pool
) -> None:
    declared_by = f"shop/{_name()}"
    key, _secret = await keys.declare_key(
        pool, declared_by, auth.Grants(Role.VIEWER, ("shop",), False, None)
    )
    listing = ok(await taskq("keys", "list", dsn=dsn)).out
    [row] = [line.split() for line in listing.splitlines() if line.startswith(key.name)]
    assert row[-2:] == ["TaskqApiKey", declared_by]

    revoked = ok(await taskq("keys", "revoke", key.name, dsn=dsn))
    assert f"revoked API key '{key.name}'" in revoked.out
    assert f"declared by the TaskqApiKey {declared_by}" in revoked.err
    assert "delete the TaskqApiKey" in revoked.err


async def test_revoking_twice_or_an_unknown_key_fails_naming_it(dsn: str) -> None:
    name = _name()
    ok(await taskq("keys", "create", name, "--all-namespaces", "--role", "viewer", dsn=dsn))
    ok(await taskq("keys", "revoke", name, dsn=dsn))
    again, unknown = await asyncio.gather(
        taskq("keys", "revoke", name, dsn=dsn), taskq("keys", "revoke", "no-such-key", dsn=dsn)
    )
    one_line_error(again, f"API key '{name}' was already revoked at")
    one_line_error(unknown, "no API key named 'no-such-key'", "taskq keys list")


async def test_bad_flags_name_the_flag_and_the_fix(dsn: str, pool: asyncpg.Pool) -> None:
    taken = _name()
    ok(await taskq("keys", "create", taken, "--all-namespaces", "--role", "viewer", dsn=dsn))
    names = [_name() for _ in range(9)]
    runs = await asyncio.gather(
        taskq("keys", "create", names[0], "--role", "viewer", dsn=dsn),
        taskq("keys", "create", names[1], "--namespace", "shop", "--all-namespaces",
              "--role", "viewer", dsn=dsn),
        taskq("keys", "create", names[2], "--all-namespaces", "--role", "viewer",
              "--expires-in", "90x", dsn=dsn),
        taskq("keys", "create", names[3], "--all-namespaces", "--role", "viewer",
              "--expires-in", "0d", dsn=dsn),
        taskq("keys", "create", names[4], "--all-namespaces", "--role", "viewer",
              "--expires-in", "99999d", dsn=dsn),
        taskq("keys", "create", names[5], "--all-namespaces", "--role", "boss", dsn=dsn),
        taskq("keys", "create", names[6], "--namespace", "Shop_1", "--role", "viewer", dsn=dsn),
        taskq("keys", "create", "Bad_Key", "--all-namespaces", "--role", "viewer", dsn=dsn),
        taskq("keys", "create", taken, "--all-namespaces", "--role", "admin", dsn=dsn),
        taskq("keys", "create", names[7], "--all-namespaces", dsn=dsn),
    )  # fmt: skip
    (no_scope, both_scopes, bad_duration, zero_duration, long_duration, bad_role, bad_namespace,
     bad_name, duplicate, no_role) = runs  # fmt: skip
    one_line_error(no_scope, "--namespace NS", "--all-namespaces")
    one_line_error(both_scopes, "--namespace and --all-namespaces exclude each other")
    one_line_error(bad_duration, "invalid --expires-in '90x'", "30m, 12h or 90d")
    one_line_error(zero_duration, "invalid --expires-in '0d'")
    one_line_error(long_duration, "invalid --expires-in '99999d'", "at most 3650d")
    one_line_error(bad_role, "invalid --role: 'boss'", "viewer, operator or admin")
    one_line_error(bad_namespace, "invalid --namespace: 'Shop_1'", "lowercase letters")
    one_line_error(bad_name, "invalid key name: 'Bad_Key'")
    one_line_error(duplicate, f"API key '{taken}' already exists", "choose another name")
    assert no_role.code == 2
    assert "the following arguments are required: --role" in no_role.err
    for run in runs:
        assert run.out == ""  # no secret printed for a key that was not made
    listed = {key.name for key in await keys.list_keys(pool)}
    assert listed.isdisjoint(names) and "Bad_Key" not in listed
    duplicate_key = await keys.get_key(pool, taken)
    assert duplicate_key is not None
    assert duplicate_key.role == Role.VIEWER
