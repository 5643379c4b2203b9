"""Completion webhooks, the pure part (docs/webhooks.md): what an endpoint is, the events it
picks, Standard Webhooks signing, and which targets a delivery may reach."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from taskq.errors import InvalidArgumentError

# The system queue every delivery is a task of, and the built-in handler's task name.
WEBHOOK_QUEUE = "taskq-system/webhooks"
WEBHOOK_TASK = "taskq.webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
MAX_URL = 2048


class Event(enum.StrEnum):
    """A finished state an endpoint can ask to hear about; the value is the CRD's spelling."""

    SUCCEEDED = "Succeeded"
    DEAD = "Dead"
    CANCELED = "Canceled"

    @property
    def state(self) -> str:
        """The task state (and the database's spelling)."""
        return self.value.lower()

    @classmethod
    def parse(cls, text: str) -> Event:
        for event in cls:
            if text.lower() == event.state:
                return event
        raise InvalidArgumentError(
            "events", f"{text!r} is not an event: give {', '.join(e.value for e in cls)}"
        )


ALL_EVENTS = (Event.SUCCEEDED, Event.DEAD, Event.CANCELED)


@dataclass(frozen=True)
class WebhookSpec:
    """A queue's endpoint. Without url it signs (and picks the events of) the calls to the
    callback URLs its queue's tasks were given at enqueue."""

    url: str | None
    secret: str
    events: tuple[Event, ...] = ALL_EVENTS
    allow_hosts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.url is not None:
            check_url_shape(self.url, "url")
            check_scheme(self.url, self.allow_hosts, "url")
        check_secret(self.secret)
        if not self.events:
            raise InvalidArgumentError("events", "name at least one event")


def new_secret() -> str:
    """A fresh signing secret, whsec_<base64 of 32 random bytes>."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def check_secret(secret: str, where: str = "secret") -> None:
    try:
        key = _secret_key(secret) if secret.startswith(SECRET_PREFIX) else b""
    except ValueError:
        key = b""
    if not 24 <= len(key) <= 64:
        raise InvalidArgumentError(
            where, "give whsec_ followed by the base64 of 24 to 64 random bytes (taskq makes one)"
        )


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


# -- where a delivery may go ----------------------------------------------------------------


class TargetRefusedError(InvalidArgumentError):
    """The URL may not be called: retrying will not change that."""


def check_url_shape(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidArgumentError(
            where, f"{url[:80]!r} must be an http(s) URL with a host, at most {MAX_URL} characters"
        )


def allowed(host: str, allow_hosts: Iterable[str]) -> bool:
    return host.lower().rstrip(".") in {h.lower().rstrip(".") for h in allow_hosts}


def check_scheme(url: str, allow_hosts: Sequence[str], where: str) -> None:
    """HTTPS, unless the allow-list names the host."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not allowed(parts.hostname or "", allow_hosts):
        raise TargetRefusedError(
            where,
            f"{url[:80]!r} is not HTTPS: use https://, or list {parts.hostname!r} in allowHosts",
        )


def check_addresses(host: str, addresses: Iterable[str], allow_hosts: Sequence[str]) -> None:
    """Refuse a host that resolves to a loopback, private, link-local (cloud metadata),
    multicast, reserved or unspecified address, unless the allow-list names it: a receiver
    URL must not become a way into the cluster's own network."""
    if allowed(host, allow_hosts):
        return
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise TargetRefusedError(
                "url",
                f"{host!r} resolves to {address}, a non-public address: list {host!r} in "
                "allowHosts to call it",
            )
