"""The `taskq` command. Errors print one readable line and exit non-zero, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import NoneType
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from taskq import tracing
from taskq.auth import ApiKey, Role
from taskq.cli.schedules import add_schedule_commands
from taskq.cli.webhooks import add_webhook_commands
from taskq.client import COUNT_CAP, Client, connect
from taskq.errors import InvalidArgumentError, PayloadTooLargeError, TaskqError, TaskStateError
from taskq.models import QueueSettings, TaskRequest, setting_fields
from taskq.names import check_label
from taskq.store import keys as key_store
from taskq.store.pool_mode import PoolMode
from taskq.worker.main import run_worker
from taskq.worker.settings import WorkerSettings
from taskq.worker.stopping import ExitDeadline

# The exit statuses, as `taskq --help` states them (EXIT_STATUS below).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_STATUS = f"""\
exit status:
  0    done
  {EXIT_FAILED}    not done: the database is unreachable or refused the command, or a queue,
       task, key or schedule it names does not exist or is not in a state that
       allows it (e.g. replaying a task that is not dead)
  {EXIT_USAGE}    the command line is wrong, nothing was done: an unknown command or flag, a
       missing argument, a value out of its range or malformed (the message names the
       flag or argument and what it accepts), or a bad TASKQ_* setting
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""


class CliError(Exception):
    """The command could not be done (exit 1)."""


class UsageError(CliError):
    """The command line is wrong: a flag missing, two flags that exclude each other, a value
    the CLI checks itself (exit 2)."""


def _print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, default=str))


def _payload(text: str | None, field: str = "payload") -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(
            field, f"not valid JSON: {error.msg} at position {error.pos}"
        ) from None


def _queue_settings(args: argparse.Namespace) -> QueueSettings:
    return QueueSettings.from_paths({f.path: getattr(args, f.path) for f in setting_fields()})


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One option per queue setting, from QueueSettings: its name, type, default and help."""
    for field in setting_fields():
        option = f"--{field.flag}"
        help_text = field.info.description
        annotation = field.info.annotation
        if annotation is bool:
            # a setting that defaults to true would need a --no- option; none does
            assert field.info.default is False, field.path
            parser.add_argument(option, dest=field.path, action="store_true", help=help_text)
            continue
        choices: tuple[Any, ...] | None = None
        if get_origin(annotation) is Literal:
            kind, choices = str, get_args(annotation)
        else:
            # int | None reads as an int; an omitted option keeps the default (None)
            [kind] = [t for t in get_args(annotation) if t is not NoneType] or [annotation]
        parser.add_argument(
            option,
            dest=field.path,
            type=kind,
            choices=choices,
            default=field.info.default,
            metavar=None if choices else (field.unit or field.flag).replace("-", "_").upper(),
            help=help_text if field.info.default is None else f"{help_text} Default: %(default)s.",
        )


async def _migrate(client: Client, _args: argparse.Namespace) -> None:
    applied = await client.migrate()
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")


async def _queue_create(client: Client, args: argparse.Namespace) -> None:
    info = await client.ensure_queue(args.queue, _queue_settings(args))
    _print_json(info)


async def _queue_drop(client: Client, args: argparse.Namespace) -> None:
    if not args.yes:
        raise UsageError(f"dropping {args.queue} deletes all its tasks: repeat with --yes")
    dropped = await client.drop_queue(args.queue)
    print(f"dropped {args.queue}" if dropped else f"{args.queue} did not exist")


async def _queue_stats(client: Client, args: argparse.Namespace) -> None:
    stats = await client.queue_stats(args.queue, cap=args.cap)
    _print_json(
        {
            **stats.model_dump(mode="json"),
            "oldest_ready_age_seconds": stats.oldest_ready_age_seconds,
        }
    )


async def _queue_list(client: Client, _args: argparse.Namespace) -> None:
    for info in await client.list_queues():
        print(info.full_name)


# The client names a task's fields (tasks[0].delay); `taskq enqueue` takes them as these
# arguments, the same for every task of a --jsonl file.
_TASK_ARGUMENTS = {
    "task_name": "task",
    "payload": "payload",
    "priority": "--priority",
    "delay": "--delay",
    "idempotency_key": "--idempotency-key",
    "max_attempts": "--max-attempts",
    "timeout": "--timeout",
    "correlation_id": "--correlation-id",
    "callback_url": "--callback-url",
}
_TASK_FIELD = re.compile(r"^tasks\[\d+\]\.(\w+)$")


async def _enqueue(client: Client, args: argparse.Namespace) -> None:
    try:
        await _enqueue_tasks(client, args)
    except InvalidArgumentError as error:
        match = _TASK_FIELD.match(error.field)
        if match is None or match[1] not in _TASK_ARGUMENTS:
            raise
        problem = str(error).removeprefix(f"invalid {error.field}: ")
        raise InvalidArgumentError(_TASK_ARGUMENTS[match[1]], problem) from None


async def _enqueue_tasks(client: Client, args: argparse.Namespace) -> None:
    if args.jsonl:
        if args.idempotency_key is not None:
            raise InvalidArgumentError(
                "--idempotency-key",
                "one key holds one task, and --jsonl enqueues one per line: leave it out",
            )
        requests = [
            TaskRequest(
                args.task,
                _payload(line, f"{args.jsonl} line {n}"),
                priority=args.priority,
                delay=args.delay,
                max_attempts=args.max_attempts,
                timeout=args.task_timeout,
                correlation_id=args.correlation_id,
                callback_url=args.callback_url,
            )
            for n, line in enumerate(_read_lines(args.jsonl), start=1)
            if line.strip()
        ]
        results = await client.enqueue_many(args.queue, requests)
        print(
            f"enqueued {sum(r.created for r in results)} tasks "
            f"({len(results) - sum(r.created for r in results)} already existed)"
        )
        return
    result = await client.enqueue(
        args.queue,
        args.task,
        _payload(args.payload),
        priority=args.priority,
        delay=args.delay,
        idempotency_key=args.idempotency_key,
        max_attempts=args.max_attempts,
        timeout=args.task_timeout,
        correlation_id=args.correlation_id,
        callback_url=args.callback_url,
    )
    _print_json({"id": result.id, "created": result.created})


def _read_lines(path: str) -> list[str]:
    try:
        with sys.stdin if path == "-" else open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None


async def _tasks_show(client: Client, args: argparse.Namespace) -> None:
    task = await client.get_task(args.id)
    attempts = await client.task_attempts(args.id)
    _print_json(
        {**task.model_dump(mode="json"), "history": [a.model_dump(mode="json") for a in attempts]}
    )


async def _tasks_cancel(client: Client, args: argparse.Namespace) -> None:
    result = await client.cancel(args.id)
    if result.state == "running" and result.cancel_requested:
        print(f"task {args.id} is running: asked its worker to stop it")
    elif result.state == "canceled":
        print(f"task {args.id} canceled")
    else:  # nothing was done: not a success (exit 1)
        raise CliError(f"task {args.id} already finished ({result.state}); nothing to cancel")


async def _dead_list(client: Client, args: argparse.Namespace) -> None:
    for task in await client.list_dead(args.queue, args.limit):
        error = task.error or {}
        print(
            f"{task.id}\t{task.task_name}\t{task.finished_at}\t{error.get('type')}: "
            f"{error.get('message')}"
        )


async def _dead_replay(client: Client, args: argparse.Namespace) -> None:
    if not args.ids and not args.all:
        raise UsageError("name the dead task ids to replay, or pass --all")
    result = await client.replay_dead(args.queue, None if args.all else args.ids)
    print(
        f"replayed {result.replayed} dead tasks"
        + (
            f"; {result.skipped} skipped (their idempotency key is held by a newer task)"
            if result.skipped
            else ""
        )
    )


_DURATION = re.compile(r"^([0-9]+)([mhd])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _expires_in(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    fix = "a whole number of minutes, hours or days, e.g. 30m, 12h or 90d"
    if not match or int(match[1]) == 0:
        raise UsageError(f"invalid --expires-in {text!r}: use {fix}")
    amount = int(match[1])
    limit = key_store.MAX_LIFETIME
    if amount > limit / timedelta(**{_DURATION_UNITS[match[2]]: 1}):
        raise UsageError(
            f"invalid --expires-in {text!r}: at most {limit.days}d; "
            "leave --expires-in out for a key that never expires"
        )
    return timedelta(**{_DURATION_UNITS[match[2]]: amount})


def _key_namespaces(args: argparse.Namespace) -> list[str] | None:
    if args.namespaces and args.all_namespaces:
        raise UsageError("--namespace and --all-namespaces exclude each other: pass one of them")
    if args.all_namespaces:
        return None
    if not args.namespaces:
        raise UsageError(
            "say which namespaces the key reaches: --namespace NS (repeat it for more), "
            "or --all-namespaces"
        )
    return [check_label(ns, "--namespace") for ns in args.namespaces]


def _when(moment: datetime | None, absent: str = "-") -> str:
    return absent if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_scope(key: ApiKey) -> str:
    """Namespaces as `taskq keys list` shows them: `*` is every namespace (no label is `*`)."""
    return "*" if key.namespaces is None else ",".join(key.namespaces)


async def _keys_create(client: Client, args: argparse.Namespace) -> None:
    role = Role.parse(args.role, "--role")
    namespaces = _key_namespaces(args)
    expires_in = _expires_in(args.expires_in)
    key, secret = await key_store.create_key(
        client.pool,
        args.name,
        role,
        namespaces,
        reads_payloads=args.reads_payloads,
        expires_in=expires_in,
    )
    # the secret alone on stdout, for `> file` or `$(...)`; what it is on stderr
    print(secret, flush=True)
    print(
        f"created API key {key.name!r} (prefix {key.prefix}, role {key.role.label}, "
        f"namespaces {_key_scope(key)}, expires {_when(key.expires_at, 'never')}). "
        "Store the secret above now: it will not be shown again.",
        file=sys.stderr,
    )


_KEY_COLUMNS = ["NAME", "PREFIX", "ROLE", "NAMESPACES", "PAYLOADS", "STATE", "EXPIRES"]
_KEY_COLUMNS += ["REVOKED", "LAST USED", "DECLARED BY"]


def _key_row(key: ApiKey, now: datetime) -> list[str]:
    """A key as `taskq keys list` shows it, in _KEY_COLUMNS' order; never a digest."""
    if key.revoked_at is not None:
        state = "revoked"
    else:
        state = "active" if key.usable_at(now) else "expired"
    return [
        key.name,
        key.prefix,
        key.role.label,
        _key_scope(key),
        "yes" if key.sees_payloads() else "no",
        state,
        _when(key.expires_at, "never"),
        _when(key.revoked_at),
        _when(key.last_used_at, "never"),
        f"TaskqApiKey {key.declared_by}" if key.declared_by else "-",
    ]


async def _keys_list(client: Client, _args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    rows = [_KEY_COLUMNS] + [_key_row(key, now) for key in await key_store.list_keys(client.pool)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_KEY_COLUMNS))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


async def _keys_revoke(client: Client, args: argparse.Namespace) -> None:
    key = await key_store.revoke_key(client.pool, args.name)
    print(f"revoked API key {key.name!r} (prefix {key.prefix}): it is refused from now on")
    if key.declared_by:
        # the object still declares a key: the operator issues it a new one
        print(
            f"it was declared by the TaskqApiKey {key.declared_by}: the operator puts a new key "
            "into that object's Secret; delete the TaskqApiKey to stop issuing keys",
            file=sys.stderr,
        )


def _worker(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in (
            ("dsn", args.dsn),
            ("queues", args.queues),
            ("app", args.app),
            ("concurrency", args.concurrency),
        )
        if v is not None
    }
    try:
        settings = WorkerSettings(**overrides)
    except ValidationError as error:
        raise UsageError(_settings_error(error)) from None
    if args.path:
        sys.path.insert(0, args.path)
    asyncio.run(run_worker(settings, ExitDeadline()))
    return 0


def _settings_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        # a check across fields (e.g. poll interval vs lease) has no location of its own
        field = f"TASKQ_{str(item['loc'][0]).upper()}" if item["loc"] else "worker settings"
        problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)


def _task_id(text: str) -> int:
    """A task id as argparse reads it: its error names the argument ("argument id: ...")."""
    if not text.isdigit() or not 1 <= int(text) <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a task id (a whole number from 1)")
    return int(text)


def _dead_limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1..10000")
    return int(text)


def _priority_arg(text: str) -> int | str:
    """`--priority 80` is the number 80 (a level name stays text); taskq.models.resolve_priority
    then checks either, as for every other door."""
    return int(text) if text.strip().removeprefix("-").isdigit() else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskq",
        description="Postgres-backed task queue",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $TASKQ_DSN)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="install or upgrade the taskq schema").set_defaults(run=_migrate)
    _add_queue_commands(sub)
    _add_enqueue_command(sub)
    _add_worker_command(sub)
    _add_task_commands(sub)
    _add_key_commands(sub)
    add_schedule_commands(sub)
    add_webhook_commands(sub)
    # add_help=False: `taskq api --help` and every flag after `api` go to the API server's own
    # parser (taskq_api.server.main), the one definition of its flags
    sub.add_parser(
        "api", help="serve the REST API (needs the taskq-api package)", add_help=False
    ).set_defaults(run=None)
    return parser


def _add_queue_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = sub.add_parser("queue", help="create, drop, list and inspect queues")
    qsub = queue.add_subparsers(dest="queue_command", required=True)
    create = qsub.add_parser("create", help="create a queue or update its settings")
    create.add_argument("queue", help="NAMESPACE/NAME")
    _add_setting_flags(create)
    create.set_defaults(run=_queue_create)
    drop = qsub.add_parser("drop", help="drop a queue with all its tasks")
    drop.add_argument("queue")
    drop.add_argument("--yes", action="store_true")
    drop.set_defaults(run=_queue_drop)
    stats = qsub.add_parser("stats", help="depth of a queue")
    stats.add_argument("queue")
    stats.add_argument(
        "--cap",
        type=int,
        default=COUNT_CAP,
        help=f"count at most this many tasks per state (default {COUNT_CAP}; a count that "
        "reached it is listed in `capped`: at least that many)",
    )
    stats.set_defaults(run=_queue_stats)
    qsub.add_parser("list", help="list queues").set_defaults(run=_queue_list)


def _add_enqueue_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enqueue = sub.add_parser("enqueue", help="enqueue a task (or many from JSON lines)")
    enqueue.add_argument("queue")
    enqueue.add_argument("task", help="task name (the handler's key)")
    enqueue.add_argument("payload", nargs="?", help="JSON payload")
    enqueue.add_argument("--jsonl", metavar="FILE", help="one JSON payload per line ('-': stdin)")
    enqueue.add_argument(
        "--priority", type=_priority_arg, help="0..100 or urgent/high/normal/low"
    )
    enqueue.add_argument("--delay", type=float, help="seconds before it may run")
    enqueue.add_argument("--idempotency-key")
    enqueue.add_argument("--max-attempts", type=int)
    enqueue.add_argument("--timeout", dest="task_timeout", type=float)
    enqueue.add_argument("--correlation-id")
    enqueue.add_argument(
        "--callback-url",
        metavar="URL",
        help="called when the task finishes, signed by the queue's callback webhook "
        "(docs/webhooks.md)",
    )
    enqueue.set_defaults(run=_enqueue)


def _add_worker_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="run a worker (settings from TASKQ_* variables)")
    worker.add_argument("--queues", help="overrides TASKQ_QUEUES")
    worker.add_argument("--app", help="overrides TASKQ_APP")
    worker.add_argument("--concurrency", type=int, help="overrides TASKQ_CONCURRENCY")
    worker.add_argument("--path", help="directory to import the app from")
    worker.set_defaults(run=None)


def _add_task_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tasks = sub.add_parser("tasks", help="inspect or cancel a task")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True)
    show = tsub.add_parser("show", help="a task and its tries history")
    show.add_argument("id", type=_task_id)
    show.set_defaults(run=_tasks_show)
    cancel = tsub.add_parser("cancel", help="cancel a waiting or running task")
    cancel.add_argument("id", type=_task_id)
    cancel.set_defaults(run=_tasks_cancel)

    dead = sub.add_parser("dead", help="the dead letters: tasks out of attempts")
    dsub = dead.add_subparsers(dest="dead_command", required=True)
    dlist = dsub.add_parser("list")
    dlist.add_argument("queue")
    dlist.add_argument("--limit", type=_dead_limit, default=100, help="1..10000")
    dlist.set_defaults(run=_dead_list)
    replay = dsub.add_parser("replay", help="send dead tasks back to ready")
    replay.add_argument("queue")
    replay.add_argument("ids", type=_task_id, nargs="*")
    replay.add_argument("--all", action="store_true")
    replay.set_defaults(run=_dead_replay)


def _add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys of the HTTP and gRPC API")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser(
        "create", help="make a key and print its secret (once: it is stored only hashed)"
    )
    create.add_argument("name", help="1-63 lowercase letters, digits or '-'")
    create.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="a namespace the key reaches (repeat for more)",
    )
    create.add_argument(
        "--all-namespaces", action="store_true", help="the key reaches every namespace"
    )
    create.add_argument(
        "--role",
        required=True,
        help="viewer (reads), operator (also enqueues, cancels, retries, pauses), "
        "admin (also manages keys)",
    )
    create.add_argument(
        "--expires-in", metavar="DURATION", help="e.g. 30m, 12h, 90d (default: never)"
    )
    create.add_argument(
        "--reads-payloads",
        action="store_true",
        help="a viewer key sees payloads and results (other roles always do)",
    )
    create.set_defaults(run=_keys_create)
    ksub.add_parser("list", help="every key, without secrets").set_defaults(run=_keys_list)
    revoke = ksub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("name")
    revoke.set_defaults(run=_keys_revoke)


async def _with_client(
    dsn: str,
    run: Callable[[Client, argparse.Namespace], Awaitable[None]],
    args: argparse.Namespace,
) -> None:
    async with await connect(dsn, min_size=1, max_size=2, pool_mode=_pool_mode()) as client:
        await run(client, args)


def _pool_mode() -> PoolMode:
    """TASKQ_DB_POOL_MODE, as the worker reads it (docs/worker.md)."""
    mode = os.environ.get("TASKQ_DB_POOL_MODE", "session")
    if mode == "transaction":
        return "transaction"
    if mode != "session":
        raise UsageError(f"TASKQ_DB_POOL_MODE: {mode!r}: give session or transaction")
    return "session"


def _api(args: argparse.Namespace, rest: list[str]) -> int:
    """`taskq api ...`: the taskq-api package's server, imported only now: the worker image
    does not carry it (nor FastAPI)."""
    try:
        from taskq_api.server.main import main as serve_api  # noqa: PLC0415
    except ModuleNotFoundError as error:
        raise CliError(
            f"`taskq api` needs the taskq-api package (missing module {error.name!r}): "
            "install it with `pip install taskq-api`, or run the API image"
        ) from None
    return serve_api([*(["--dsn", args.dsn] if args.dsn else []), *rest], prog="taskq api")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "api":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "api":
            return _api(args, rest)
        if args.command == "worker":
            return _worker(args)
        dsn = args.dsn or os.environ.get("TASKQ_DSN")
        if not dsn:
            raise UsageError("no database: set TASKQ_DSN or pass --dsn postgresql://...")
        traced = tracing.configure_from_env("taskq")
        try:
            asyncio.run(_with_client(dsn, args.run, args))
        finally:
            if traced:
                tracing.shutdown()
    except (TaskqError, CliError) as error:
        print(f"taskq: error: {error}", file=sys.stderr)
        return _exit_status(error)
    except ValidationError as error:
        print(f"taskq: error: {_validation_message(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def _exit_status(error: TaskqError | CliError) -> int:
    """EXIT_USAGE for a value the user gave that no command accepts (whoever found it: the
    CLI, the client or the database's own checks); EXIT_FAILED for a well-formed command
    that could not be done."""
    if isinstance(error, TaskStateError):
        return EXIT_FAILED
    if isinstance(error, InvalidArgumentError | PayloadTooLargeError | UsageError):
        return EXIT_USAGE
    return EXIT_FAILED


def _validation_message(error: ValidationError) -> str:
    """Each problem under the name the user typed: a queue setting's flag, not its field."""
    flags = {field.path: f"--{field.flag}" for field in setting_fields()}
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if path in flags:
            problems.append(f"{flags[path]}: {message}")
            continue
        # a check across settings (backoff: max_seconds vs base_seconds) names the fields it
        # compares: say their flags instead
        for setting, flag in flags.items():
            parent, _, leaf = setting.rpartition(".")
            if parent == path:
                message = re.sub(rf"\b{leaf}\b", flag, message)
        problems.append(message)
    return "; ".join(problems)


if __name__ == "__main__":
    sys.exit(main())
