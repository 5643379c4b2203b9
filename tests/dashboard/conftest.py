"""The dashboard, served by the real API server (`taskq api --dashboard`) on 127.0.0.1 over
the session's PostgreSQL, and spoken to over real sockets: with httpx (tests/dashboard/
test_*.py) and with Debian's chromium driven by Playwright (test_browser.py).

- ``dashboard_url`` (session): the server's base URL; the dashboard is at /dashboard/.
- ``web`` (function): an httpx.AsyncClient on it, with a cookie jar and no redirects followed.
- ``make_key``: as in tests/api (a real key in the database).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import MakeKey, make_key, running_api

__all__ = ["MakeKey", "make_key"]

SESSION_SECRET = "a-test-session-secret-of-at-least-32-chars"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
async def dashboard_url(dsn: str) -> AsyncIterator[str]:
    # every request reads its key: a revoked key is refused at once, not within a second
    async with running_api(
        dsn, dashboard=True, session_secret=SESSION_SECRET, key_cache_seconds=0
    ) as running:
        yield running.url


@pytest.fixture
async def web(dashboard_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dashboard_url, timeout=30) as client:
        yield client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


async def sign_in(web: httpx.AsyncClient, secret: str) -> str:
    """Sign in as a browser does (the login form, then its post); returns the session's CSRF
    token, which every page's forms carry."""
    form = await web.get("/dashboard/login")
    assert form.status_code == 200, form.text
    response = await web.post(
        "/dashboard/login", data={"csrf": csrf_of(form.text), "key": secret, "next": ""}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard/"
    page = await web.get("/dashboard/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def server_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """The (event, data) pairs of a text/event-stream response, as EventSource reads them."""
    name, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") or line == "data:":
            data.append(line.removeprefix("data:").removeprefix(" "))
