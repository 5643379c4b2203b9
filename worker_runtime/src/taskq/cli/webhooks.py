"""`taskq webhooks ...`: a queue's completion webhooks without Kubernetes (docs/webhooks.md).

The signing secret is shown once, by `create` (made there unless --secret gives one); `list`
and `show` never print it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskq.client import Client
from taskq.errors import InvalidArgumentError
from taskq.store.webhooks import WebhookInfo
from taskq.webhooks import ALL_EVENTS, Event, WebhookSpec, new_secret


def _events(text: str | None) -> tuple[Event, ...]:
    if text is None:
        return ALL_EVENTS
    try:
        return tuple(Event.parse(part.strip()) for part in text.split(",") if part.strip())
    except InvalidArgumentError as error:
        raise InvalidArgumentError("--events", error.args[0].split(": ", 1)[-1]) from None


def _spec(args: argparse.Namespace, secret: str) -> WebhookSpec:
    if (args.url is None) == (not args.callbacks):
        raise InvalidArgumentError("--url", "give a URL, or --callbacks (and no URL)")
    allow = tuple(h.strip() for h in (args.allow_hosts or "").split(",") if h.strip())
    events = _events(args.events)
    try:
        return WebhookSpec(args.url, secret, events, allow)
    except InvalidArgumentError as error:
        flag = {"url": "--url", "secret": "--secret", "events": "--events"}
        raise InvalidArgumentError(
            flag.get(error.field, error.field), error.args[0].split(": ", 1)[-1]
        ) from None


def _view(found: WebhookInfo) -> dict[str, Any]:
    spec = found.spec
    return {
        "queue": found.full_queue,
        "name": found.name,
        "url": spec.url,
        "callbacks": spec.url is None,
        "events": [e.value for e in spec.events],
        "allow_hosts": list(spec.allow_hosts),
        "declared_by": found.declared_by,
        "created_at": found.created_at.isoformat(timespec="seconds"),
    }


async def _create(client: Client, args: argparse.Namespace) -> None:
    secret = args.secret or new_secret()
    found = await client.put_webhook(args.queue, args.name, _spec(args, secret))
    print(json.dumps({**_view(found), "secret": secret}, indent=2))
    if not args.secret:
        print("keep the secret: receivers verify signatures with it", file=sys.stderr)


async def _list(client: Client, args: argparse.Namespace) -> None:
    rows = [
        [
            f.full_queue,
            f.name,
            f.spec.url or "(task callback URLs)",
            ",".join(e.value for e in f.spec.events),
        ]
        for f in await client.list_webhooks(args.queue)
    ]
    header = ["QUEUE", "NAME", "URL", "EVENTS"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


async def _show(client: Client, args: argparse.Namespace) -> None:
    print(json.dumps(_view(await client.get_webhook(args.queue, args.name)), indent=2))


async def _delete(client: Client, args: argparse.Namespace) -> None:
    await client.delete_webhook(args.queue, args.name)
    print(f"webhook {args.name} of {args.queue} deleted")


def add_webhook_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = sub.add_parser("webhooks", help="completion webhooks of queues")
    wsub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    create = wsub.add_parser(
        "create", help="create or update a queue's endpoint (prints its secret once)"
    )
    create.add_argument("queue", help="NAMESPACE/NAME")
    create.add_argument("name", help="the endpoint's name in the queue")
    create.add_argument("--url", help="the receiver, https:// (http:// only if allow-listed)")
    create.add_argument(
        "--callbacks",
        action="store_true",
        help="no URL: sign the calls to the callback URLs the queue's tasks were given",
    )
    create.add_argument(
        "--events",
        help="comma-separated: " + ", ".join(e.value for e in Event) + " (default all)",
    )
    create.add_argument("--secret", help="whsec_<base64> (default: a new one)")
    create.add_argument(
        "--allow-hosts",
        help="comma-separated hosts that may be called without HTTPS and at private, "
        "loopback or link-local addresses",
    )
    create.set_defaults(run=_create)
    listing = wsub.add_parser("list", help="webhooks (never their secrets)")
    listing.add_argument("queue", nargs="?", help="NAMESPACE/NAME or NAMESPACE (default all)")
    listing.set_defaults(run=_list)
    for command, run, text in (
        ("show", _show, "one webhook (JSON, without its secret)"),
        ("delete", _delete, "delete a webhook (deliveries already made stay)"),
    ):
        parser = wsub.add_parser(command, help=text)
        parser.add_argument("queue", help="NAMESPACE/NAME")
        parser.add_argument("name")
        parser.set_defaults(run=run)
