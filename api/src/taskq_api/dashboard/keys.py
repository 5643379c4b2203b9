"""Keys, for admin keys: the list, a new key (its secret shown once, on the answer to the
form and nowhere else), and revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from taskq.auth import ApiKey, Role
from taskq.errors import ApiKeyConflictError, InvalidArgumentError
from taskq_api.dashboard.actions import done, posted, unconfirmed
from taskq_api.dashboard.context import Visit, page, service, visit

ROLES: Final = tuple(role.label for role in Role)
FIELDS: Final = ("name", "role", "namespaces", "expires_in_days")
# The form's labels, by the field names the store's errors use.
LABELS: Final = {
    "key name": "Name",
    "role": "Role",
    "namespace": "Namespaces",
    "namespaces": "Namespaces",
    "expires_in": "Expires in",
    "expires_in_days": "Expires in",
}


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "active" if key.usable_at(now) else "expired"


async def _page(
    request: Request, found: Visit, *, values: dict[str, str] | None = None,
    status: int = 200, error: str | None = None, created: tuple[ApiKey, str] | None = None,
) -> Response:
    keys = await service(request).keys(found.key)
    now = datetime.now(UTC)
    return page(
        request, "keys.html", found, status=status,
        keys=[(key, _state(key, now)) for key in keys], roles=ROLES, error=error,
        values=values or {**dict.fromkeys(FIELDS, ""), "role": "viewer"},
        created=created,
    )


async def keys_page(request: Request) -> Response:
    return await _page(request, await visit(request))


def _namespaces(text: str, every: bool) -> list[str] | None:
    if every:
        return None
    names = [part.strip() for part in text.replace(",", " ").split() if part.strip()]
    if not names:
        raise InvalidArgumentError(
            "namespaces", "name one or more, separated by commas, or tick All namespaces"
        )
    return names


def _expiry(text: str) -> timedelta | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgumentError(
            "expires_in_days", f"{text[:20]!r}: a whole number of days, 1 or more; leave it "
            "empty for a key that never expires"
        )
    return timedelta(days=int(text))


async def create(request: Request) -> Response:
    found, form = await posted(request)
    values = {name: (form.get(name) or "").strip() for name in FIELDS}
    every = form.get("all_namespaces") == "yes"
    reads = form.get("reads_payloads") == "yes"
    try:
        made = await service(request).create_key(
            found.key,
            values["name"],
            Role.parse(values["role"]),
            _namespaces(values["namespaces"], every),
            reads_payloads=reads,
            expires_in=_expiry(values["expires_in_days"]),
        )
    except InvalidArgumentError as error:
        label = LABELS.get(error.field, error.field)
        message = str(error).removeprefix(f"invalid {error.field}: ")
        return await _page(request, found, values=values, status=422, error=f"{label}: {message}")
    except ApiKeyConflictError as error:
        return await _page(request, found, values=values, status=409, error=f"Name: {error}")
    return await _page(request, found, status=201, created=made)


async def revoke(request: Request) -> Response:
    found, form = await posted(request)
    name = request.path_params["name"]
    back = f"{request.scope.get('root_path') or ''}/keys"
    asked = unconfirmed(
        request, found, form,
        f"Revoke the key {name}? Its next request is refused, and its dashboard sessions end.",
        back=back,
    )
    if asked is not None:
        return asked
    revoked = await service(request).revoke_key(found.key, name)
    return done(request, back, f"Revoked the key {revoked.name} (prefix {revoked.prefix}).")
