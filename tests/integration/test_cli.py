"""The `taskq` command, run for real as a subprocess against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from taskq.cli.main import EXIT_FAILED, EXIT_USAGE
from taskq.client import Client
from tests.integration.helpers import claim, finish

_TASKQ = Path(sys.executable).with_name("taskq")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()


async def taskq(*args: str, dsn: str | None, stdin: str | None = None,
                env: dict[str, str] | None = None) -> Run:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    if dsn is not None:
        environment["TASKQ_DSN"] = dsn
    environment.update(env or {})
    command = [str(_TASKQ)] if _TASKQ.exists() else [sys.executable, "-m", "taskq.cli.main"]
    process = await asyncio.create_subprocess_exec(
        *command, *args, env=environment,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(
        process.communicate(None if stdin is None else stdin.encode()), 60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def ok(run: Run) -> Run:
    assert run.code == 0, run
    assert "Traceback" not in run.err
    return run


def one_line_error(run: Run, *fragments: str) -> str:
    """A failure reported the taskq way: non-zero exit, one `taskq: error:` line, no trace."""
    assert run.code != 0, run
    assert "Traceback" not in run.err, run.err
    assert len(run.error_lines) == 1, run.err
    (line,) = run.error_lines
    assert line.startswith("taskq: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def _queue_name() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}/jobs"


async def test_migrate_and_queue_life_cycle(dsn: str, tmp_path: Path) -> None:
    queue = _queue_name()
    migrated, creating = await asyncio.gather(taskq("migrate", dsn=dsn), taskq(
        "queue", "create", queue, "--max-attempts", "2", "--concurrency-limit", "4",
        "--backoff", "linear", dsn=dsn))
    assert ok(migrated).out.strip() == "schema is up to date"
    created = json.loads(ok(creating).out)
    assert f"{created['namespace']}/{created['name']}" == queue
    assert created["settings"]["max_attempts"] == 2
    assert created["settings"]["concurrency_limit"] == 4
    assert created["settings"]["backoff"]["kind"] == "linear"
    lines = tmp_path / "tasks.jsonl"
    lines.write_text('{"n": 1}\n\n{"n": 2}\n{"n": 3}\n', encoding="utf-8")
    listed, enqueued, from_file, from_stdin = await asyncio.gather(
        taskq("queue", "list", dsn=dsn),
        taskq("enqueue", queue, "send", '{"to": "a@example.com"}', "--priority", "high",
              "--idempotency-key", "k1", "--correlation-id", "c1", dsn=dsn),
        taskq("enqueue", queue, "bulk", "--jsonl", str(lines), dsn=dsn),
        taskq("enqueue", queue, "bulk", "--jsonl", "-", "--delay", "600", dsn=dsn,
              stdin='[1]\n"two"\n'),
    )
    assert queue in ok(listed).out.splitlines()
    single = json.loads(ok(enqueued).out)
    assert single["created"] is True
    assert ok(from_file).out.strip() == "enqueued 3 tasks (0 already existed)"
    assert ok(from_stdin).out.strip() == "enqueued 2 tasks (0 already existed)"

    again, stats_run, capped_run, show_run = await asyncio.gather(
        taskq("enqueue", queue, "send", "{}", "--idempotency-key", "k1", dsn=dsn),
        taskq("queue", "stats", queue, dsn=dsn),
        taskq("queue", "stats", queue, "--cap", "3", dsn=dsn),
        taskq("tasks", "show", str(single["id"]), dsn=dsn),
    )
    assert json.loads(ok(again).out) == {"id": single["id"], "created": False}
    stats = json.loads(ok(stats_run).out)
    assert (stats["ready"], stats["scheduled"], stats["running"]) == (4, 2, 0)
    assert stats["oldest_ready_age_seconds"] >= 0
    assert stats["capped"] == []
    capped = json.loads(ok(capped_run).out)
    assert (capped["ready"], capped["count_cap"], capped["capped"]) == (3, 3, ["ready"])
    shown = json.loads(ok(show_run).out)
    assert (shown["state"], shown["priority"], shown["payload"]) == (
        "ready", 75, {"to": "a@example.com"})
    assert (shown["correlation_id"], shown["history"]) == ("c1", [])

    assert ok(await taskq("tasks", "cancel", str(single["id"]), dsn=dsn)).out.strip() == \
        f"task {single['id']} canceled"
    # canceling again is harmless
    assert "canceled" in ok(await taskq("tasks", "cancel", str(single["id"]), dsn=dsn)).out

    one_line_error(await taskq("queue", "drop", queue, dsn=dsn), "--yes")
    assert ok(await taskq("queue", "drop", queue, "--yes", dsn=dsn)).out.strip() == \
        f"dropped {queue}"
    assert queue not in ok(await taskq("queue", "list", dsn=dsn)).out.splitlines()
    assert "did not exist" in ok(await taskq("queue", "drop", queue, "--yes", dsn=dsn)).out


async def test_dead_letters_list_and_replay(
    dsn: str, client: Client, pool: asyncpg.Pool
) -> None:
    queue = _queue_name()
    ok(await taskq("queue", "create", queue, "--max-attempts", "1", dsn=dsn))
    info = await client.get_queue(queue)
    ids = [(await client.enqueue(queue, "doomed", {"n": n})).id for n in range(2)]
    for task in await claim(pool, info, limit=2):
        assert await finish(pool, task, "failed",
                            error={"type": "Kaboom", "message": f"task {task.id} failed"}) == "dead"

    listed = ok(await taskq("dead", "list", queue, dsn=dsn)).out.splitlines()
    assert len(listed) == 2
    for line in listed:
        task_id, name, _finished, error = line.split("\t")
        assert int(task_id) in ids
        assert name == "doomed"
        assert error == f"Kaboom: task {task_id} failed"

    refused, replayed = await asyncio.gather(taskq("dead", "replay", queue, dsn=dsn),
                                             taskq("dead", "replay", queue, str(ids[0]), dsn=dsn))
    one_line_error(refused, "--all")
    assert ok(replayed).out.strip() == "replayed 1 dead tasks"
    assert (await client.get_task(ids[0])).state == "ready"
    # naming a task that is not dead (ids[0] is ready again), or no task of the queue, does
    # nothing and says which id
    one_line_error(await taskq("dead", "replay", queue, str(ids[0]), dsn=dsn),
                   f"task {ids[0]} is ready, not dead")
    one_line_error(await taskq("dead", "replay", queue, str(ids[1]), "999999999", dsn=dsn),
                   f"no task 999999999 in queue {queue}")
    assert (await client.get_task(ids[1])).state == "dead"  # all or nothing
    one_line_error(await taskq("tasks", "cancel", str(ids[1]), dsn=dsn),
                   f"task {ids[1]} already finished (dead); nothing to cancel")
    assert "replayed 1 dead tasks" in ok(await taskq("dead", "replay", queue, "--all",
                                                     dsn=dsn)).out
    listed_after, show_run = await asyncio.gather(
        taskq("dead", "list", queue, dsn=dsn), taskq("tasks", "show", str(ids[1]), dsn=dsn))
    assert ok(listed_after).out == ""
    shown = json.loads(ok(show_run).out)
    assert [h["outcome"] for h in shown["history"]] == ["failed"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_errors_are_one_line_without_a_traceback(
    dsn: str, client: Client, tmp_path: Path
) -> None:
    small = _queue_name()
    ok(await taskq("queue", "create", small, "--payload-limit", "100", dsn=dsn))
    unreachable = f"postgresql://postgres@127.0.0.1:{_closed_port()}/taskq"
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"ok": 1}\nnot json\n', encoding="utf-8")
    runs = await asyncio.gather(
        taskq("enqueue", "nobody/here", "t", dsn=dsn),
        taskq("enqueue", "Bad_Name/q", "t", dsn=dsn),
        taskq("enqueue", small, "t", json.dumps({"blob": "x" * 500}), dsn=dsn),
        taskq("enqueue", small, "t", "{not json", dsn=dsn),
        taskq("queue", "list", dsn=unreachable),
        taskq("queue", "list", dsn=None),
        taskq("worker", dsn=dsn, env={"TASKQ_QUEUES": small, "TASKQ_APP": "x",
                                      "TASKQ_CONCURRENCY": "lots"}),
        taskq("tasks", "show", "987654321", dsn=dsn),
        taskq("enqueue", small, "t", "--priority", "highest", dsn=dsn),
        taskq("queue", "create", _queue_name(), "--backoff-base", "10", "--backoff-max", "1",
              dsn=dsn),
        taskq("worker", dsn=None, env={"TASKQ_QUEUES": small, "TASKQ_APP": "x"}),
        taskq("worker", dsn=dsn, env={"TASKQ_QUEUES": small, "TASKQ_APP": "x",
                                      "TASKQ_LEASE_SECONDS": "5", "TASKQ_POLL_INTERVAL": "10"}),
        taskq("worker", dsn=dsn, env={"TASKQ_QUEUES": small, "TASKQ_APP": "no_such_app_module"}),
        taskq("enqueue", small, "t", "--jsonl", str(lines), dsn=dsn),
    )
    (unknown, invalid, oversized, not_json, no_server, no_dsn, bad_concurrency, no_task,
     bad_priority, bad_backoff, worker_no_dsn, poll_vs_lease, no_app, bad_line) = runs
    one_line_error(unknown, "unknown queue 'nobody/here'", "create it first")
    one_line_error(invalid, "invalid queue namespace", "'Bad_Name'")
    one_line_error(oversized, "over the queue's limit of 100 bytes")
    one_line_error(not_json, "invalid payload: not valid JSON")
    one_line_error(no_server, "cannot reach the database")
    one_line_error(no_dsn, "TASKQ_DSN")
    one_line_error(bad_concurrency, "TASKQ_CONCURRENCY")
    one_line_error(no_task, "no task with id 987654321")
    one_line_error(bad_priority, "invalid --priority: 'highest'")
    one_line_error(bad_backoff, "--backoff-max must be at least --backoff-base")
    one_line_error(worker_no_dsn, "TASKQ_DSN", "Field required")
    line = one_line_error(poll_vs_lease, "poll_interval must be shorter than lease_seconds")
    assert "TASKQ_:" not in line
    one_line_error(no_app, "invalid TASKQ_APP", "cannot import 'no_such_app_module'")
    one_line_error(bad_line, f"invalid {lines} line 2: not valid JSON")
    assert (await client.queue_stats(small)).ready == 0


async def test_worker_command_reports_an_unknown_queue(dsn: str, tmp_path: Path) -> None:
    app = tmp_path / "cli_worker_app.py"
    app.write_text("import taskq\n\n@taskq.task('noop')\ndef noop(ctx):\n    return None\n",
                   encoding="utf-8")
    run = await taskq("worker", "--path", str(tmp_path), dsn=dsn, env={
        "TASKQ_QUEUES": "nobody/here", "TASKQ_APP": "cli_worker_app", "TASKQ_METRICS_PORT": "0"})
    one_line_error(run, "unknown queue 'nobody/here'")


async def test_usage_errors_exit_2(dsn: str) -> None:
    runs = await asyncio.gather(*(taskq(*argv, dsn=dsn) for argv in (
        ["queue"], ["enqueue"], ["no-such-command"])))
    for run in runs:
        assert run.code == 2
        assert "Traceback" not in run.err
        assert "usage: taskq" in run.err


async def test_ids_and_limits_are_checked_naming_the_argument(dsn: str) -> None:
    """Not "query argument $1" or "LIMIT must not be negative" from the database."""
    for argv, named in (
        (["tasks", "show", "99999999999999999999"], "argument id: '99999999999999999999'"),
        (["tasks", "cancel", "-3"], "argument id: '-3'"),
        (["dead", "list", "ns/q", "--limit", "-1"], "argument --limit: '-1': give 1..10000"),
        (["dead", "replay", "ns/q", "x"], "argument ids: 'x'"),
    ):
        run = await taskq(*argv, dsn=dsn)
        assert run.code == 2, run
        assert named in run.err and "Traceback" not in run.err, run.err


async def test_a_numeric_priority_is_a_priority(dsn: str, client: Client) -> None:
    """`--priority 80` as the help says (0..100 or a level name), and out of range refused."""
    queue = _queue_name()
    ok(await taskq("queue", "create", queue, dsn=dsn))
    enqueued = json.loads(ok(await taskq("enqueue", queue, "t", "--priority", "80", dsn=dsn)).out)
    assert (await client.get_task(enqueued["id"])).priority == 80
    one_line_error(await taskq("enqueue", queue, "t", "--priority", "101", dsn=dsn),
                   "priority", "0..100")


async def test_durations_past_their_bounds_are_refused_naming_the_flag(dsn: str) -> None:
    """A retention of 10^12 s was accepted, then broke every maintenance pass; a delay of
    1e300 s failed in the database naming nothing."""
    queue = _queue_name()
    refused = await taskq("queue", "create", queue, "--retention-succeeded", "1000000000000",
                          dsn=dsn)
    one_line_error(refused, "--retention-succeeded: ", "315360000")
    ok(await taskq("queue", "create", queue, dsn=dsn))
    one_line_error(await taskq("enqueue", queue, "t", "--delay", "1e300", dsn=dsn),
                   "delay", "315360000")


async def test_help_states_the_exit_statuses_and_errors_follow_them(
    dsn: str, client: Client
) -> None:
    """One convention, in `taskq --help`: 2 for a command line that is wrong (whoever finds it:
    argparse, the CLI, pydantic, the client or the database), 1 for a well-formed command that
    could not be done. Queue settings out of range used to exit 2 and a priority out of range 1."""
    shown = ok(await taskq("--help", dsn=None)).out
    assert "exit status:" in shown
    for line in ("0    done", f"{EXIT_FAILED}    not done:",
                 f"{EXIT_USAGE}    the command line is wrong, nothing was done"):
        assert line in shown, shown
    queue = _queue_name()
    ok(await taskq("queue", "create", queue, dsn=dsn))
    ready = json.loads(ok(await taskq("enqueue", queue, "t", dsn=dsn)).out)["id"]
    unreachable = f"postgresql://postgres@127.0.0.1:{_closed_port()}/taskq"
    worker_env = {"TASKQ_QUEUES": queue, "TASKQ_APP": "x", "TASKQ_CONCURRENCY": "lots"}
    cases: list[tuple[list[str], str | None, dict[str, str], int, str]] = [
        (["enqueue", queue, "t", "--no-such-flag"], dsn, {}, EXIT_USAGE, "unrecognized"),
        (["queue", "create", _queue_name(), "--retention-succeeded", "1000000000000"], dsn, {},
         EXIT_USAGE, "--retention-succeeded: "),
        (["queue", "create", _queue_name(), "--backoff-base", "10", "--backoff-max", "1"], dsn,
         {}, EXIT_USAGE, "--backoff-max must be at least --backoff-base"),
        (["enqueue", queue, "t", "--priority", "101"], dsn, {}, EXIT_USAGE, "--priority: 101"),
        (["enqueue", queue, "t", "--timeout", "0"], dsn, {}, EXIT_USAGE, "--timeout: "),
        (["enqueue", queue, "t", "{bad"], dsn, {}, EXIT_USAGE, "invalid payload"),
        (["queue", "drop", queue], dsn, {}, EXIT_USAGE, "--yes"),
        (["dead", "replay", queue], dsn, {}, EXIT_USAGE, "--all"),
        (["queue", "list"], None, {}, EXIT_USAGE, "TASKQ_DSN"),
        (["worker"], dsn, worker_env, EXIT_USAGE, "TASKQ_CONCURRENCY"),
        (["enqueue", "nobody/here", "t"], dsn, {}, EXIT_FAILED, "unknown queue"),
        (["tasks", "show", "987654321"], dsn, {}, EXIT_FAILED, "no task with id 987654321"),
        (["queue", "list"], unreachable, {}, EXIT_FAILED, "cannot reach the database"),
        (["dead", "replay", queue, str(ready)], dsn, {}, EXIT_FAILED, "is ready, not dead"),
    ]
    runs = await asyncio.gather(*(taskq(*argv, dsn=where, env=env)
                                  for argv, where, env, _, _ in cases))
    for (argv, _, _, code, says), run in zip(cases, runs, strict=True):
        assert run.code == code, (argv, run)
        assert says in run.err and "Traceback" not in run.err, (argv, run.err)
    assert (await client.queue_stats(queue)).ready == 1  # no refused enqueue wrote a task


async def test_callback_urls_and_correlation_ids_reach_every_task(
    dsn: str, client: Client, tmp_path: Path,
) -> None:
    """--callback-url for one task or each line of --jsonl (with --correlation-id, which
    --jsonl used to drop); a key cannot hold many tasks, so --jsonl refuses one."""
    queue = _queue_name()
    ok(await taskq("queue", "create", queue, dsn=dsn))
    url = "https://hooks.example/done"
    one = json.loads(ok(await taskq("enqueue", queue, "t", "--callback-url", url, dsn=dsn)).out)
    lines = tmp_path / "tasks.jsonl"
    lines.write_text('{"n": 1}\n{"n": 2}\n')
    ok(await taskq("enqueue", queue, "t", "--jsonl", str(lines), "--callback-url", url,
                   "--correlation-id", "order-7", dsn=dsn))
    rows = await client.pool.fetch(
        "SELECT t.id, t.callback_url, t.correlation_id FROM taskq.tasks t "
        "JOIN taskq.queues q ON q.id = t.queue_id WHERE q.namespace || '/' || q.name = $1 "
        "ORDER BY t.id", queue)
    assert [(r["callback_url"], r["correlation_id"]) for r in rows] == [
        (url, None), (url, "order-7"), (url, "order-7")]
    assert rows[0]["id"] == one["id"]
    shown = json.loads(ok(await taskq("tasks", "show", str(one["id"]), dsn=dsn)).out)
    assert shown["callback_url"] == url
    one_line_error(await taskq("enqueue", queue, "t", "--callback-url", "ftp://x", dsn=dsn),
                   "--callback-url")
    refused = await taskq("enqueue", queue, "t", "--jsonl", str(lines), "--idempotency-key",
                          "k", dsn=dsn)
    one_line_error(refused, "--idempotency-key", "--jsonl")
    assert refused.code == 2
