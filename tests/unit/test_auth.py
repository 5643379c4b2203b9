"""API keys and what they allow (taskq.auth): pure, so no database here."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from taskq import auth
from taskq.auth import Action, ApiKey, Role
from taskq.errors import InvalidArgumentError

_NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _key(
    role: Role,
    namespaces: tuple[str, ...] | None = None,
    *,
    reads_payloads: bool = False,
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
) -> ApiKey:
    return ApiKey(
        id=1,
        name="k",
        prefix="abcd1234",
        role=role,
        namespaces=namespaces,
        reads_payloads=reads_payloads,
        created_at=_NOW - timedelta(days=1),
        expires_at=expires_at,
        revoked_at=revoked_at,
        last_used_at=None,
    )


def test_roles_are_ordered_each_including_the_one_before() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert [role.label for role in Role] == ["viewer", "operator", "admin"]


@pytest.mark.parametrize("text", ["viewer", "Operator", "ADMIN"])
def test_role_parses_its_label_in_any_case(text: str) -> None:
    assert Role.parse(text).label == text.lower()


def test_an_unknown_role_names_the_field_and_the_roles() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        Role.parse("boss", "--role")
    assert raised.value.field == "--role"
    assert (
        str(raised.value) == "invalid --role: 'boss' is not a role: use viewer, operator or admin"
    )


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {Action.READ}),
        (Role.OPERATOR, {Action.READ, Action.WRITE}),
        (Role.ADMIN, {Action.READ, Action.WRITE, Action.MANAGE_KEYS}),
    ],
)
def test_each_role_may_do_its_actions_and_no_more(role: Role, allowed: set[Action]) -> None:
    key = _key(role)
    assert {action for action in Action if key.may(action)} == allowed
    assert {action for action in Action if key.may(action, "shop")} == allowed


def test_a_key_is_confined_to_its_namespaces() -> None:
    key = _key(Role.ADMIN, ("billing", "shop"))
    assert key.may(Action.WRITE, "shop")
    assert key.may(Action.READ, "billing")
    assert not key.may(Action.READ, "other")
    assert not key.may(Action.MANAGE_KEYS, "other")
    # across namespaces (a listing): allowed, and the caller filters to the key's namespaces
    assert key.may(Action.READ)


def test_confinement_does_not_lift_the_role() -> None:
    key = _key(Role.VIEWER, ("shop",))
    assert key.may(Action.READ, "shop")
    assert not key.may(Action.WRITE, "shop")


def test_a_key_for_every_namespace_reaches_any() -> None:
    key = _key(Role.OPERATOR, None)
    assert key.may(Action.WRITE, "anything")
    assert key.may(Action.READ, "x")


@pytest.mark.parametrize(
    ("role", "reads_payloads", "sees"),
    [
        (Role.VIEWER, False, False),
        (Role.VIEWER, True, True),
        (Role.OPERATOR, False, True),
        (Role.ADMIN, False, True),
    ],
)
def test_only_viewers_may_be_kept_from_payloads(
    role: Role, reads_payloads: bool, sees: bool
) -> None:
    assert _key(role, reads_payloads=reads_payloads).sees_payloads() is sees


def test_expired_and_revoked_keys_are_not_usable() -> None:
    assert _key(Role.VIEWER).usable_at(_NOW)
    assert _key(Role.VIEWER, expires_at=_NOW + timedelta(seconds=1)).usable_at(_NOW)
    assert not _key(Role.VIEWER, expires_at=_NOW).usable_at(_NOW)
    assert not _key(Role.VIEWER, revoked_at=_NOW - timedelta(hours=1)).usable_at(_NOW)


def test_a_new_key_is_its_prefix_and_random_bytes_stored_as_a_sha256() -> None:
    made = auth.new_key()
    assert made.secret.startswith(f"tq_{made.prefix}_")
    assert len(made.prefix) == auth.KEY_PREFIX_LENGTH
    assert len(made.secret) == len("tq_") + 8 + 1 + 43
    assert made.digest == hashlib.sha256(made.secret.encode()).digest()
    assert made.secret.encode() not in made.digest
    others = [auth.new_key() for _ in range(50)]
    assert len({k.prefix for k in others}) == 50
    assert len({k.secret for k in others}) == 50


def test_parse_prefix_of_a_well_formed_key() -> None:
    made = auth.new_key()
    assert auth.parse_prefix(made.secret) == made.prefix


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "tq_abcd1234",
        "tq_abcd1234_" + "A" * 42,  # a secret one character short
        "tq_abcd1234_" + "A" * 44,
        "tq_ABCD1234_" + "A" * 43,  # the prefix is lowercase
        "tq_abcd123_" + "A" * 43,
        "xx_abcd1234_" + "A" * 43,
        "tq_abcd1234_" + "A" * 42 + "=",  # URL-safe base64 without padding
        "tq_abcd1234_" + "A" * 43 + "\n",
        " tq_abcd1234_" + "A" * 43,
        "Bearer tq_abcd1234_" + "A" * 43,
        "tq_abcd1234_" + "A" * 42 + "'",
    ],
)
def test_parse_prefix_refuses_anything_else(secret: str) -> None:
    assert auth.parse_prefix(secret) is None


def test_matches_only_the_keys_own_digest() -> None:
    made, other = auth.new_key(), auth.new_key()
    assert auth.matches(made.secret, made.digest)
    assert not auth.matches(other.secret, made.digest)
    altered = made.secret[:-1] + ("B" if made.secret[-1] != "B" else "C")
    assert not auth.matches(altered, made.digest)
    assert not auth.matches(made.secret, b"")
