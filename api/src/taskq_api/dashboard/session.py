"""The dashboard's session: a signed cookie (itsdangerous), HttpOnly and SameSite=Strict, that
holds a CSRF token and, once signed in, the key's public prefix and SHA-256 digest.

The cookie never holds the key itself: a copied cookie opens the dashboard until it expires,
but is no API key. Each request authenticates the prefix and digest again through the service,
so an expired or revoked key ends its sessions at their next request. Signed, not encrypted:
nothing in it is secret without the server's session secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from taskq.auth import digest, parse_prefix

COOKIE: Final = "taskq_session"
FLASH_COOKIE: Final = "taskq_flash"
# A session ends this long after sign-in, whatever happens to its key before.
MAX_AGE_SECONDS: Final = 12 * 3600
_FLASH_AGE_SECONDS: Final = 60


class CsrfError(Exception):
    """A form without this session's token: forged, or older than the session."""


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    prefix: str | None = None  # None: not signed in
    key_digest: bytes | None = None

    @property
    def signed_in(self) -> bool:
        return self.prefix is not None and self.key_digest is not None

    def check_csrf(self, token: str | None) -> None:
        if not token or not hmac.compare_digest(token.encode(), self.csrf.encode()):
            raise CsrfError


def anonymous() -> Session:
    return Session(csrf=secrets.token_urlsafe(24))


def signed_in(key_secret: str) -> Session:
    """A new session for this key, with a new CSRF token (none from before sign-in lives on)."""
    prefix = parse_prefix(key_secret)
    if prefix is None:
        raise ValueError("not a key")
    return Session(secrets.token_urlsafe(24), prefix, digest(key_secret))


class SessionCodec:
    def __init__(self, secret: str) -> None:
        signer = {"digest_method": hashlib.sha256}  # itsdangerous' default is SHA-1
        self._session = URLSafeTimedSerializer(
            secret, salt="taskq.dashboard.session", signer_kwargs=signer
        )
        self._flash = URLSafeTimedSerializer(
            secret, salt="taskq.dashboard.flash", signer_kwargs=signer
        )

    def read(self, request: Request) -> Session | None:
        """The request's session, or None: none, tampered with, or older than MAX_AGE."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._session.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:  # SignatureExpired included
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        prefix, encoded = data.get("p"), data.get("d")
        if isinstance(prefix, str) and isinstance(encoded, str):
            try:
                return Session(data["c"], prefix, base64.urlsafe_b64decode(encoded))
            except (binascii.Error, ValueError):
                return None
        return Session(data["c"])

    def write(self, request: Request, response: Response, session: Session) -> None:
        data: dict[str, str] = {"c": session.csrf}
        if session.prefix is not None and session.key_digest is not None:
            data["p"] = session.prefix
            data["d"] = base64.urlsafe_b64encode(session.key_digest).decode()
        _set(request, response, COOKIE, self._session.dumps(data), MAX_AGE_SECONDS)

    def flash(self, request: Request, response: Response, message: str) -> None:
        """A notice for the next page (after a redirect), e.g. what an action did."""
        _set(request, response, FLASH_COOKIE, self._flash.dumps(message), _FLASH_AGE_SECONDS)

    def read_flash(self, request: Request) -> str | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        try:
            message = self._flash.loads(raw, max_age=_FLASH_AGE_SECONDS)
        except BadSignature:
            return None
        return message if isinstance(message, str) else None


def clear(request: Request, response: Response, name: str = COOKIE) -> None:
    response.delete_cookie(name, path=_path(request), httponly=True, samesite="strict")


def _path(request: Request) -> str:
    # the dashboard's own path: the cookie is never sent with /v1 requests
    return str(request.scope.get("root_path") or "/")


def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
