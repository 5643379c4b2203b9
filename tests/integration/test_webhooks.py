"""Completion webhooks on a real PostgreSQL, delivered to a real HTTP receiver on 127.0.0.1
that verifies every request with the Standard Webhooks library (`standardwebhooks`): a finished
task becomes exactly one delivery per endpoint that picked its state, whoever dispatches and
however often; per-task callback URLs; the address and scheme checks; a failing receiver
leaves only an excerpt of its answer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from taskq.client import Client
from taskq.errors import InvalidArgumentError, UnknownWebhookError
from taskq.maintenance.dispatcher import Dispatcher
from taskq.models import QueueInfo, QueueSettings, TaskRequest
from taskq.store.execution import Outcome
from taskq.store.maintenance import MaintenanceStore
from taskq.webhooks import WEBHOOK_QUEUE, Event, WebhookSpec, new_secret
from taskq.worker.loop import shutdown_bound
from taskq.worker.settings import WorkerSettings
from taskq.worker.webhook import resolve, webhook_registry
from tests.integration.helpers import claim, finish, running_worker, task_state, wait_for
from tests.integration.test_maintenance import Counts

_namespaces = itertools.count()
LOCAL = ("127.0.0.1",)


@dataclass
class Receiver:
    """Records each POST after verifying its signature; answers `status` with `body`."""

    secret: str
    status: int = 204
    body: bytes = b""
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    port: int = 0
    # set: each request waits for it before the answer (a receiver that hangs)
    hold: threading.Event | None = None

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def receiver(secret: str, **options: Any) -> Iterator[Receiver]:
    state = Receiver(secret, **options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["content-length"]))
            try:
                event = Webhook(state.secret).verify(data, dict(self.headers.items()))
            except Exception as error:
                state.refused.append(repr(error))
                self.send_response(401)
                self.end_headers()
                return
            state.received.append(
                {
                    "event": event,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "path": self.path,
                }
            )
            if state.hold is not None:
                state.hold.wait(60)
            self.send_response(state.status)
            self.send_header("content-length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def new_queue(client: Client) -> QueueInfo:
    return await client.ensure_queue(f"hooks{next(_namespaces)}/orders", QueueSettings())


async def dispatch(pool: asyncpg.Pool, **options: Any) -> int:
    return await Dispatcher(**options).run_once(MaintenanceStore(pool, 10.0), Counts())


async def deliveries_of(pool: asyncpg.Pool, task_id: int) -> list[dict[str, Any]]:
    """The delivery tasks announcing the task, payload and error decoded."""
    rows = await pool.fetch(
        "SELECT t.id, t.state, t.payload, t.error, t.correlation_id"
        "  FROM taskq.tasks t JOIN taskq.queues q ON q.id = t.queue_id"
        " WHERE q.namespace = 'taskq-system' AND q.name = 'webhooks'"
        "   AND (t.payload -> 'event' -> 'data' ->> 'id')::bigint = $1 ORDER BY t.id",
        task_id,
    )
    decoded = ("payload", "error")
    return [
        {k: json.loads(v) if k in decoded and v is not None else v for k, v in row.items()}
        for row in rows
    ]


async def finished(
    pool: asyncpg.Pool,
    client: Client,
    queue: QueueInfo,
    outcome: Outcome = "succeeded",
    **task: Any,
) -> int:
    """One task of the queue, run and finished with `outcome` (no retries left)."""
    [result] = await client.enqueue_many(
        queue.full_name, [TaskRequest("charge", {"order": 7}, max_attempts=1, **task)]
    )
    [claimed] = await claim(pool, queue)
    assert claimed.id == result.id
    await finish(pool, claimed, outcome, result={"charged": 12} if outcome == "succeeded" else None)
    return result.id


@contextlib.asynccontextmanager
async def delivering(
    dsn: str, pool: asyncpg.Pool, names: dict[str, list[str]] | None = None
) -> AsyncIterator[None]:
    """A worker delivering; `names` replaces DNS for the names it lists."""
    resolver = None
    if names is not None:
        table = names

        async def resolver(host: str, port: int) -> list[str]:
            return table.get(host) or await resolve(host, port)

    registry, sender = webhook_registry(pool, 5.0, resolver)
    try:
        async with running_worker(dsn, registry, [WEBHOOK_QUEUE]):
            yield
    finally:
        await sender.aclose()


async def test_a_finished_task_is_posted_once_signed_as_standard_webhooks(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    queue = await new_queue(client)
    secret = new_secret()
    with receiver(secret) as hook:
        await client.put_webhook(
            queue.full_name, "billing", WebhookSpec(hook.url(), secret, allow_hosts=LOCAL)
        )
        task_id = await finished(pool, client, queue, correlation_id="order-7")
        assert await dispatch(pool) >= 1
        assert await dispatch(pool) == 0  # the overlap is looked at again: nothing new
        [delivery] = await deliveries_of(pool, task_id)
        assert delivery["correlation_id"] == "order-7"
        async with delivering(dsn, pool):
            await wait_for(lambda: asyncio.sleep(0, hook.received), bool, what="a POST")
            await wait_for(
                lambda: task_state(pool, delivery["id"]),
                lambda s: s == "succeeded",
                what="the delivery to succeed",
            )
    assert hook.refused == []
    [got] = hook.received
    event = got["event"]
    assert event["type"] == "task.succeeded"
    data = event["data"]
    assert data["id"] == task_id
    assert data["queue"] == queue.full_name
    assert data["name"] == "charge"
    assert data["state"] == "succeeded"
    assert data["result"] == {"charged": 12}
    assert data["error"] is None
    assert data["correlation_id"] == "order-7"
    assert {"created_at", "started_at", "finished_at"} <= set(data)
    assert got["headers"]["webhook-id"].startswith(f"msg_{task_id}_")
    assert got["headers"]["user-agent"].startswith("taskq-webhooks/")


async def test_each_endpoint_hears_only_the_events_it_picked(
    client: Client, pool: asyncpg.Pool
) -> None:
    queue = await new_queue(client)
    secret = new_secret()
    await client.put_webhook(
        queue.full_name,
        "failures",
        WebhookSpec("https://example.com/dead", secret, events=(Event.DEAD,)),
    )
    await client.put_webhook(queue.full_name, "all", WebhookSpec("https://example.com/a", secret))
    ok = await finished(pool, client, queue, "succeeded")
    dead = await finished(pool, client, queue, "failed")
    await dispatch(pool)
    endpoints = {
        task: sorted(r["payload"]["endpoint"] for r in await deliveries_of(pool, task))
        for task in (ok, dead)
    }
    assert endpoints == {ok: ["all"], dead: ["all", "failures"]}
    [failed] = [
        r for r in await deliveries_of(pool, dead) if r["payload"]["endpoint"] == "failures"
    ]
    assert failed["payload"]["event"]["type"] == "task.dead"
    assert failed["payload"]["event"]["data"]["error"]["type"] == "Boom"


async def test_dispatchers_at_once_make_one_delivery_per_notification(
    client: Client, pool: asyncpg.Pool
) -> None:
    queue = await new_queue(client)
    await client.put_webhook(
        queue.full_name, "once", WebhookSpec("https://example.com/once", new_secret())
    )
    tasks = [await finished(pool, client, queue) for _ in range(5)]
    await asyncio.gather(*(dispatch(pool, batch=2) for _ in range(8)))
    for _ in range(5):  # batches of 2: later passes take the rest
        await dispatch(pool, batch=2)
    assert [len(await deliveries_of(pool, task)) for task in tasks] == [1] * 5


async def test_a_late_commit_inside_the_overlap_is_announced_and_one_before_it_not(
    client: Client, pool: asyncpg.Pool
) -> None:
    """finished_at is when the finishing transaction began: one that commits after a scan
    passed its finish time is found by the next scan's overlap."""
    queue = await new_queue(client)
    await client.put_webhook(
        queue.full_name, "late", WebhookSpec("https://example.com/late", new_secret())
    )
    await pool.execute(
        "UPDATE taskq.webhooks SET created_at = now() - interval '1 hour'"
        " WHERE namespace = $1 AND queue = 'orders'",
        queue.namespace,
    )
    await dispatch(pool)  # the watermark is now
    inside = await finished(pool, client, queue)
    outside = await finished(pool, client, queue)
    for task, ago in ((inside, 30), (outside, 90)):
        await pool.execute(
            "UPDATE taskq.tasks SET finished_at = now() - make_interval(secs => $2) WHERE id = $1",
            task,
            ago,
        )
    await dispatch(pool, overlap=60.0)
    assert len(await deliveries_of(pool, inside)) == 1
    assert await deliveries_of(pool, outside) == []


async def test_a_task_callback_url_is_called_signed_by_the_queue_signer(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    queue = await new_queue(client)
    secret = new_secret()
    with receiver(secret) as hook:
        await client.put_webhook(
            queue.full_name, "callbacks", WebhookSpec(None, secret, allow_hosts=LOCAL)
        )
        [result] = await client.enqueue_many(
            queue.full_name,
            [TaskRequest("charge", {}, callback_url=hook.url("/orders/7?token=abc"))],
        )
        await client.cancel(result.id)
        assert await dispatch(pool) >= 1
        [delivery] = await deliveries_of(pool, result.id)
        assert delivery["payload"]["endpoint"] is None
        async with delivering(dsn, pool):
            await wait_for(lambda: asyncio.sleep(0, hook.received), bool, what="a POST")
    [got] = hook.received
    assert got["path"] == "/orders/7?token=abc"
    assert got["event"]["type"] == "task.canceled"
    assert got["event"]["data"]["state"] == "canceled"


async def test_a_callback_url_must_look_like_one(client: Client) -> None:
    queue = await new_queue(client)
    with pytest.raises(InvalidArgumentError, match=r"tasks\[0\]\.callback_url"):
        await client.enqueue_many(
            queue.full_name, [TaskRequest("charge", {}, callback_url="ftp://x")]
        )


async def test_refused_targets_go_to_the_dead_letters_at_once(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    """HTTPS to a loopback address without the allow-list, a plain-HTTP callback, and a
    callback in a queue that has no signer: dead on the first attempt, saying why."""
    queue = await new_queue(client)
    secret = new_secret()
    with receiver(secret) as hook:
        await client.put_webhook(
            queue.full_name, "loopback", WebhookSpec(hook.url(scheme="https"), secret)
        )
        await client.put_webhook(queue.full_name, "callbacks", WebhookSpec(None, secret))
        plain = await finished(pool, client, queue, callback_url=hook.url())
        other = await new_queue(client)
        unsigned = await finished(pool, client, other, callback_url=hook.url(scheme="https"))
        await dispatch(pool)
        async with delivering(dsn, pool):

            async def states() -> list[str]:
                rows = await deliveries_of(pool, plain) + await deliveries_of(pool, unsigned)
                return [r["state"] for r in rows]

            await wait_for(states, lambda s: s == ["dead"] * 3, what="three dead deliveries")
        assert hook.received == []
    errors = {
        (r["payload"]["endpoint"], r["payload"]["queue"], r["payload"]["namespace"]): r["error"][
            "message"
        ]
        for task in (plain, unsigned)
        for r in await deliveries_of(pool, task)
    }
    assert "non-public address" in errors[("loopback", "orders", queue.namespace)]
    assert "is not HTTPS" in errors[(None, "orders", queue.namespace)]
    assert "has no webhook without url" in errors[(None, "orders", other.namespace)]


async def test_a_failing_receiver_is_retried_and_only_an_excerpt_is_kept(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    queue = await new_queue(client)
    secret = new_secret()
    with receiver(secret, status=500, body=b"x" * 10_000) as hook:
        await client.put_webhook(
            queue.full_name, "flaky", WebhookSpec(hook.url(), secret, allow_hosts=LOCAL)
        )
        task_id = await finished(pool, client, queue)
        await dispatch(pool)
        async with delivering(dsn, pool):
            rows = await wait_for(
                lambda: deliveries_of(pool, task_id),
                lambda rows: rows[0]["state"] == "retrying",
                what="the delivery to wait for a retry",
            )
    error = rows[0]["error"]["message"]
    assert "answered 500: xxx" in error
    assert len(error) < 600


async def test_webhooks_are_managed_by_name(client: Client) -> None:
    queue = await new_queue(client)
    spec = WebhookSpec("https://example.com/h", new_secret(), events=(Event.SUCCEEDED,))
    made = await client.put_webhook(queue.full_name, "h", spec)
    assert made.spec == spec
    changed = await client.put_webhook(
        queue.full_name, "h", WebhookSpec("https://example.com/i", spec.secret)
    )
    assert changed.spec.url == "https://example.com/i"
    assert changed.created_at == made.created_at
    assert [w.name for w in await client.list_webhooks(queue.full_name)] == ["h"]
    assert [w.name for w in await client.list_webhooks(queue.namespace)] == ["h"]
    await client.delete_webhook(queue.full_name, "h")
    with pytest.raises(UnknownWebhookError):
        await client.get_webhook(queue.full_name, "h")
    with pytest.raises(InvalidArgumentError, match="not HTTPS"):
        WebhookSpec("http://example.com/h", spec.secret)
    with pytest.raises(InvalidArgumentError, match="whsec_"):
        WebhookSpec("https://example.com/h", "hunter2")


async def test_the_sql_enqueue_takes_a_callback_url(client: Client, pool: asyncpg.Pool) -> None:
    queue = await new_queue(client)
    task_id = await pool.fetchval(
        "SELECT taskq.enqueue(p_queue => $1, p_task_name => 'x',"
        " p_callback_url => 'https://example.com/cb')",
        queue.full_name,
    )
    assert (
        await pool.fetchval("SELECT callback_url FROM taskq.tasks WHERE id = $1", task_id)
        == "https://example.com/cb"
    )
    # each function names its own argument (as taskq.enqueue's bounds do, migration 0018)
    with pytest.raises(asyncpg.PostgresError, match=r"^enqueue: p_callback_url is not") as raised:
        await pool.fetchval(
            "SELECT taskq.enqueue(p_queue => $1, p_task_name => 'x', p_callback_url => 'nope')",
            queue.full_name,
        )
    assert raised.value.sqlstate == "TQ003"
    with pytest.raises(asyncpg.PostgresError, match=r"^enqueue_many: p_callback_urls\[2\] is"):
        await pool.fetchval(
            "SELECT count(*) FROM taskq.enqueue_many($1, '{x,x}', '{1,2}',"
            " p_callback_urls => ARRAY[NULL, 'ftp://example.com/cb'])",
            queue.full_name,
        )


async def test_a_deployment_needs_nothing_more_than_its_workers(
    client: Client, dsn: str, tmp_path: Path
) -> None:
    """`taskq worker` as a pod runs it: its maintenance dispatches, its second worker delivers
    (TASKQ_WEBHOOKS defaults on), the receiver verifies."""
    queue = await new_queue(client)
    secret = new_secret()
    app = tmp_path / "hooks_app.py"
    app.write_text("import taskq\n\n@taskq.task('charge')\ndef charge(ctx):\n    return 12\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    environment.update(
        TASKQ_DSN=dsn,
        TASKQ_QUEUES=queue.full_name,
        TASKQ_APP="hooks_app",
        TASKQ_METRICS_PORT="0",
        TASKQ_POLL_INTERVAL="0.2",
    )
    with receiver(secret) as hook:
        await client.put_webhook(
            queue.full_name, "billing", WebhookSpec(hook.url(), secret, allow_hosts=LOCAL)
        )
        [task] = await client.enqueue_many(queue.full_name, [TaskRequest("charge", {})])
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskq.cli.main",
            "worker",
            "--path",
            str(tmp_path),
            env=environment,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_for(lambda: asyncio.sleep(0, hook.received), bool, limit=30, what="a POST")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()[-2000:]
    [got] = hook.received
    assert got["event"]["data"]["id"] == task.id
    assert got["event"]["data"]["result"] == 12


async def test_a_delivery_in_flight_does_not_hold_the_stop(
    client: Client, pool: asyncpg.Pool, dsn: str, tmp_path: Path
) -> None:
    """SIGTERM while the delivery worker waits on a receiver that does not answer: `taskq
    worker` exits 0 within the process's shutdown bound (the delivery worker's is no longer),
    and the delivery is given back to be sent again, not left held."""
    queue = await new_queue(client)
    secret = new_secret()
    app = tmp_path / "hooks_stop_app.py"
    app.write_text("import taskq\n\n@taskq.task('charge')\ndef charge(ctx):\n    return 1\n")
    settings = {
        "TASKQ_APP": "hooks_stop_app",
        "TASKQ_LEASE_SECONDS": "6",
        "TASKQ_DB_TIMEOUT": "1",
        "TASKQ_SHUTDOWN_GRACE": "1",
        "TASKQ_POLL_INTERVAL": "0.2",
    }
    bound = shutdown_bound(
        WorkerSettings.model_validate({
            **{k.removeprefix("TASKQ_").lower(): v for k, v in settings.items()},
            "dsn": dsn,
            "queues": [queue.full_name],
        })
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    environment.update(
        settings,
        TASKQ_DSN=dsn,
        TASKQ_QUEUES=queue.full_name,
        TASKQ_METRICS_PORT="0",
    )
    hold = threading.Event()
    with receiver(secret, hold=hold) as hook:
        await client.put_webhook(
            queue.full_name, "slow", WebhookSpec(hook.url(), secret, allow_hosts=LOCAL)
        )
        [task] = await client.enqueue_many(queue.full_name, [TaskRequest("charge", {})])
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskq.cli.main", "worker", "--path", str(tmp_path),
            env=environment, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_for(lambda: asyncio.sleep(0, hook.received), bool, limit=30, what="a POST")
            worker.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            _, err = await asyncio.wait_for(worker.communicate(), bound + 30)
            took = time.monotonic() - sent
        finally:
            hold.set()
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert worker.returncode == 0, err.decode()[-2000:]
    assert took <= bound, f"{took:.1f}s after SIGTERM (bound {bound:.0f}s)"
    [delivery] = await deliveries_of(pool, task.id)
    assert delivery["state"] == "ready"


async def test_the_connection_goes_to_the_address_that_was_checked(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    """DNS rebinding: the name is resolved once, checked, and that address is connected to
    (the name stays in the Host header). Here the name resolves only through the delivery's
    resolver, so reaching the receiver proves the connection used the checked address."""
    queue = await new_queue(client)
    secret = new_secret()
    with receiver(secret) as hook:
        url = f"http://receiver.example:{hook.port}/pinned"
        await client.put_webhook(
            queue.full_name, "pinned", WebhookSpec(url, secret, allow_hosts=("receiver.example",))
        )
        await client.put_webhook(
            queue.full_name, "rebound", WebhookSpec("https://rebound.example/h", secret)
        )
        task_id = await finished(pool, client, queue)
        await dispatch(pool)
        names = {"receiver.example": ["127.0.0.1"], "rebound.example": ["10.0.0.5"]}
        async with delivering(dsn, pool, names):
            await wait_for(lambda: asyncio.sleep(0, hook.received), bool, what="a POST")

            async def rebound() -> Any:
                rows = await deliveries_of(pool, task_id)
                return next(r["state"] for r in rows if r["payload"]["endpoint"] == "rebound")

            await wait_for(rebound, lambda s: s == "dead", what="the rebound delivery dead")
    [got] = hook.received
    assert got["path"] == "/pinned"
    assert got["headers"]["host"] == f"receiver.example:{hook.port}"
