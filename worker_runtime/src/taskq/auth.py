"""API keys and what they allow: roles, actions, namespaces. Pure: no I/O, no clock.

A key's secret is `tq_<prefix>_<secret>`: the prefix (8 lowercase letters and digits) is public
and names the key in logs and lists; the secret part is 32 random bytes (URL-safe base64). The
database keeps the prefix and the SHA-256 of the whole key, never the key. A slow hash
(bcrypt, argon2) defends guessable passwords; these are 256 random bits, so one SHA-256 is as
safe and costs microseconds per request. Hashes are compared in constant time.

Roles are cumulative: a viewer reads, an operator also changes tasks and queues, an admin also
manages keys. A key is confined to its namespaces (or all of them), and a viewer sees payloads
and results only when its key says so.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from taskq.errors import InvalidArgumentError

KEY_PREFIX_LENGTH = 8
_KEY = re.compile(r"tq_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Role(enum.IntEnum):
    """Ordered: each role may do everything the one before it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: str, field: str = "role") -> Role:
        try:
            return cls[value.upper()]
        except KeyError:
            raise InvalidArgumentError(
                field, f"{value!r} is not a role: use viewer, operator or admin"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(enum.Enum):
    """What a request does, each with the least role that may do it."""

    READ = Role.VIEWER  # queues, tasks, counts, histories
    WRITE = Role.OPERATOR  # enqueue, cancel, retry, pause, resume, replay
    MANAGE_KEYS = Role.ADMIN


@dataclass(frozen=True, slots=True)
class Grants:
    """What a key may do and until when: what its maker chooses, and may change for a key
    declared from Kubernetes (a TaskqApiKey's spec)."""

    role: Role
    namespaces: tuple[str, ...] | None  # sorted; None: every namespace
    reads_payloads: bool  # a viewer sees payloads and results (operators and admins always do)
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the database describes it (never its secret)."""

    id: int
    name: str
    prefix: str
    role: Role
    namespaces: tuple[str, ...] | None  # sorted; None: every namespace
    reads_payloads: bool  # a viewer sees payloads and results (operators and admins always do)
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    declared_by: str | None = None  # the TaskqApiKey (namespace/name) that declares it

    @property
    def grants(self) -> Grants:
        return Grants(self.role, self.namespaces, self.reads_payloads, self.expires_at)

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def may(self, action: Action, namespace: str | None = None) -> bool:
        """True when this key may do `action` (in `namespace`, when the action concerns one;
        None: across namespaces, which a confined key may do only on its own ones)."""
        if self.role < action.value:
            return False
        return namespace is None or self.namespaces is None or namespace in self.namespaces

    def sees_payloads(self) -> bool:
        return self.role >= Role.OPERATOR or self.reads_payloads


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: `secret` is shown once and stored only as `digest`."""

    prefix: str
    secret: str
    digest: bytes


def new_key() -> NewKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(KEY_PREFIX_LENGTH))
    secret = f"tq_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix, secret, digest(secret))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_prefix(secret: str) -> str | None:
    """The public prefix of a well-formed key, else None (the request is unauthenticated)."""
    match = _KEY.fullmatch(secret)
    return match.group(1) if match else None


def matches(secret: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def is_prefix(text: str) -> bool:
    return len(text) == KEY_PREFIX_LENGTH and all(c in _PREFIX_ALPHABET for c in text)


class KeyStore(Protocol):
    """Where keys live (taskq.store.keys over PostgreSQL)."""

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The usable key whose secret this is (recording its use), else None: unknown,
        malformed, expired and revoked keys alike."""
        ...

    async def authenticate_digest(self, prefix: str, key_digest: bytes) -> ApiKey | None:
        """As authenticate, for a caller that kept the key's prefix and digest rather than the
        key (the dashboard's session cookie)."""
        ...


class KeyAdmin(Protocol):
    """Making, listing and revoking keys (taskq.store.keys over PostgreSQL)."""

    async def list_keys(self) -> list[ApiKey]:
        """Every key by name, revoked and expired ones included."""
        ...

    async def create_key(
        self,
        name: str,
        role: Role,
        namespaces: Sequence[str] | None,
        *,
        reads_payloads: bool,
        expires_in: timedelta | None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which exists nowhere else."""
        ...

    async def revoke_key(self, name: str) -> ApiKey:
        """Revoke a key at once; UnknownApiKeyError, or ApiKeyConflictError when it already
        was."""
        ...
