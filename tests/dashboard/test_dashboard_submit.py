"""Submitting a task by form; over real sockets, on the real server and database."""

from __future__ import annotations

import html

import httpx

from taskq.client import Client
from tests.conftest import MakeQueue
from tests.dashboard.conftest import MakeKey, sign_in


async def test_a_submitted_task_is_enqueued_as_the_form_says(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    assert queue.full_name in (await web.get("/dashboard/submit")).text

    sent = await web.post("/dashboard/submit", data={
        "csrf": csrf, "queue": queue.full_name, "task_name": "send_receipt",
        "payload": '{"order": 42, "lines": [1, 2]}', "priority": "high", "delay_seconds": "60",
        "idempotency_key": "receipt-42", "correlation_id": "checkout-7",
    })

    assert sent.status_code == 303
    task_id = int(sent.headers["location"].rsplit("/", 1)[1])
    assert f"Enqueued task {task_id}." in (await web.get(sent.headers["location"])).text
    task = await client.get_task(task_id)
    assert (task.queue, task.task_name, task.payload, task.priority, task.state) == (
        queue.full_name, "send_receipt", {"order": 42, "lines": [1, 2]}, 75, "scheduled")
    assert (task.idempotency_key, task.correlation_id) == ("receipt-42", "checkout-7")


async def test_bad_input_is_named_by_its_field_and_the_form_keeps_what_was_typed(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    csrf = await sign_in(web, await make_key("operator", [queue.namespace]))
    good = {"csrf": csrf, "queue": queue.full_name, "task_name": "t", "payload": "{}"}

    for change, message in (
        ({"payload": '{"order": 42,}'}, "Payload: not JSON (Expecting property name enclosed "
                                        "in double quotes at line 1 column 14)"),
        ({"delay_seconds": "soon"}, "Delay: 'soon' is not a number of seconds"),
        ({"priority": "asap"}, "Priority: 'asap'"),
        ({"task_name": ""}, "Task name: required"),
        ({"queue": ""}, "Queue: choose a queue"),
    ):
        refused = await web.post("/dashboard/submit", data={**good, **change})
        assert refused.status_code == 422, change
        text = html.unescape(refused.text)
        assert message in text, (change, text)
    kept = await web.post("/dashboard/submit", data={**good, "payload": "[1,", "task_name": "x1"})
    assert 'value="x1"' in kept.text
    assert "[1,</textarea>" in kept.text
    assert await client.list_tasks(queue.full_name, limit=10) == []


async def test_a_viewer_may_not_submit(
    web: httpx.AsyncClient, make_key: MakeKey, make_queue: MakeQueue, client: Client,
) -> None:
    queue = await make_queue()
    csrf = await sign_in(web, await make_key("viewer", [queue.namespace]))

    assert ">Submit</a>" not in (await web.get("/dashboard/")).text
    assert "may not enqueue" in (await web.get("/dashboard/submit")).text
    refused = await web.post("/dashboard/submit", data={
        "csrf": csrf, "queue": queue.full_name, "task_name": "t", "payload": "{}"})
    assert refused.status_code == 403
    assert await client.list_tasks(queue.full_name, limit=10) == []
