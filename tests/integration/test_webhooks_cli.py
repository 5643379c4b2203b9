"""`taskq webhooks create|list|show|delete`, run for real as a subprocess against the test
database; the secret is printed by create alone; bad input names the flag."""

from __future__ import annotations

import json
import time
import uuid

from standardwebhooks.webhooks import Webhook

from taskq.webhooks import signed_headers
from tests.integration.test_cli import ok, one_line_error, taskq


async def test_a_webhook_life_cycle(dsn: str) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}/orders"
    created = json.loads(
        ok(
            await taskq(
                "webhooks", "create", queue, "billing", "--url", "https://example.com/h",
                "--events", "Succeeded,dead", dsn=dsn,
            )
        ).out
    )  # fmt: skip
    assert created["events"] == ["Succeeded", "Dead"]
    secret = created["secret"]
    body = b'{"a":1}'
    Webhook(secret).verify(body, signed_headers(secret, "msg_1", int(time.time()), body))

    ok(await taskq("webhooks", "create", queue, "cb", "--callbacks",
                   "--allow-hosts", "127.0.0.1", dsn=dsn))  # fmt: skip
    header, *rows = ok(await taskq("webhooks", "list", queue, dsn=dsn)).out.splitlines()
    assert header.split() == ["QUEUE", "NAME", "URL", "EVENTS"]
    assert [row.split()[1] for row in rows] == ["billing", "cb"]
    shown = json.loads(ok(await taskq("webhooks", "show", queue, "cb", dsn=dsn)).out)
    assert shown["callbacks"] and shown["allow_hosts"] == ["127.0.0.1"]
    assert "secret" not in shown and secret not in ok(await taskq("webhooks", "list", dsn=dsn)).out

    ok(await taskq("webhooks", "delete", queue, "billing", dsn=dsn))
    one_line_error(await taskq("webhooks", "show", queue, "billing", dsn=dsn), "no webhook")


async def test_bad_input_names_the_flag(dsn: str) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}/orders"
    for argv, named in (
        (["--url", "http://example.com/h"], "invalid --url"),
        (["--url", "https://example.com/h", "--events", "Failed"], "invalid --events"),
        (["--url", "https://example.com/h", "--secret", "hunter2"], "invalid --secret"),
        ([], "invalid --url"),
    ):
        one_line_error(await taskq("webhooks", "create", queue, "h", *argv, dsn=dsn), named)
