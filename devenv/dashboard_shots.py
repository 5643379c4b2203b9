"""The dashboard's screenshots in docs/ (`make dashboard-shots`): a throwaway PostgreSQL with a
few queues at work (a worker draining one, dead letters in another, a paused one), `taskq-api`
with the dashboard, and Debian's chromium driven by Playwright, as in its browser tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
from playwright.async_api import ViewportSize, async_playwright

from devenv.api import LocalApi
from devenv.postgres import LocalPostgres
from taskq import TaskContext, task
from taskq.auth import Role
from taskq.client import Client
from taskq.models import QueueSettings
from taskq.store import keys as key_store
from taskq.store.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
STATE = REPO / ".state"
CHROMIUM = os.environ.get("TASKQ_CHROMIUM", "/usr/bin/chromium")


async def _fill(dsn: str) -> int:
    """Queues with something to show; returns a dead task's id."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn)
    assert pool is not None
    client = Client(pool)
    try:
        await client.ensure_queue("shop/emails", QueueSettings(max_attempts=3))
        await client.ensure_queue("shop/payments", QueueSettings(max_attempts=1))
        await client.ensure_queue("media/thumbnails", QueueSettings(concurrency_limit=20))
        await client.ensure_queue("billing/invoices", QueueSettings(paused=True))
        for n in range(40):
            await client.enqueue("billing/invoices", "render_invoice", {"invoice": n})
        for n in range(25):
            await client.enqueue("media/thumbnails", "make_thumbnail", {"image": f"{n}.png"},
                                 delay=600)
        for n in range(300):
            await client.enqueue("shop/emails", "send_receipt", {"order": n},
                                 correlation_id=f"checkout-{n}")
        dead = 0
        for n in range(80):
            made = await client.enqueue(
                "shop/payments", "charge_card", {"order": n, "amount_cents": 1999},
                correlation_id=f"checkout-{n}")
            dead = made.id if n % 4 == 0 else dead
        return dead
    finally:
        await pool.close()


def _worker(dsn: str) -> subprocess.Popen[bytes]:
    """`taskq worker` on the shop queues, with handlers that take a moment (and a failing one)."""
    env = {
        **os.environ, "TASKQ_DSN": dsn, "TASKQ_QUEUES": "shop/emails,shop/payments",
        "TASKQ_APP": "devenv.dashboard_shots", "TASKQ_CONCURRENCY": "4",
        "TASKQ_METRICS_PORT": "0", "PYTHONPATH": str(REPO),
    }
    log = (STATE / "dashboard-shots-worker.log").open("ab")
    return subprocess.Popen([str(Path(sys.executable).parent / "taskq"), "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


async def _shots(api: LocalApi, secret: str, dead: int) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                  args=["--no-sandbox"])
        page = await browser.new_page(viewport=ViewportSize(width=1280, height=400))
        await page.goto(f"{api.url}/dashboard/login")
        await page.get_by_label("API key").fill(secret)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_timeout(3000)  # the worker drains a while; counts arrive live
        await page.screenshot(path=DOCS / "dashboard-overview.png")
        await _spread_over_the_hour(api.env["TASKQ_DSN"])
        await page.set_viewport_size(ViewportSize(width=1280, height=820))
        await page.goto(f"{api.url}/dashboard/queues/shop/payments")
        await page.wait_for_timeout(2500)
        await page.screenshot(path=DOCS / "dashboard-queue.png")
        await page.goto(f"{api.url}/dashboard/tasks/{dead}")
        await page.screenshot(path=DOCS / "dashboard-task.png")
        await browser.close()


def main() -> None:
    STATE.mkdir(exist_ok=True)
    server = LocalPostgres.temporary()
    server.start()
    worker = None
    api = None
    try:
        dead = asyncio.run(_fill(server.dsn))
        secret = asyncio.run(_key(server.dsn))
        worker = _worker(server.dsn)
        api = LocalApi({
            "TASKQ_DSN": server.dsn, "TASKQ_API_DASHBOARD": "true",
            "TASKQ_API_SESSION_SECRET": secrets.token_urlsafe(32),
        }, STATE / "dashboard-shots-api.log")
        api.start()
        asyncio.run(_shots(api, secret, dead))
        print(f"wrote {', '.join(p.name for p in sorted(DOCS.glob('dashboard-*.png')))}")
    finally:
        if api is not None:
            api.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        server.destroy()


async def _spread_over_the_hour(dsn: str) -> None:
    """The payments' outcomes moved back over the last hour, for a chart with a history."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""
            UPDATE taskq.tasks t SET finished_at = t.finished_at - s.back,
                   started_at = t.started_at - s.back, run_at = t.run_at - s.back,
                   created_at = t.created_at - s.back
              FROM (SELECT id, make_interval(secs => random() * 3500) AS back
                      FROM taskq.tasks WHERE finished_at IS NOT NULL) s
             WHERE t.id = s.id AND t.queue_id = (
                   SELECT id FROM taskq.queues WHERE namespace = 'shop' AND name = 'payments')
        """)
        await conn.execute("""
            UPDATE taskq.attempts a SET started_at = t.started_at, finished_at = t.finished_at
              FROM taskq.tasks t WHERE a.task_id = t.id AND t.queue_id = (
                   SELECT id FROM taskq.queues WHERE namespace = 'shop' AND name = 'payments')
        """)
    finally:
        await conn.close()


async def _key(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        _made, secret = await key_store.create_key(conn, "docs", Role.ADMIN, None)
    finally:
        await conn.close()
    return secret


# The worker's handlers (TASKQ_APP=devenv.dashboard_shots).
@task("send_receipt")
async def send_receipt(ctx: TaskContext) -> dict[str, str]:
    await asyncio.sleep(0.1)
    return {"status": "sent"}


@task("charge_card")
async def charge_card(ctx: TaskContext) -> dict[str, str]:
    if ctx.payload["order"] % 4 == 0:
        raise RuntimeError("card declined by the bank (code 51: insufficient funds)")
    return {"charge": f"ch_{ctx.payload['order']}"}


if __name__ == "__main__":
    main()
