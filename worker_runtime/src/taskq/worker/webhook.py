"""The built-in handler `taskq.webhook`: one delivery of a completion webhook, a signed POST
(Standard Webhooks) to the endpoint the Dispatcher chose (docs/webhooks.md).

A delivery is an ordinary task of taskq-system/webhooks: a receiver that fails or times out
fails the attempt, retried with the queue's backoff, and dead after its last attempt (replay
sends it again). A target that may not be called (not HTTPS, a non-public address, an
endpoint deleted) fails it for good at once. The endpoint's secret and allow-list are read
when the delivery is made, so a rotated secret applies to retries too. Only a short excerpt
of a failed response is kept, in the attempt's error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

from taskq.store.deadlines import DeadlineStore
from taskq.store.webhooks import DeliveryTarget, delivery_target
from taskq.webhooks import (
    WEBHOOK_TASK,
    TargetRefusedError,
    check_addresses,
    check_scheme,
    check_url_shape,
    signed_headers,
)
from taskq.worker.context import FatalTaskError, TaskContext
from taskq.worker.registry import Registry

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("taskq.worker")

TIMEOUT_S = 10.0  # per request; the queue's attempt timeout is longer
CONNECT_TIMEOUT_S = 5.0
EXCERPT = 256  # characters of a failed response's body kept in the attempt's error
USER_AGENT = "taskq-webhooks/1"


class ReceiverError(Exception):
    """The receiver did not take the delivery (a status other than 2xx, or no answer)."""


class WebhookStore(DeadlineStore):
    async def target(self, namespace: str, queue: str, endpoint: str | None) -> DeliveryTarget:
        found = await self._run(delivery_target, namespace, queue, endpoint)
        if found is not None:
            return found
        if endpoint is None:
            raise FatalTaskError(
                f"queue {namespace}/{queue} has no webhook without url to sign its tasks' "
                "callbacks: declare one (taskq webhooks create --callbacks), then replay"
            )
        raise FatalTaskError(f"webhook {endpoint!r} of queue {namespace}/{queue} is gone")


@dataclass(frozen=True)
class Delivery:
    """The payload the Dispatcher wrote (taskq.webhook_delivery)."""

    namespace: str
    queue: str
    endpoint: str | None
    callback_url: str | None
    message_id: str
    event: dict[str, Any]

    @classmethod
    def parse(cls, payload: Any) -> Delivery:
        try:
            return cls(
                namespace=payload["namespace"],
                queue=payload["queue"],
                endpoint=payload["endpoint"],
                callback_url=payload["callback_url"],
                message_id=payload["message_id"],
                event=payload["event"],
            )
        except (KeyError, TypeError) as error:
            raise FatalTaskError(f"not a webhook delivery: {error!r} missing") from None


async def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, in the resolver's order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class WebhookSender:
    """The handler; one per worker process, holding its HTTP client."""

    def __init__(self, store: WebhookStore, resolver: Any = None) -> None:
        self.store = store
        self.resolve = resolver or resolve
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """Made on the first delivery: importing httpx at startup would slow every worker's
        start (by a few tenths of a second) whether it ever delivers or not."""
        if self._client is None:
            import httpx  # noqa: PLC0415

            # No redirects: a redirect could lead to an address the checks refused.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                follow_redirects=False,
                headers={"user-agent": USER_AGENT},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        delivery = Delivery.parse(ctx.payload)
        target = await self.store.target(delivery.namespace, delivery.queue, delivery.endpoint)
        url = target.url or delivery.callback_url
        if url is None:
            raise FatalTaskError("the delivery names no URL")
        address = await self.check_target(url, target.allow_hosts)
        body = json.dumps(delivery.event, separators=(",", ":")).encode()
        headers = signed_headers(target.secret, delivery.message_id, int(time.time()), body)
        client = self.client()
        from httpx import URL, HTTPError  # noqa: PLC0415 (loaded by client())

        # Connect to the address that was checked, not to whatever the name resolves to a
        # moment later (DNS rebinding): the name stays in the Host header and, for HTTPS, in
        # SNI and the certificate check.
        parts = urlsplit(url)
        pinned = URL(url).copy_with(host=address)
        headers["host"] = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        started = time.monotonic()
        try:
            async with client.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as answer:
                if not answer.is_success:
                    excerpt = await _excerpt(answer)
                    raise ReceiverError(
                        f"{url[:200]} answered {answer.status_code}"
                        + (f": {excerpt}" if excerpt else "")
                    )
                status = answer.status_code
        except HTTPError as error:
            raise ReceiverError(f"{url[:200]}: {type(error).__name__}: {error}") from None
        return {"status": status, "seconds": round(time.monotonic() - started, 3)}

    async def check_target(self, url: str, allow_hosts: tuple[str, ...]) -> str:
        """The address to connect to; FatalTaskError when the URL may not be called."""
        try:
            check_url_shape(url, "url")
            check_scheme(url, allow_hosts, "url")
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = await self.resolve(host, port)
            except OSError as error:
                # a name that does not resolve may later: retried, not refused
                raise ReceiverError(f"{host!r} does not resolve: {error}") from None
            check_addresses(host, addresses, allow_hosts)
        except TargetRefusedError as error:
            raise FatalTaskError(str(error)) from None
        except ValueError as error:
            raise FatalTaskError(f"{url[:200]!r} may not be called: {error}") from None
        if not addresses:
            raise ReceiverError(f"{host!r} resolves to no address")
        return addresses[0]


async def _excerpt(answer: httpx.Response) -> str:
    """The start of the body, never more: a receiver's error page is not ours to keep."""
    read = b""
    async for chunk in answer.aiter_bytes():
        read += chunk
        if len(read) >= EXCERPT:
            break
    return read[:EXCERPT].decode(errors="replace").strip()


def webhook_registry(
    pool: asyncpg.Pool, deadline: float, resolver: Any = None
) -> tuple[Registry, WebhookSender]:
    """The registry serving taskq-system/webhooks: the built-in handler alone (`resolver`:
    tests map names to addresses)."""
    sender = WebhookSender(WebhookStore(pool, deadline), resolver)
    registry = Registry()

    async def deliver(ctx: TaskContext) -> dict[str, Any]:
        return await sender(ctx)

    registry.task(WEBHOOK_TASK)(deliver)
    return registry, sender
