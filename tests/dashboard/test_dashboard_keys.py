"""Keys, for admin keys: list, create (the secret shown once), revoke; a key makes and sees no
key reaching further than itself. Over real sockets, on the real server and database."""

from __future__ import annotations

import html
import re

import asyncpg
import httpx

from taskq.auth import Role
from taskq.store import keys as key_store
from tests.dashboard.conftest import MakeKey, sign_in


async def test_an_admin_makes_a_key_sees_its_secret_once_and_revokes_it(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool, dashboard_url: str,
) -> None:
    csrf = await sign_in(web, await make_key("admin", None))
    assert ">Keys</a>" in (await web.get("/dashboard/")).text

    made = await web.post("/dashboard/keys", data={
        "csrf": csrf, "name": "grafana-dash", "role": "viewer", "namespaces": "shop, billing",
        "expires_in_days": "30", "reads_payloads": "yes",
    })

    assert made.status_code == 201
    secret = re.search(r'class="secret" readonly value="(tq_[^"]+)"', made.text)
    assert secret, made.text
    stored = await key_store.get_key(pool, "grafana-dash")
    assert stored is not None
    assert (stored.role.label, stored.namespaces, stored.reads_payloads) == (
        "viewer", ("billing", "shop"), True)
    assert stored.expires_at is not None
    listed = (await web.get("/dashboard/keys")).text
    assert "grafana-dash" in listed
    assert secret.group(1) not in listed  # shown once
    async with httpx.AsyncClient(base_url=dashboard_url) as api:
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        assert (await api.get("/v1/queues", headers=headers)).status_code == 200

        revoke = "/dashboard/keys/grafana-dash/revoke"
        asked = await web.post(revoke, data={"csrf": csrf})
        assert "Revoke the key grafana-dash?" in asked.text
        revoked = await web.post(revoke, data={"csrf": csrf, "confirmed": "yes"})
        assert revoked.status_code == 303
        assert "Revoked the key grafana-dash" in (await web.get("/dashboard/keys")).text
        assert (await api.get("/v1/queues", headers=headers)).status_code == 401
    again = await web.post(revoke, data={"csrf": csrf, "confirmed": "yes"})
    assert again.status_code == 409
    assert "was already revoked" in html.unescape(again.text)


async def test_bad_input_names_the_field(
    web: httpx.AsyncClient, make_key: MakeKey,
) -> None:
    csrf = await sign_in(web, await make_key("admin", None))
    good = {"csrf": csrf, "name": "ok-name", "role": "viewer", "namespaces": "shop"}

    for change, message in (
        ({"name": "Bad Name"}, "Name: "),
        ({"role": "root"}, "Role: 'root' is not a role: use viewer, operator or admin"),
        ({"namespaces": ""}, "Namespaces: name one or more"),
        ({"namespaces": "Shop!"}, "Namespaces: "),
        ({"expires_in_days": "soon"}, "Expires in: 'soon': a whole number of days"),
    ):
        refused = await web.post("/dashboard/keys", data={**good, **change})
        assert refused.status_code == 422, change
        assert message in html.unescape(refused.text), change


async def test_a_confined_admin_manages_keys_within_its_namespaces_only(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    outside, _secret = await key_store.create_key(pool, "outside-key", Role.VIEWER,
                                                  ["elsewhere"])
    inside, _secret = await key_store.create_key(pool, "inside-key", Role.VIEWER,
                                                 ["shop"])
    csrf = await sign_in(web, await make_key("admin", ["shop"]))

    listed = (await web.get("/dashboard/keys")).text
    wider = await web.post("/dashboard/keys", data={
        "csrf": csrf, "name": "too-wide", "role": "viewer", "all_namespaces": "yes"})
    hidden = await web.post(f"/dashboard/keys/{outside.name}/revoke",
                            data={"csrf": csrf, "confirmed": "yes"})

    assert inside.name in listed
    assert outside.name not in listed
    assert wider.status_code == 403
    assert "a key it makes must name some of those namespaces" in wider.text
    assert hidden.status_code == 404
    assert await key_store.get_key(pool, "too-wide") is None
    still = await key_store.get_key(pool, outside.name)
    assert still is not None
    assert still.revoked_at is None


async def test_an_operator_has_no_keys_page(
    web: httpx.AsyncClient, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    victim, _secret = await key_store.create_key(pool, "victim-key", Role.VIEWER, None)
    csrf = await sign_in(web, await make_key("operator", None))

    assert ">Keys</a>" not in (await web.get("/dashboard/")).text
    assert (await web.get("/dashboard/keys")).status_code == 403
    made = await web.post("/dashboard/keys", data={
        "csrf": csrf, "name": "sneaky", "role": "admin", "all_namespaces": "yes"})
    revoked = await web.post("/dashboard/keys/victim-key/revoke",
                             data={"csrf": csrf, "confirmed": "yes"})
    assert made.status_code == revoked.status_code == 403
    assert "managing keys needs a key of role admin" in made.text
    assert await key_store.get_key(pool, "sneaky") is None
    still = await key_store.get_key(pool, victim.name)
    assert still is not None
    assert still.revoked_at is None
