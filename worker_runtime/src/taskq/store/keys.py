"""API keys in PostgreSQL (taskq.api_keys, migration 0010): create, list, revoke, and the
KeyStore the front door authenticates requests with. What a key allows: taskq/auth.py.

Every call here translates database errors (store/dberrors.py), so its callers (the CLI, the
API server) see taskq errors only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from taskq import auth
from taskq.auth import ApiKey, Role
from taskq.errors import ApiKeyConflictError, InvalidArgumentError, UnknownApiKeyError
from taskq.names import check_label
from taskq.store.dberrors import translated
from taskq.store.sqlfiles import query
from taskq.store.types import Executor

# A key that should outlive this is made without an expiry; beyond it lie timestamp overflows.
MAX_LIFETIME = timedelta(days=3650)
# How often a key's last_used_at is written at most: a write per request would turn every
# authenticated read into a row update.
RECORD_USE_EVERY = timedelta(minutes=1)
# A new key's random prefix may, once in trillions, be taken: draw again this many times.
_PREFIX_DRAWS = 3


def key_from_row(row: asyncpg.Record) -> ApiKey:
    namespaces = row["namespaces"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        role=Role.parse(row["role"]),
        namespaces=None if namespaces is None else tuple(namespaces),
        reads_payloads=row["reads_payloads"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _check_namespaces(namespaces: Sequence[str] | None) -> list[str] | None:
    if namespaces is None:
        return None
    if isinstance(namespaces, str):  # a str is a Sequence[str] of its letters
        namespaces = [namespaces]
    if not namespaces:
        raise InvalidArgumentError(
            "namespaces", "name at least one namespace, or None for every namespace"
        )
    return sorted({check_label(ns, "namespace") for ns in namespaces})


async def create_key(
    db: Executor,
    name: str,
    role: Role,
    namespaces: Sequence[str] | None,
    *,
    reads_payloads: bool = False,
    expires_in: timedelta | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which exists nowhere else: show it once, it cannot be read
    back. `namespaces` None: every namespace. ApiKeyConflictError when the name is taken."""
    check_label(name, "key name")
    confined = _check_namespaces(namespaces)
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
        raise InvalidArgumentError(
            "expires_in",
            f"{expires_in} is not between 0 and {MAX_LIFETIME.days} days "
            "(a key made without an expiry never expires)",
        )
    seconds = None if expires_in is None else expires_in.total_seconds()
    with translated():
        for _ in range(_PREFIX_DRAWS):
            made = auth.new_key()
            try:
                row = await db.fetchrow(
                    query("create_api_key"),
                    name,
                    made.prefix,
                    made.digest,
                    role.label,
                    confined,
                    reads_payloads,
                    seconds,
                )
            except asyncpg.UniqueViolationError as error:
                if getattr(error, "constraint_name", None) != "api_keys_prefix_key":
                    raise ApiKeyConflictError(
                        name, "already exists (a revoked key keeps its name): choose another name"
                    ) from None
                continue  # the prefix was taken: draw another key
            assert row is not None
            return key_from_row(row), made.secret
    raise RuntimeError(f"{_PREFIX_DRAWS} random key prefixes in a row were taken")


async def get_key(db: Executor, name: str) -> ApiKey | None:
    with translated():
        row = await db.fetchrow(query("get_api_key"), name)
    return None if row is None else key_from_row(row)


async def list_keys(db: Executor) -> list[ApiKey]:
    """Every key by name, revoked and expired ones included."""
    with translated():
        return [key_from_row(row) for row in await db.fetch(query("list_api_keys"))]


async def revoke_key(db: Executor, name: str) -> ApiKey:
    """Revoke a key at once (its next request is refused). UnknownApiKeyError when there is no
    such key, ApiKeyConflictError when it was already revoked: nothing done is never success."""
    with translated():
        row = await db.fetchrow(query("revoke_api_key"), name)
    if row is not None:
        return key_from_row(row)
    existing = await get_key(db, name)
    if existing is None:
        raise UnknownApiKeyError(name)
    raise ApiKeyConflictError(name, f"was already revoked at {existing.revoked_at}")


class PgKeyStore:
    """taskq.auth.KeyStore over PostgreSQL: one indexed read per request, and a write of the
    key's last use at most once per `record_every` (across every process: the write is
    guarded in SQL)."""

    def __init__(self, pool: Executor, *, record_every: timedelta = RECORD_USE_EVERY) -> None:
        self._db = pool
        self._record_every = record_every

    async def authenticate(self, secret: str) -> ApiKey | None:
        prefix = auth.parse_prefix(secret)
        if prefix is None:
            return None
        with translated():
            row = await self._db.fetchrow(query("api_key_by_prefix"), prefix)
            # the prefix is public: only the digest comparison needs constant time
            if row is None or not auth.matches(secret, row["digest"]):
                return None
            key = key_from_row(row)
            now = row["now"]
            if not key.usable_at(now):
                return None
            if key.last_used_at is None or now - key.last_used_at >= self._record_every:
                used = await self._db.fetchval(
                    query("api_key_used"), key.id, self._record_every.total_seconds()
                )
                if used is not None:
                    key = dataclasses.replace(key, last_used_at=used)
        return key
