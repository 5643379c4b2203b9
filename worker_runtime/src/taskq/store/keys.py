"""API keys in PostgreSQL (taskq.api_keys, migrations 0010 and 0012): create, list, revoke, the
keys Kubernetes objects declare (the operator's TaskqApiKey), and the KeyStore the front door
authenticates requests with. What a key allows: taskq/auth.py.

Every call here translates database errors (store/dberrors.py), so its callers (the CLI, the
API server, the operator) see taskq errors only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg

from taskq import auth
from taskq.auth import ApiKey, Grants, Role
from taskq.errors import ApiKeyConflictError, InvalidArgumentError, UnknownApiKeyError
from taskq.names import check_label
from taskq.store.dberrors import translated
from taskq.store.sqlfiles import query
from taskq.store.types import Connection, Executor

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
        declared_by=row["declared_by"],
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
    async with _connection(db) as conn:
        return await _insert(
            conn,
            lambda _prefix: name,
            lambda key_name, made: conn.fetchrow(
                query("create_api_key"),
                key_name,
                made.prefix,
                made.digest,
                role.label,
                confined,
                reads_payloads,
                seconds,
            ),
        )


@contextlib.asynccontextmanager
async def _connection(db: Executor) -> AsyncIterator[Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def _insert(
    conn: Connection,
    name_of: Callable[[str], str],
    insert: Callable[[str, auth.NewKey], Awaitable[asyncpg.Record | None]],
) -> tuple[ApiKey, str]:
    """A new key named `name_of(its prefix)`, written by `insert(name, key)`, and its
    secret."""
    with translated():
        for _ in range(_PREFIX_DRAWS):
            made = auth.new_key()
            name = name_of(made.prefix)
            try:
                # a savepoint inside a caller's transaction, so that a taken prefix only
                # costs a draw
                async with conn.transaction():
                    row = await insert(name, made)
            except asyncpg.UniqueViolationError as error:
                constraint = getattr(error, "constraint_name", None)
                if constraint == "api_keys_prefix_key":
                    continue  # the prefix was taken: draw another key
                if constraint == "api_keys_declared_by_unrevoked":
                    raise ApiKeyConflictError(
                        name,
                        "was not made: another key of the same object was made at the same "
                        "time (by a second operator?); that one stands",
                    ) from None
                raise ApiKeyConflictError(
                    name, "already exists (a revoked key keeps its name): choose another name"
                ) from None
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


# -- keys declared by Kubernetes objects (the operator's TaskqApiKey) ------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DeclaredKey:
    """The unrevoked key an object declares, with the digest its secret must have."""

    key: ApiKey
    digest: bytes

    def opened_by(self, secret: str) -> bool:
        return auth.matches(secret, self.digest)


def declared_name(declared_by: str, prefix: str) -> str:
    """`<namespace>-<name>-<prefix>`, cut to a label: readable in `taskq keys list`, and
    unique through the prefix, since each key an object is issued needs a name of its own."""
    base = declared_by.replace("/", "-")[: 62 - auth.KEY_PREFIX_LENGTH].rstrip("-")
    return f"{base}-{prefix}"


def _check_declared_by(declared_by: str) -> str:
    namespace, slash, name = declared_by.partition("/")
    if not slash:
        raise InvalidArgumentError("declared_by", f"{declared_by!r} is not namespace/name")
    check_label(namespace, "declared_by namespace")
    check_label(name, "declared_by name")
    return declared_by


async def declared_key(db: Executor, declared_by: str) -> DeclaredKey | None:
    """The unrevoked key the object `declared_by` (namespace/name) declares, if any."""
    with translated():
        row = await db.fetchrow(query("declared_api_key"), _check_declared_by(declared_by))
    return None if row is None else DeclaredKey(key_from_row(row), row["digest"])


async def declare_key(db: Executor, declared_by: str, grants: Grants) -> tuple[ApiKey, str]:
    """A new key for the object `declared_by`, and its secret; the key it declared before,
    if any, is revoked in the same transaction (its secret is no longer where the object
    says). An expiry must be in the future (InvalidArgumentError otherwise)."""
    declared_by = _check_declared_by(declared_by)
    namespaces = _check_namespaces(grants.namespaces)
    async with _connection(db) as conn, conn.transaction():
        with translated():
            await conn.execute(query("revoke_declared_api_key"), declared_by)
        return await _insert(
            conn,
            lambda prefix: declared_name(declared_by, prefix),
            lambda key_name, made: conn.fetchrow(
                query("declare_api_key"),
                key_name,
                made.prefix,
                made.digest,
                grants.role.label,
                namespaces,
                grants.reads_payloads,
                grants.expires_at,
                declared_by,
            ),
        )


async def set_grants(db: Executor, key: ApiKey, grants: Grants) -> ApiKey:
    """The key with new grants, at once (its next request is judged by them).
    ApiKeyConflictError when it was revoked meanwhile."""
    namespaces = _check_namespaces(grants.namespaces)
    with translated():
        row = await db.fetchrow(
            query("set_api_key_grants"),
            key.id,
            grants.role.label,
            namespaces,
            grants.reads_payloads,
            grants.expires_at,
        )
    if row is None:
        raise ApiKeyConflictError(key.name, "was revoked meanwhile: its grants stay as they were")
    return key_from_row(row)


async def revoke_declared(db: Executor, declared_by: str) -> ApiKey | None:
    """Revoke the key the object declares; None when it declares no unrevoked key."""
    with translated():
        row = await db.fetchrow(
            query("revoke_declared_api_key"), _check_declared_by(declared_by)
        )
    return None if row is None else key_from_row(row)


class PgKeyStore:
    """taskq.auth.KeyStore over PostgreSQL: one indexed read per request, and a write of the
    key's last use at most once per `record_every` (across every process: the write is
    guarded in SQL). Also taskq.auth.KeyAdmin, by the functions above."""

    def __init__(self, pool: Executor, *, record_every: timedelta = RECORD_USE_EVERY) -> None:
        self._db = pool
        self._record_every = record_every

    async def authenticate(self, secret: str) -> ApiKey | None:
        prefix = auth.parse_prefix(secret)
        if prefix is None:
            return None
        return await self.authenticate_digest(prefix, auth.digest(secret))

    async def authenticate_digest(self, prefix: str, key_digest: bytes) -> ApiKey | None:
        if not auth.is_prefix(prefix):
            return None
        with translated():
            row = await self._db.fetchrow(query("api_key_by_prefix"), prefix)
            # the prefix is public: only the digest comparison needs constant time
            if row is None or not hmac.compare_digest(key_digest, row["digest"]):
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

    async def list_keys(self) -> list[ApiKey]:
        return await list_keys(self._db)

    async def create_key(
        self,
        name: str,
        role: Role,
        namespaces: Sequence[str] | None,
        *,
        reads_payloads: bool,
        expires_in: timedelta | None,
    ) -> tuple[ApiKey, str]:
        return await create_key(
            self._db, name, role, namespaces, reads_payloads=reads_payloads,
            expires_in=expires_in,
        )

    async def revoke_key(self, name: str) -> ApiKey:
        return await revoke_key(self._db, name)
