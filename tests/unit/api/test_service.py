"""The service layer's own decisions, without a database: authentication through the KeyStore
port (an in-memory fake of it), how it renames the store's field names for requests, and the
rules it checks before any query, for every protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest

from taskq.auth import KeyStore, Role
from taskq.client import Client
from taskq.errors import InvalidArgumentError
from taskq.models import TaskInfo, TaskRequest
from taskq_api.service import ApiService, NotAuthenticatedError, delay_until
from taskq_api.service.operations import _request_error
from taskq_api.service.submissions import check_correlation_ids
from taskq_api.service.waiting import changed
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


@pytest.mark.parametrize(("ids", "every", "field"), [
    ([], False, "ids"),
    ([1], True, "ids"),
    ([5, 0], False, "ids[1]"),
    ([1, -3], False, "ids[1]"),
    ([1] * 10_001, False, "ids"),
])
async def test_a_replay_names_ids_or_all(ids: list[int], every: bool, field: str) -> None:
    key = api_key(Role.OPERATOR)
    with pytest.raises(InvalidArgumentError) as raised:
        await _service(MemoryKeyStore({})).replay_dead(key, "shop", "emails", ids, every=every)
    assert raised.value.field == field


def test_a_start_time_becomes_a_delay_and_a_past_one_none() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert delay_until(now + timedelta(minutes=5), now) == timedelta(minutes=5)
    assert delay_until(now - timedelta(days=1), now) == timedelta(0)


@pytest.mark.parametrize("correlation_id", ["", "c" * 256])
def test_correlation_ids_are_1_to_255_characters(correlation_id: str) -> None:
    tasks = [TaskRequest("t"), TaskRequest("t", correlation_id=correlation_id)]
    with pytest.raises(InvalidArgumentError) as raised:
        check_correlation_ids(tasks)
    assert raised.value.field == "tasks[1].correlation_id"
    check_correlation_ids([TaskRequest("t", correlation_id="c" * 255)])


def _task(**fields: Any) -> TaskInfo:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": 1, "queue": "shop/emails", "task_name": "t", "state": "running", "priority": 50,
        "payload": None, "run_at": now, "idempotency_key": None, "correlation_id": None,
        "attempts": 1, "total_attempts": 1, "max_attempts": 3, "worker_id": "w",
        "attempt_id": "a", "lease_expires_at": now, "cancel_requested": False, "result": None,
        "error": None, "progress": None, "created_at": now, "started_at": now,
        "finished_at": None,
    }
    return TaskInfo(**{**values, **fields})


@pytest.mark.parametrize(("after", "news"), [
    ({"lease_expires_at": datetime(2030, 1, 1, 0, 1, tzinfo=UTC)}, False),
    ({"state": "succeeded"}, True),
    ({"attempts": 2}, True),
    ({"cancel_requested": True}, True),
    ({"progress": {"done": 3}}, True),
])
def test_a_watcher_is_told_of_changes_but_not_lease_renewals(
    after: dict[str, Any], news: bool
) -> None:
    assert changed(_task(), _task(**after)) is news
