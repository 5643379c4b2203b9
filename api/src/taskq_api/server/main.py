"""`taskq-api` and `taskq api`: settings from TASKQ_API_* and flags, JSON logs, and the server
process (process.py) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Literal, get_args, get_origin

from pydantic import ValidationError

from taskq import tracing
from taskq.errors import TaskqError
from taskq.worker.logs import setup_logging
from taskq_api.server.process import StartupError, serve
from taskq_api.server.settings import ENV_PREFIX, ApiSettings

EXIT_USAGE = 2


# Flags whose name is not the setting's (a list is given one item per flag).
_FLAG_NAMES = {"cors_origins": "cors-origin"}


def _parser(prog: str) -> argparse.ArgumentParser:
    """One flag per setting of ApiSettings, with its description: the one definition."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the taskq API: REST over HTTP, and gRPC. Every flag overrides its "
        f"{ENV_PREFIX}* variable (docs/api.md).",
    )
    for name, field in ApiSettings.model_fields.items():
        flag = "--" + _FLAG_NAMES.get(name, name.replace("_", "-"))
        help_text = field.description
        if name == "dsn":
            parser.add_argument(flag, help=help_text)
        elif name == "cors_origins":
            parser.add_argument(
                flag,
                dest=name,
                action="append",
                metavar="ORIGIN",
                help=f"{help_text} (repeat the flag for more)",
            )
        elif field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif get_origin(field.annotation) is Literal:
            parser.add_argument(flag, dest=name, choices=get_args(field.annotation), help=help_text)
        else:
            kind: Callable[[str], object] = str
            if field.annotation is int:
                kind = int
            elif field.annotation is float:
                kind = float
            parser.add_argument(flag, dest=name, type=kind, help=help_text)
    return parser


def settings_from(argv: Sequence[str] | None, prog: str = "taskq-api") -> ApiSettings:
    """The settings of this command line over the environment; SystemExit(2) with one line
    per problem when they are invalid."""
    args = _parser(prog).parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return ApiSettings(**overrides)
    except ValidationError as error:
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else "settings"
            if field.upper() in ("DSN", "TASKQ_API_DSN", "TASKQ_DSN"):
                field = "dsn"
            if field in ApiSettings.model_fields:
                field = f"{ENV_PREFIX}{field.upper()} (--{field.replace('_', '-')})"
            if field.startswith(f"{ENV_PREFIX}DSN"):
                field = "TASKQ_API_DSN or TASKQ_DSN (--dsn)"
            message = "required" if item["type"] == "missing" else item["msg"]
            print(f"{prog}: error: {field}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _stopped(_signal: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None, prog: str = "taskq-api") -> int:
    settings = settings_from(argv, prog)
    setup_logging(settings.log_level)
    # uvicorn stops gracefully on SIGTERM, then raises the signal again once it has stopped:
    # this handler turns that into exit status 0, as a stop asked for is no failure
    signal.signal(signal.SIGTERM, _stopped)
    try:
        # the API's `send` spans continue its callers' traces (docs/tracing.md)
        traced = tracing.configure_from_env("taskq-api")
    except ValueError as error:  # an OTEL_* variable taskq cannot honour
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 130
    except (StartupError, TaskqError) as error:  # e.g. a gRPC port in use, an invalid DSN
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    finally:
        if traced:
            tracing.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
