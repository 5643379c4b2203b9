"""The API server's settings (TASKQ_API_* and flags) and `taskq api` without the package."""

from __future__ import annotations

import sys

import pytest
from fastapi import FastAPI

from taskq.cli.main import main as taskq_main
from taskq_api.server.main import settings_from
from taskq_api.server.process import uvicorn_config


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKQ_DSN", "TASKQ_API_DSN", "TASKQ_API_PORT", "TASKQ_API_CORS_ORIGINS",
                 "TASKQ_API_DASHBOARD", "TASKQ_API_SESSION_SECRET",
                 "TASKQ_API_FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_bind_localhost_with_cors_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean(monkeypatch)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://db/app")
    settings = settings_from([])
    assert (settings.host, settings.port, settings.cors_origins) == ("127.0.0.1", 8000, [])
    assert settings.dsn.get_secret_value() == "postgresql://db/app"


def test_the_api_dsn_wins_over_the_shared_one_and_flags_over_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clean(monkeypatch)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://shared/app")
    monkeypatch.setenv("TASKQ_API_DSN", "postgresql://api/app")
    monkeypatch.setenv("TASKQ_API_PORT", "9000")
    monkeypatch.setenv("TASKQ_API_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = settings_from(["--port", "9001", "--cors-origin", "https://c.example"])
    assert settings.dsn.get_secret_value() == "postgresql://api/app"
    assert settings.port == 9001
    assert settings.cors_origins == ["https://c.example"]
    from_env = settings_from([])
    assert (from_env.port, from_env.cors_origins) == (9000, ["https://a.example",
                                                           "https://b.example"])
    assert settings_from(["--dsn", "postgresql://flag/app"]).dsn.get_secret_value() == (
        "postgresql://flag/app")


def test_the_trusted_proxies_are_addresses_or_networks_from_the_variable_or_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _clean(monkeypatch)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://db/app")
    assert settings_from([]).forwarded_allow_ips == ["127.0.0.1", "::1"]  # uvicorn's default
    monkeypatch.setenv("TASKQ_API_FORWARDED_ALLOW_IPS", "10.244.0.0/16, fd00::7")
    assert settings_from([]).forwarded_allow_ips == ["10.244.0.0/16", "fd00::7"]
    assert settings_from(["--forwarded-allow-ips", "*"]).forwarded_allow_ips == ["*"]
    config = uvicorn_config(settings_from(["--forwarded-allow-ips", "10.0.0.7"]), FastAPI())
    assert (config.proxy_headers, config.forwarded_allow_ips) == (True, ["10.0.0.7"])

    for given, said in (
        ("ingress.local", "'ingress.local' is not an IP address or network: write e.g. "
                          "10.0.0.7, 10.244.0.0/16 or fd00::/8 (a host name is not resolved)"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network"),
        ("*,10.0.0.1", "'*' trusts any address: give it alone, or list the proxies instead"),
    ):
        with pytest.raises(SystemExit):
            settings_from(["--forwarded-allow-ips", given])
        err = capsys.readouterr().err
        assert err.startswith(
            "taskq-api: error: TASKQ_API_FORWARDED_ALLOW_IPS (--forwarded-allow-ips): "), err
        assert said in err, err


def test_invalid_settings_name_the_variable_and_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _clean(monkeypatch)
    with pytest.raises(SystemExit) as raised:
        settings_from(["--port", "0", "--max-body-bytes", "10"])
    assert raised.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "taskq-api: error: TASKQ_API_DSN or TASKQ_DSN (--dsn): required",
        "taskq-api: error: TASKQ_API_PORT (--port): Input should be greater than or equal to 1",
        "taskq-api: error: TASKQ_API_MAX_BODY_BYTES (--max-body-bytes): Input should be "
        "greater than or equal to 1024",
    ]


def test_the_dashboard_is_off_by_default_and_needs_a_session_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _clean(monkeypatch)
    monkeypatch.setenv("TASKQ_DSN", "postgresql://db/app")
    assert settings_from([]).dashboard is False

    with pytest.raises(SystemExit) as missing:
        settings_from(["--dashboard"])
    monkeypatch.setenv("TASKQ_API_DASHBOARD", "true")
    monkeypatch.setenv("TASKQ_API_SESSION_SECRET", "short")
    with pytest.raises(SystemExit) as short:
        settings_from([])

    assert missing.value.code == short.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "taskq-api: error: TASKQ_API_SESSION_SECRET (--session-secret): required when the "
        "dashboard is on (TASKQ_API_DASHBOARD): set it to 32 or more random characters, the "
        "same on every server, e.g. `openssl rand -base64 32`",
        "taskq-api: error: TASKQ_API_SESSION_SECRET (--session-secret): 5 characters: use 32 "
        "or more random characters, e.g. `openssl rand -base64 32`",
    ]
    monkeypatch.setenv("TASKQ_API_SESSION_SECRET", "s" * 32)
    on = settings_from([])
    assert on.dashboard is True
    assert settings_from(["--no-dashboard"]).dashboard is False


def test_taskq_api_without_the_package_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "taskq_api.server.main", None)  # as if not installed
    assert taskq_main(["api", "--port", "8080"]) == 1
    err = capsys.readouterr().err
    assert "needs the taskq-api package" in err
    assert "pip install taskq-api" in err
    assert "Traceback" not in err


def test_other_commands_still_refuse_unknown_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        taskq_main(["queue", "list", "--bogus"])
    assert raised.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
