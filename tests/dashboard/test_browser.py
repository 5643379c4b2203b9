"""The dashboard in a real browser: Debian's chromium (never a browser downloaded by a tool),
driven by Playwright, against the real server and PostgreSQL, and a real worker draining a
queue. Screenshots of each page go to .state/test-output/dashboard/."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import (
    Browser,
    Dialog,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from taskq import TaskContext
from taskq.client import Client
from taskq.models import PoolReport, ScalingDecision
from taskq.store.pools import forget_worker_pool, record_worker_pool
from taskq.worker.registry import Registry
from tests.conftest import MakeQueue
from tests.dashboard.conftest import MakeKey
from tests.integration.helpers import claim, finish, make_due, running_worker

CHROMIUM = os.environ.get("TASKQ_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / ".state" / "test-output" / "dashboard"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no browser at {CHROMIUM}: `apt-get install chromium` (make test does)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    opened = await context.new_page()
    yield opened
    await context.close()


async def sign_in(page: Page, dashboard_url: str, secret: str) -> None:
    await page.goto(f"{dashboard_url}/dashboard/")
    await expect(page).to_have_url(re.compile(r"/dashboard/login"))
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Queues")).to_be_visible()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


async def test_sign_in_watch_a_worker_drain_a_queue_live_and_sign_out(
    page: Page, dashboard_url: str, dsn: str, make_key: MakeKey, make_queue: MakeQueue,
    client: Client,
) -> None:
    queue = await make_queue()
    for n in range(12):
        await client.enqueue(queue.full_name, "slow", n)
    await sign_in(page, dashboard_url, await make_key("operator", [queue.namespace]))
    ready = page.locator(f'tr[data-queue="{queue.full_name}"] [data-count="ready"]')
    await expect(ready).to_have_text("12")
    await expect(page.locator(".live-text")).to_contain_text("Live")
    await shot(page, "overview")
    await page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    registry = Registry()

    @registry.task("slow")
    async def slow(ctx: TaskContext) -> None:
        await asyncio.sleep(0.4)

    async with running_worker(dsn, registry, [queue.full_name], concurrency=2):
        await expect(ready).not_to_have_text("12", timeout=15_000)
        await expect(ready).to_have_text("0", timeout=30_000)
    succeeded = page.locator(
        f'tr[data-queue="{queue.full_name}"] [data-count="succeeded-per-minute"]'
    )
    await expect(succeeded).to_have_text("12", timeout=10_000)
    assert await page.evaluate("window.sameDocument") is True
    await page.get_by_role("link", name=queue.full_name).click()
    await expect(page.locator("#throughput figcaption")).to_contain_text("12 succeeded and 0 dead")
    await shot(page, "queue")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text("Signed out.")
    await shot(page, "login")
    await page.goto(f"{dashboard_url}/dashboard/")
    await expect(page).to_have_url(re.compile(r"/dashboard/login"))


async def test_filter_tasks_then_open_one_and_its_attempts(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue,
    client: Client, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=2)
    failing = await client.enqueue(queue.full_name, "charge", {"order": 2})
    for _attempt in range(2):
        (claimed,) = await claim(pool, queue, limit=1)
        await finish(pool, claimed, "failed", error={"type": "CardDeclined", "message": "no"})
        await make_due(pool, failing.id)
    await client.enqueue(queue.full_name, "send_receipt", {"order": 1}, correlation_id="c-1")
    await sign_in(page, dashboard_url, await make_key("viewer", [queue.namespace]))

    await page.get_by_role("link", name="Tasks").click()
    await page.get_by_label("Queue").select_option(queue.full_name)
    await page.get_by_label("State").select_option("dead")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("table.tasks tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("charge")
    await shot(page, "tasks")

    await rows.first.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=f"Task {failing.id}")).to_be_visible()
    attempts = page.locator("ol.timeline li")
    await expect(attempts).to_have_count(2)
    await expect(attempts.first).to_contain_text("failed")
    await expect(attempts.first).to_contain_text("CardDeclined: no")
    await expect(page.locator("#payload-hidden")).to_be_visible()  # a viewer without payloads
    await expect(page.get_by_role("button", name="Retry task")).to_have_count(0)
    await shot(page, "task")


async def test_search_by_error_text_then_cancel_the_selected_and_retry_all_matching(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue,
    client: Client, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    dead = []
    for message in ("coupon 50% off refused", "coupon 500 off refused"):
        task = await client.enqueue(queue.full_name, "charge", None)
        (claimed,) = await claim(pool, queue, limit=1)
        await finish(pool, claimed, "failed", error={"type": "CardDeclined", "message": message})
        dead.append(task.id)
    waiting = [(await client.enqueue(queue.full_name, "t", None)).id for _ in range(3)]
    await sign_in(page, dashboard_url, await make_key("operator", [queue.namespace]))

    await page.get_by_role("link", name="Tasks").click()
    await page.get_by_label("Queue").select_option(queue.full_name)
    await page.get_by_label("Error text").fill("50% OFF")  # literally, in any case
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("table.tasks tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(str(dead[0]))
    await shot(page, "tasks-error-search")

    await page.get_by_label("Error text").fill("")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(5)
    await page.get_by_label(f"Select task {waiting[0]}").check()
    await page.get_by_label(f"Select task {waiting[2]}").check()
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("button", name="Cancel selected").click()
    await expect(page.get_by_role("status")).to_have_text("Canceled 2 tasks.")
    assert asked == ["Cancel the 2 selected tasks? Waiting tasks are canceled at once; running "
                     "ones are asked to stop."]
    states = [(await client.get_task(i)).state for i in waiting]
    assert states == ["canceled", "ready", "canceled"]

    await page.get_by_label("State").select_option("dead")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(2)
    await page.get_by_role("button", name="Retry all matching").click()
    await expect(page.get_by_text("Retry the 2 tasks matching this search?")).to_be_visible()
    await shot(page, "tasks-bulk-confirm")
    await page.get_by_role("button", name="Yes, go ahead").click()
    await expect(page.get_by_role("status")).to_have_text("Retried 2 dead tasks.")
    assert [(await client.get_task(i)).state for i in dead] == ["ready", "ready"]
    await expect(page.get_by_label("State")).to_have_value("dead")  # back on the same search
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("No task matches")


async def test_replay_a_dead_task_and_cancel_a_running_one_after_confirming(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue,
    client: Client, pool: asyncpg.Pool,
) -> None:
    queue = await make_queue(max_attempts=1)
    dead = await client.enqueue(queue.full_name, "t", {"n": 1})
    (claimed,) = await claim(pool, queue, limit=1)
    await finish(pool, claimed, "failed")
    running = await client.enqueue(queue.full_name, "t", {"n": 2})
    (claimed_running,) = await claim(pool, queue, limit=1)
    await sign_in(page, dashboard_url, await make_key("operator", [queue.namespace]))

    await page.goto(f"{dashboard_url}/dashboard/queues/{queue.full_name}")
    await expect(page.locator("table.dead tbody tr")).to_have_count(1)
    await shot(page, "queue-dead-letters")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name=f"Replay task {dead.id}").click()
    await expect(page.get_by_role("status")).to_have_text("Replayed 1 dead task.")
    assert (await client.get_task(dead.id)).state == "ready"

    await page.goto(f"{dashboard_url}/dashboard/tasks/{running.id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_role("button", name="Cancel task").click()
    await page.wait_for_timeout(300)
    assert not (await client.get_task(running.id)).cancel_requested  # dismissed: nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Cancel task").click()
    await expect(page.get_by_role("status")).to_contain_text(
        f"Task {running.id} asked to stop (it is running)."
    )
    assert (await client.get_task(running.id)).cancel_requested

    # its worker stops it: the page follows, without a reload, and offers no cancel any more
    await page.evaluate("window.sameDocument = true")
    await finish(pool, claimed_running, "canceled")
    await expect(page.locator('[data-field="state"]')).to_have_text("canceled", timeout=10_000)
    await expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    assert await page.evaluate("window.sameDocument") is True


async def test_a_viewer_sees_no_action_and_the_server_refuses_one(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", None)
    await sign_in(page, dashboard_url, await make_key("viewer", [queue.namespace]))

    await page.goto(f"{dashboard_url}/dashboard/queues/{queue.full_name}")
    await expect(page.get_by_role("heading", name=f"Queue {queue.full_name}")).to_be_visible()
    assert await page.get_by_role("button", name="Pause").count() == 0
    await page.goto(f"{dashboard_url}/dashboard/tasks/{task.id}")
    assert await page.get_by_role("button", name="Cancel task").count() == 0

    # the form a viewer never sees, posted from the page with its own session and token
    status = await page.evaluate(
        """async (path) => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const body = new URLSearchParams({csrf, confirmed: 'yes'});
            return (await fetch(path, {method: 'POST', body})).status;
        }""",
        f"/dashboard/queues/{queue.full_name}/pause",
    )
    assert status == 403
    assert not (await client.get_queue(queue.full_name)).settings.paused

    # the search offers a viewer no bulk action, and the server refuses a forged one
    await page.goto(f"{dashboard_url}/dashboard/tasks?queue={queue.full_name}")
    await expect(page.locator("table.tasks tbody tr")).to_have_count(1)
    assert await page.get_by_role("checkbox").count() == 0
    assert await page.get_by_role("button", name="Cancel all matching").count() == 0
    status = await page.evaluate(
        """async (queue) => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const body = new URLSearchParams(
                {csrf, confirmed: 'yes', all: 'yes', search: 'queue=' + queue});
            return (await fetch('/dashboard/tasks/cancel', {method: 'POST', body})).status;
        }""",
        queue.full_name,
    )
    assert status == 403
    assert (await client.get_task(task.id)).state == "ready"


async def test_keyboard_and_phone_width(
    browser: Browser, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue,
    client: Client,
) -> None:
    queue = await make_queue()
    task = await client.enqueue(queue.full_name, "t", {"a": 1}, correlation_id="phone")
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    try:
        await sign_in(page, dashboard_url, await make_key("operator", [queue.namespace]))
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Enter")
        await page.goto(f"{dashboard_url}/dashboard/?namespace={queue.namespace}")
        link = page.get_by_role("link", name=queue.full_name)
        await link.focus()
        await client.enqueue(queue.full_name, "t", None)  # its row is swapped for a new one
        ready = page.locator(f'tr[data-queue="{queue.full_name}"] [data-count="ready"]')
        await expect(ready).to_have_text("2")
        await expect(link).to_be_focused()  # the same link in the new row
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name=f"Queue {queue.full_name}")).to_be_visible()
        for path, name in ((f"/dashboard/?namespace={queue.namespace}", "overview-phone"),
                           (f"/dashboard/tasks/{task.id}", "task-phone")):
            await page.goto(f"{dashboard_url}{path}")
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (path, overflow)  # wide tables scroll inside their box
            await shot(page, name)
    finally:
        await context.close()


async def test_submit_a_task_whose_json_is_checked_before_it_is_sent(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    await sign_in(page, dashboard_url, await make_key("operator", [queue.namespace]))
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST"
            else None)

    await page.get_by_role("link", name="Submit").click()
    await page.get_by_label("Queue").select_option(queue.full_name)
    await page.get_by_label("Task name").fill("send_receipt")
    payload = page.get_by_label("Payload (JSON)")
    await payload.fill('{"order": 42,}')
    await page.get_by_role("button", name="Submit").click()
    message = await payload.evaluate("field => field.validationMessage")
    assert message.startswith("Payload: not JSON"), message
    assert posts == []  # nothing was sent
    await shot(page, "submit")

    await payload.fill('{"order": 42}')
    await page.get_by_role("button", name="Submit").click()
    await expect(page.get_by_role("status")).to_contain_text("Enqueued task")
    task_id = int(page.url.rsplit("/", 1)[1])
    assert (await client.get_task(task_id)).payload == {"order": 42}


async def test_an_admin_makes_a_key_sees_its_secret_once_and_revokes_it(
    page: Page, dashboard_url: str, make_key: MakeKey, pool: asyncpg.Pool,
) -> None:
    await sign_in(page, dashboard_url, await make_key("admin", None))
    name = f"browser-{id(page) % 100000}"

    await page.get_by_role("link", name="Keys").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Role").select_option("viewer")
    await page.get_by_label("Namespaces", exact=True).fill("shop")
    await page.get_by_role("button", name="Make the key").click()
    secret = page.get_by_label(f"Secret of {name}")
    assert (await secret.input_value()).startswith("tq_")
    await shot(page, "keys")

    await page.get_by_role("link", name="Keys").click()
    await expect(page.get_by_label(f"Secret of {name}")).to_have_count(0)  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name=f"Revoke {name}").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Revoked the key {name}")
    assert await pool.fetchval(
        "SELECT revoked_at IS NOT NULL FROM taskq.api_keys WHERE name = $1", name)


async def test_the_queue_page_shows_the_pools_serving_it_and_follows_their_replicas(
    page: Page, dashboard_url: str, make_key: MakeKey, make_queue: MakeQueue, client: Client,
    pool: asyncpg.Pool,
) -> None:
    queue = await make_queue()
    for n in range(4):
        await client.enqueue(queue.full_name, "t", {"n": n})
    for task in await claim(pool, queue, limit=4):
        await finish(pool, task, "succeeded")
    serving = PoolReport(
        namespace=queue.namespace, name="resizers", queues=(queue.name,), autoscaling="Builtin",
        min_replicas=0, max_replicas=5, desired=3, replicas=3, ready=1,
    )
    woke = ScalingDecision(
        at=datetime.now(UTC), from_replicas=0, to_replicas=3, reason="WakeFromZero",
        message="15 tasks (ready 15 + running 0) at 5 per replica need 3; waking from zero",
    )
    await record_worker_pool(client.pool, serving, [woke])
    try:
        await sign_in(page, dashboard_url, await make_key("viewer", [queue.namespace]))
        # the overview's row has its last hour drawn
        await page.goto(f"{dashboard_url}/dashboard/?namespace={queue.namespace}")
        spark = page.get_by_role("img", name=f"{queue.full_name}: last 61 minutes")
        await expect(spark).to_be_visible()
        await expect(spark).to_have_accessible_name(re.compile("4 succeeded, 0 dead"))

        await page.goto(f"{dashboard_url}/dashboard/queues/{queue.full_name}")
        await expect(page.get_by_role("heading", name="Worker pools")).to_be_visible()
        await expect(
            page.get_by_role("heading", name=f"{queue.namespace}/resizers")
        ).to_be_visible()
        decisions = page.get_by_role("table", name=re.compile("last decisions for resizers"))
        await expect(decisions.get_by_role("row")).to_have_count(2)
        await expect(decisions).to_contain_text("0 → 3")
        await expect(decisions).to_contain_text("WakeFromZero")
        wait = page.get_by_role("img", name=re.compile("Wait from due to start"))
        await expect(wait).to_be_visible()
        replicas = page.locator('[data-pool="replicas"]')
        await expect(replicas).to_have_text("1 ready of 3, 3 desired")
        await shot(page, "queue-pools")

        # the operator records the pods becoming ready and a scale up: the page follows
        grew = woke.model_copy(update={
            "at": datetime.now(UTC), "from_replicas": 3, "to_replicas": 5, "reason": "ScaleUp",
        })
        await record_worker_pool(
            client.pool, serving.model_copy(update={"desired": 5, "ready": 3}), [grew]
        )
        await expect(replicas).to_have_text("3 ready of 3, 5 desired")
        await expect(decisions.get_by_role("row")).to_have_count(3)
        await expect(decisions.get_by_role("row").nth(1)).to_contain_text("ScaleUp")
    finally:
        await forget_worker_pool(client.pool, queue.namespace, "resizers")
