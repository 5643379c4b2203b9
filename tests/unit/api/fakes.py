"""An in-memory KeyStore (taskq.auth's port), for unit tests of the API's service layer."""

from __future__ import annotations

from datetime import UTC, datetime

from taskq.auth import ApiKey, Role, digest, parse_prefix


def api_key(
    role: Role, namespaces: tuple[str, ...] | None = ("shop",), *, reads_payloads: bool = False
) -> ApiKey:
    return ApiKey(
        id=1,
        name="k",
        prefix="abcd1234",
        role=role,
        namespaces=namespaces,
        reads_payloads=reads_payloads,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )


class MemoryKeyStore:
    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.asked: list[str] = []

    async def authenticate(self, secret: str) -> ApiKey | None:
        self.asked.append(secret)
        return self.keys.get(secret)

    async def authenticate_digest(self, prefix: str, key_digest: bytes) -> ApiKey | None:
        secret = next((s for s in self.keys if digest(s) == key_digest), None)
        if secret is None or parse_prefix(secret) != prefix:
            return None
        return await self.authenticate(secret)
