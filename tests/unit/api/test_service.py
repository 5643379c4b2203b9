"""The service layer's own decisions, without a database: authentication through the KeyStore
port (an in-memory fake of it), and how it renames the store's field names for requests."""

from __future__ import annotations

from typing import cast

import asyncpg
import pytest

from taskq.auth import KeyStore, Role
from taskq.client import Client
from taskq.errors import InvalidArgumentError
from taskq_api.service import ApiService, NotAuthenticatedError
from taskq_api.service.operations import _request_error
from tests.unit.api.fakes import MemoryKeyStore, api_key

# Authentication never touches the client: a pool nothing may use.
_NO_DATABASE = Client(cast(asyncpg.Pool, None))


def _service(store: KeyStore) -> ApiService:
    return ApiService(_NO_DATABASE, store)


async def test_no_key_is_not_authenticated_and_the_store_is_not_asked() -> None:
    store = MemoryKeyStore({})
    for secret in (None, ""):
        with pytest.raises(NotAuthenticatedError) as raised:
            await _service(store).authenticate(secret)
        assert raised.value.key_presented is False
        assert "Authorization: Bearer" in str(raised.value)
    assert store.asked == []


async def test_a_key_the_store_does_not_know_is_not_authenticated() -> None:
    store = MemoryKeyStore({})
    with pytest.raises(NotAuthenticatedError) as raised:
        await _service(store).authenticate("tq_abcd1234_nope")
    assert raised.value.key_presented is True
    assert "tq_abcd1234_nope" not in str(raised.value)  # a secret is never echoed
    assert store.asked == ["tq_abcd1234_nope"]


async def test_a_known_key_is_the_stores_key() -> None:
    key = api_key(Role.VIEWER)
    assert await _service(MemoryKeyStore({"s": key})).authenticate("s") is key


@pytest.mark.parametrize(("field", "single", "batch"), [
    ("tasks[0].priority", "priority", "tasks[0].priority"),
    ("tasks[12].delay", "delay_seconds", "tasks[12].delay_seconds"),
    ("tasks[3].timeout", "timeout_seconds", "tasks[3].timeout_seconds"),
    ("arguments", "arguments", "arguments"),
])
def test_store_fields_are_renamed_as_the_request_names_them(
    field: str, single: str, batch: str
) -> None:
    error = InvalidArgumentError(field, "must be fixed")
    for renamed, expected in ((_request_error(error, single=True), single),
                              (_request_error(error, single=False), batch)):
        assert renamed.field == expected
        assert str(renamed) == f"invalid {expected}: must be fixed"
