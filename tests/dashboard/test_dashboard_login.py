"""Signing in and out of the dashboard, its session cookie, and CSRF: over real sockets, on the
real server and database."""

from __future__ import annotations

import json
import logging

import asyncpg
import httpx
import pytest

from taskq.store import keys as key_store
from taskq.worker.logs import JsonFormatter
from tests.api.conftest import running_api
from tests.conftest import MakeQueue
from tests.dashboard.conftest import SESSION_SECRET, MakeKey, csrf_of, sign_in


def _cookie_header(response: httpx.Response) -> str:
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session = [c for c in cookies if c.startswith("taskq_session=")]
    assert len(session) == 1, cookies
    return session[0]


async def test_the_login_page_sets_a_strict_http_only_cookie_and_no_third_party_anything(
    web: httpx.AsyncClient,
) -> None:
    response = await web.get("/dashboard/login")

    assert response.status_code == 200
    assert '<label for="key">API key</label>' in response.text
    cookie = _cookie_header(response).lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/dashboard" in cookie
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "http" not in response.text.replace(web.base_url.host, "")  # nothing fetched elsewhere


async def test_signing_in_with_a_key_opens_the_overview(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    secret = await make_key("viewer", [queue.namespace])

    await sign_in(web, secret)
    page = await web.get("/dashboard/")

    assert page.status_code == 200
    assert queue.full_name in page.text
    assert secret not in page.text
    assert secret.split("_")[2] not in (web.cookies.get("taskq_session") or "")


async def test_a_page_without_a_session_goes_to_the_login_page_and_back(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    response = await web.get(f"/dashboard/queues/{queue.full_name}")

    assert response.status_code == 303
    assert response.headers["location"] == (
        f"/dashboard/login?next=/dashboard/queues/{queue.full_name}"
    )
    form = await web.get(response.headers["location"])
    signed = await web.post("/dashboard/login", data={
        "csrf": csrf_of(form.text), "key": await make_key("viewer", None),
        "next": f"/dashboard/queues/{queue.full_name}",
    })
    assert signed.headers["location"] == f"/dashboard/queues/{queue.full_name}"


async def test_sign_in_never_sends_the_browser_to_another_site(
    web: httpx.AsyncClient, make_key: MakeKey
) -> None:
    for elsewhere in ("https://evil.example/", "//evil.example/", "/v1/queues", "/dashboard\\x"):
        web.cookies.clear()
        form = await web.get("/dashboard/login")
        signed = await web.post("/dashboard/login", data={
            "csrf": csrf_of(form.text), "key": await make_key("viewer", None), "next": elsewhere,
        })
        assert signed.headers["location"] == "/dashboard/", elsewhere


async def test_a_wrong_key_is_refused_naming_the_field_and_the_fix(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool
) -> None:
    form = await web.get("/dashboard/login")
    csrf = csrf_of(form.text)

    malformed = await web.post("/dashboard/login", data={"csrf": csrf, "key": "hunter2"})
    secret = await make_key("viewer", None)
    unknown = await web.post(
        "/dashboard/login", data={"csrf": csrf, "key": secret[:-4] + "AAAA"}
    )

    assert malformed.status_code == 422
    assert "API key: not a taskq key: paste the whole key" in malformed.text
    assert unknown.status_code == 401
    assert "API key: not valid: unknown, expired or revoked" in unknown.text
    assert "taskq_session=" in unknown.headers.get("set-cookie", "")  # still the anonymous one
    assert (await web.get("/dashboard/")).status_code == 303


async def test_a_login_post_without_the_forms_token_is_refused(
    web: httpx.AsyncClient, make_key: MakeKey
) -> None:
    secret = await make_key("admin", None)
    no_session = await web.post("/dashboard/login", data={"csrf": "x", "key": secret})
    await web.get("/dashboard/login")
    forged = await web.post("/dashboard/login", data={"csrf": "forged", "key": secret})

    for refused in (no_session, forged):
        assert refused.status_code == 403
        assert "This form is from an earlier session" in refused.text
    assert (await web.get("/dashboard/")).status_code == 303


async def test_signing_in_gives_a_new_csrf_token(
    web: httpx.AsyncClient, make_key: MakeKey
) -> None:
    before = csrf_of((await web.get("/dashboard/login")).text)
    after = await sign_in(web, await make_key("viewer", None))
    assert before != after


async def test_a_tampered_cookie_is_no_session(
    web: httpx.AsyncClient, make_key: MakeKey, dashboard_url: str
) -> None:
    await sign_in(web, await make_key("viewer", None))
    cookie = web.cookies["taskq_session"]
    web.cookies.clear()
    body, _dot, signature = cookie.rpartition(".")
    web.cookies.set("taskq_session", body + "." + signature[::-1], domain="127.0.0.1",
                    path="/dashboard")
    assert (await web.get("/dashboard/")).status_code == 303


async def test_revoking_the_key_ends_its_session_at_the_next_request(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool
) -> None:
    secret = await make_key("operator", None)
    await sign_in(web, secret)
    listed = {k.prefix: k.name for k in await key_store.list_keys(pool)}

    await key_store.revoke_key(pool, listed[secret.split("_")[1]])
    response = await web.get("/dashboard/")

    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/login")
    assert 'taskq_session=""' in response.headers["set-cookie"]
    login = await web.get(response.headers["location"])
    assert "Your session ended: the key is expired or revoked" in login.text


async def test_an_expired_key_ends_its_session(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool
) -> None:
    secret = await make_key("viewer", None)
    await sign_in(web, secret)
    await pool.execute(
        "UPDATE taskq.api_keys SET created_at = now() - interval '1 hour', "
        "expires_at = now() - interval '1 second' WHERE prefix = $1",
        secret.split("_")[1],
    )
    assert (await web.get("/dashboard/")).status_code == 303


async def test_sign_out_needs_the_token_and_clears_the_cookie(
    web: httpx.AsyncClient, make_key: MakeKey
) -> None:
    csrf = await sign_in(web, await make_key("viewer", None))

    forged = await web.post("/dashboard/logout", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert (await web.get("/dashboard/")).status_code == 200

    out = await web.post("/dashboard/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/dashboard/login"
    assert (await web.get("/dashboard/")).status_code == 303


async def test_the_session_cookie_is_not_sent_to_the_rest_api(
    web: httpx.AsyncClient, make_key: MakeKey
) -> None:
    await sign_in(web, await make_key("admin", None))
    response = await web.get("/v1/queues")
    assert response.status_code == 401  # a cookie is no API key


async def test_logs_and_metrics_name_the_route_and_the_key_never_its_secret(
    web: httpx.AsyncClient, make_key: MakeKey, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = await make_key("viewer", None)
    with caplog.at_level(logging.INFO, logger="taskq_api.access"):
        await sign_in(web, secret)
        # no such task: the session's database holds tens of thousands, ids from 1
        await web.get("/dashboard/tasks/1000000000000")
    entries = [json.loads(JsonFormatter().format(r)) for r in caplog.records
               if r.name == "taskq_api.access"]

    signed = next(e for e in entries if e["route"] == "/dashboard/login" and e["method"] == "POST")
    task = next(e for e in entries if e["route"] == "/dashboard/tasks/{task_id:int}")
    assert signed["key_prefix"] == task["key_prefix"] == secret.split("_")[1]
    assert task["status"] == 404
    assert secret not in caplog.text
    metrics = (await web.get("/metrics")).text
    assert 'route="/dashboard/login",status="200"' in metrics
    assert 'route="/dashboard/tasks/{task_id:int}",status="404"' in metrics


async def _session_cookie_behind(
    dsn: str, make_key: MakeKey, trusted: list[str], headers: dict[str, str]
) -> tuple[str, str]:
    """The session cookies of the login page and of signing in, through a server that trusts
    the proxies `trusted`, from this process (127.0.0.1) sending `headers`."""
    async with running_api(
        dsn, dashboard=True, session_secret=SESSION_SECRET, forwarded_allow_ips=trusted,
    ) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        form = await http.get("/dashboard/login", headers=headers)
        anonymous = _cookie_header(form)
        # sent by hand: the client's jar keeps a Secure cookie from a plain http:// server
        signed = await http.post(
            "/dashboard/login",
            data={"csrf": csrf_of(form.text), "key": await make_key("viewer", None), "next": ""},
            headers={**headers, "cookie": anonymous.split(";", 1)[0]},
        )
        assert signed.status_code == 303, signed.text
        return anonymous, _cookie_header(signed)


def _secure(cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in cookie.split(";")[1:]]


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_request_came_over_https(
    dsn: str, make_key: MakeKey,
) -> None:
    https = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"}
    # a TLS-terminating Ingress at 127.0.0.1 (this test) that the server trusts
    for cookie in await _session_cookie_behind(dsn, make_key, ["127.0.0.0/8"], https):
        assert _secure(cookie), cookie
    # the same request from an address that is not a trusted proxy: its header is ignored
    for cookie in await _session_cookie_behind(dsn, make_key, ["10.0.0.7"], https):
        assert not _secure(cookie), cookie
    # a trusted proxy that says plain http
    plain = {"x-forwarded-proto": "http"}
    for cookie in await _session_cookie_behind(dsn, make_key, ["127.0.0.1"], plain):
        assert not _secure(cookie), cookie
