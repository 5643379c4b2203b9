"""The worker pod contract: WorkerSettings read from TASKQ_* environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskq.worker.settings import WorkerSettings, env_name, new_worker_id


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for setting in WorkerSettings.model_fields:
        monkeypatch.delenv(env_name(setting), raising=False)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://u:secret@127.0.0.1:5432/db")
    monkeypatch.setenv("TASKQ_QUEUES", "default/emails")
    monkeypatch.setenv("TASKQ_APP", "myapp.tasks")
    return monkeypatch


def test_reads_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKQ_CONCURRENCY", "32")
    env.setenv("TASKQ_LISTEN", "false")
    env.setenv("TASKQ_METRICS_PORT", "0")
    env.setenv("TASKQ_POD_UID", "pod-1")
    settings = WorkerSettings()
    assert settings.dsn.get_secret_value() == "postgresql://u:secret@127.0.0.1:5432/db"
    assert "secret" not in repr(settings)
    assert settings.queues == ["default/emails"]
    assert settings.app == "myapp.tasks"
    assert (settings.concurrency, settings.listen, settings.metrics_port) == (32, False, 0)
    assert settings.pod_uid == "pod-1"
    assert settings.heartbeat_interval == pytest.approx(settings.lease_seconds / 3)


def test_queues_are_split_on_commas_and_trimmed(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKQ_QUEUES", " default/emails, billing/invoices ,,ops/x ")
    settings = WorkerSettings()
    assert settings.queues == ["default/emails", "billing/invoices", "ops/x"]


def _error_text(error: ValidationError) -> str:
    return "; ".join(f"{item['loc']}: {item['msg']}" for item in error.errors())


def test_missing_dsn_names_the_field(env: pytest.MonkeyPatch) -> None:
    env.delenv("TASKQ_DSN")
    with pytest.raises(ValidationError) as raised:
        WorkerSettings()
    assert [item["loc"] for item in raised.value.errors()] == [("dsn",)]
    assert raised.value.errors()[0]["type"] == "missing"


@pytest.mark.parametrize(
    ("queues", "says"),
    [
        ("Default/emails", "queue namespace"),
        ("emails", "NAMESPACE/NAME"),
        ("default/emails,default/emails", "listed twice"),
        (" , ", "at least one queue"),
    ],
)
def test_invalid_queues(env: pytest.MonkeyPatch, queues: str, says: str) -> None:
    env.setenv("TASKQ_QUEUES", queues)
    with pytest.raises(ValidationError) as raised:
        WorkerSettings()
    assert raised.value.errors()[0]["loc"] == ("queues",)
    assert says in _error_text(raised.value)


def test_poll_interval_must_be_shorter_than_the_lease(env: pytest.MonkeyPatch) -> None:
    env.setenv("TASKQ_LEASE_SECONDS", "5")
    env.setenv("TASKQ_POLL_INTERVAL", "5")
    with pytest.raises(ValidationError, match="poll_interval must be shorter than lease_seconds"):
        WorkerSettings()
    env.setenv("TASKQ_POLL_INTERVAL", "4.9")
    assert WorkerSettings().poll_interval == 4.9


def test_transaction_pooling_needs_listen_off(env: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().db_pool_mode == "session"
    env.setenv("TASKQ_DB_POOL_MODE", "transaction")
    with pytest.raises(ValidationError) as raised:
        WorkerSettings()
    assert "set TASKQ_LISTEN=false" in _error_text(raised.value)
    assert "TASKQ_DB_POOL_MODE=transaction" in _error_text(raised.value)
    env.setenv("TASKQ_LISTEN", "false")
    assert WorkerSettings().db_pool_mode == "transaction"


@pytest.mark.parametrize(
    ("name", "value"),
    [("CONCURRENCY", "0"), ("CONCURRENCY", "many"), ("BATCH_SIZE", "5001"),
     ("LEASE_SECONDS", "0.5"), ("METRICS_PORT", "70000"), ("LOG_LEVEL", "TRACE"),
     ("DB_POOL_MODE", "statement")],
)
def test_out_of_range_values_are_refused(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(f"TASKQ_{name}", value)
    with pytest.raises(ValidationError) as raised:
        WorkerSettings()
    assert raised.value.errors()[0]["loc"] == (name.lower(),)


def test_keyword_arguments_override_the_environment(env: pytest.MonkeyPatch) -> None:
    settings = WorkerSettings(queues=["a/b"], concurrency=3)
    assert (settings.queues, settings.concurrency) == (["a/b"], 3)


def test_worker_ids_are_unique_per_process_and_name_the_pod() -> None:
    first, second = new_worker_id("pod-uid"), new_worker_id("pod-uid")
    assert first != second
    assert first.startswith("pod-uid:")
    assert first.split(":")[1].isdigit()
    assert new_worker_id(None).count(":") == 2
