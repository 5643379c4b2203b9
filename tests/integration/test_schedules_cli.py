"""`taskq schedules create|list|show|suspend|resume|delete`, run for real as a subprocess
against the test database; bad input names the flag."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_cli import ok, one_line_error, taskq


async def _namespace(dsn: str) -> str:
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    ok(await taskq("queue", "create", f"{namespace}/reports", dsn=dsn))
    return namespace


async def test_a_schedule_life_cycle(dsn: str) -> None:
    namespace = await _namespace(dsn)
    name = f"{namespace}/nightly"
    created = ok(
        await taskq(
            "schedules", "create", name, "--queue", "reports", "--task", "report",
            "--cron", "30 2 * * *", "--time-zone", "Europe/Berlin", "--payload", '{"full": true}',
            "--priority", "80", "--concurrency-policy", "Forbid", dsn=dsn,
        )
    )  # fmt: skip
    shown = json.loads(created.out)
    assert shown["name"] == name
    assert (shown["cron"], shown["time_zone"], shown["priority"]) == (
        "30 2 * * *", "Europe/Berlin", 80
    )
    assert shown["payload"] == {"full": True}
    assert shown["next_run_at"].endswith(("T00:30:00+00:00", "T01:30:00+00:00"))

    listed = ok(await taskq("schedules", "list", "--namespace", namespace, dsn=dsn)).out
    header, row = listed.splitlines()
    assert header.split()[:4] == ["NAME", "QUEUE", "TASK", "SCHEDULE"]
    assert row.startswith(name) and "Europe/Berlin" in row

    assert "suspended" in ok(await taskq("schedules", "suspend", name, dsn=dsn)).out
    assert json.loads(ok(await taskq("schedules", "show", name, dsn=dsn)).out)["suspend"]
    assert "next run" in ok(await taskq("schedules", "resume", name, dsn=dsn)).out
    ok(await taskq("schedules", "delete", name, dsn=dsn))
    one_line_error(await taskq("schedules", "show", name, dsn=dsn), f"no schedule '{name}'")
    one_line_error(await taskq("schedules", "delete", name, dsn=dsn), f"no schedule '{name}'")


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--cron", "* * *"], ("invalid --cron", "'* * *' is not a cron expression")),
        (["--cron", "@hourly", "--time-zone", "Mars/Base"], ("invalid --time-zone", "IANA")),
        (["--cron", "@hourly", "--payload", "{"], ("invalid --payload", "not valid JSON")),
        (["--cron", "@hourly", "--priority", "101"], ("invalid --priority", "100")),
        (
            ["--cron", "@hourly", "--concurrency-policy", "Never"],
            ("invalid --concurrency-policy", "'Allow', 'Forbid' or 'Replace'"),
        ),
        (["--cron", "@hourly", "--max-missed-runs", "-1"], ("invalid --max-missed-runs",)),
    ],
)
async def test_bad_input_names_the_flag(
    dsn: str, flags: list[str], fragments: tuple[str, ...]
) -> None:
    namespace = await _namespace(dsn)
    run = await taskq(
        "schedules", "create", f"{namespace}/bad", "--queue", "reports", "--task", "t", *flags,
        dsn=dsn,
    )  # fmt: skip
    one_line_error(run, *fragments)
    listed = ok(await taskq("schedules", "list", "--namespace", namespace, dsn=dsn)).out
    assert len(listed.splitlines()) == 1  # the header: nothing was created
