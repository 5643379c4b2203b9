"""Producing tasks: single and bulk, transactional, idempotent, validated."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from taskq import (
    InvalidArgumentError,
    PayloadTooLargeError,
    Priority,
    TaskRequest,
    UnknownQueueError,
)
from taskq.client import Client
from taskq.correlation import current_correlation_id
from tests.conftest import MakeQueue


async def test_enqueue_sets_defaults_from_the_queue(client: Client, make_queue: MakeQueue) -> None:
    queue = await make_queue(max_attempts=7, default_priority=60)
    result = await client.enqueue(queue.full_name, "send", {"to": "a@example.com"})
    task = await client.get_task(result.id)
    assert result.created
    assert (task.state, task.priority, task.max_attempts) == ("ready", 60, 7)
    assert task.payload == {"to": "a@example.com"}
    assert task.queue == queue.full_name


async def test_named_priorities_and_delays(client: Client, make_queue: MakeQueue) -> None:
    queue = await make_queue()
    urgent = await client.enqueue(queue.full_name, "t", priority="urgent")
    later = await client.enqueue(queue.full_name, "t", priority=Priority.LOW, delay=60)
    assert (await client.get_task(urgent.id)).priority == 100
    delayed = await client.get_task(later.id)
    assert (delayed.state, delayed.priority) == ("scheduled", 25)
    assert (delayed.run_at - delayed.created_at).total_seconds() == pytest.approx(60, abs=1)


async def test_bulk_enqueue_returns_ids_in_input_order(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    requests = [TaskRequest("t", {"n": n}) for n in range(12_000)]  # spans several chunks
    results = await client.enqueue_many(queue.full_name, requests)
    assert len({r.id for r in results}) == 12_000
    for n in (0, 5_000, 11_999):
        assert (await client.get_task(results[n].id)).payload == {"n": n}
    assert (await client.queue_stats(queue.full_name, cap=20_000)).ready == 12_000


async def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        single = await client.enqueue(queue.full_name, "t", connection=conn)
        await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 10, connection=conn)
        await transaction.rollback()
    stats = await client.queue_stats(queue.full_name)
    assert stats.ready == 0
    assert await pool.fetchval("SELECT count(*) FROM taskq.tasks WHERE id = $1", single.id) == 0


async def test_enqueue_inside_a_committed_transaction_exists(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1")  # the caller's own work
        await client.enqueue(queue.full_name, "t", connection=conn)
    assert (await client.queue_stats(queue.full_name)).ready == 1


async def test_idempotency_key_returns_the_existing_task(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await client.enqueue(queue.full_name, "t", {"v": 1}, idempotency_key="order-1")
    again = await client.enqueue(queue.full_name, "t", {"v": 2}, idempotency_key="order-1")
    mixed = await client.enqueue_many(queue.full_name, [
        TaskRequest("t", idempotency_key="order-2"),
        TaskRequest("t", idempotency_key="order-1"),
        TaskRequest("t", idempotency_key="order-2"),
        TaskRequest("t"),
    ])
    assert again.id == first.id and not again.created
    assert [r.created for r in mixed] == [True, False, False, True]
    assert mixed[1].id == first.id and mixed[2].id == mixed[0].id
    assert (await client.get_task(first.id)).payload == {"v": 1}


async def test_idempotency_key_is_free_again_once_the_task_finished(
    client: Client, pool: asyncpg.Pool, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    first = await client.enqueue(queue.full_name, "t", idempotency_key="k")
    await client.cancel(first.id)
    second = await client.enqueue(queue.full_name, "t", idempotency_key="k")
    assert second.created and second.id != first.id


async def test_concurrent_enqueues_of_one_key_make_one_task(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    results = await asyncio.gather(*(
        client.enqueue(queue.full_name, "t", {"n": n}, idempotency_key="race") for n in range(40)
    ))
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert (await client.queue_stats(queue.full_name)).ready == 1


async def test_oversized_payload_is_refused_naming_the_limit(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue(payload_limit_bytes=1024)
    with pytest.raises(PayloadTooLargeError, match="over the queue's limit of 1024 bytes"):
        await client.enqueue(queue.full_name, "t", {"blob": "x" * 2000})
    await client.enqueue(queue.full_name, "t", {"blob": "x" * 500})


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (TaskRequest("t", {1, 2}), "tasks[0].payload"),
        (TaskRequest("t", float("nan")), "tasks[0].payload"),
        (TaskRequest(""), "tasks[0].task_name"),
        (TaskRequest("t", priority="highest"), "tasks[0].priority"),
        (TaskRequest("t", priority=101), "tasks[0].priority"),
        (TaskRequest("t", delay=-1), "tasks[0].delay"),
        (TaskRequest("t", delay=1e300), "tasks[0].delay"),
        (TaskRequest("t", delay=float("inf")), "tasks[0].delay"),
        (TaskRequest("t", timeout=float("inf")), "tasks[0].timeout"),
        (TaskRequest("t", timeout=float("nan")), "tasks[0].timeout"),
        (TaskRequest("t", timeout=31 * 86_400), "tasks[0].timeout"),
        (TaskRequest("t", max_attempts=0), "tasks[0].max_attempts"),
        (TaskRequest("t", idempotency_key="k" * 300), "tasks[0].idempotency_key"),
    ],
)
async def test_invalid_requests_name_the_field(
    client: Client, make_queue: MakeQueue, request_: TaskRequest, field: str
) -> None:
    queue = await make_queue()
    with pytest.raises(InvalidArgumentError) as raised:
        await client.enqueue_many(queue.full_name, [request_])
    assert raised.value.field == field


async def test_unknown_and_invalid_queue_names(client: Client) -> None:
    with pytest.raises(UnknownQueueError, match="create it first"):
        await client.enqueue("nobody/here", "t")
    with pytest.raises(InvalidArgumentError, match="NAMESPACE/NAME"):
        await client.enqueue("no-slash", "t")
    with pytest.raises(InvalidArgumentError, match="queue namespace"):
        await client.enqueue("Bad_NS/q", "t")


async def test_sql_function_enqueues_for_any_language(
    pool: asyncpg.Pool, client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    task_id = await pool.fetchval(
        "SELECT taskq.enqueue($1, 'from_sql', '{\"k\": 1}', p_priority => 90)", queue.full_name
    )
    task = await client.get_task(task_id)
    assert (task.task_name, task.payload, task.priority) == ("from_sql", {"k": 1}, 90)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ("p_priorities => '{50,100000}'", "p_priorities[2] is 100000: give 0..100"),
        ("p_priorities => '{-1,50}'", "p_priorities[1] is -1"),
        ("p_delays_s => '{0,-5}'", "p_delays_s[2] is -5"),
        ("p_delays_s => '{0,1e300}'", "p_delays_s[2] is 1e+300"),
        ("p_delays_s => '{0,NaN}'", "p_delays_s[2] is NaN"),
        ("p_delays_s => '{0,Infinity}'", "p_delays_s[2] is Infinity"),
        ("p_max_attempts => '{1,0}'", "p_max_attempts[2] is 0"),
        ("p_timeouts_s => '{1,0}'", "p_timeouts_s[2] is 0"),
        ("p_timeouts_s => '{1,Infinity}'", "p_timeouts_s[2] is Infinity"),
    ],
)
async def test_the_sql_door_refuses_what_the_client_refuses_naming_the_argument(
    pool: asyncpg.Pool, make_queue: MakeQueue, arguments: str, named: str
) -> None:
    """enqueue_many names the array and the position (taskq.enqueue's own names are in
    test_sql_bounds.py); nothing of the batch is written."""
    queue = await make_queue()
    with pytest.raises(asyncpg.PostgresError, match=re.escape(named)) as raised:
        await pool.fetch(
            "SELECT * FROM taskq.enqueue_many($1, '{t,t}', ARRAY['{}', '{}']::json[],"
            f" {arguments})",
            queue.full_name,
        )
    assert raised.value.sqlstate == "TQ003"
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1", queue.id
    ) == 0


async def test_bulk_copy_applies_priorities_delays_and_queue_defaults(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue(default_priority=40, max_attempts=4)
    requests = [TaskRequest("t", {"n": n}) for n in range(100)]
    requests[10] = TaskRequest("t", priority="urgent", max_attempts=9, timeout=5.0)
    requests[20] = TaskRequest("t", delay=30, correlation_id="batch-1")
    results = await client.enqueue_many(queue.full_name, requests)  # large enough for COPY
    plain, urgent, delayed = [await client.get_task(results[n].id) for n in (0, 10, 20)]
    assert (plain.state, plain.priority, plain.max_attempts) == ("ready", 40, 4)
    assert (urgent.priority, urgent.max_attempts) == (100, 9)
    assert (delayed.state, delayed.correlation_id) == ("scheduled", "batch-1")
    assert (delayed.run_at - delayed.created_at).total_seconds() == pytest.approx(30, abs=1)
    stats = await client.queue_stats(queue.full_name)
    assert (stats.ready, stats.scheduled) == (99, 1)


async def test_plain_bulk_copy_takes_the_defaults_of_the_columns_it_leaves_out(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue(timeout_seconds=45)
    results = await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 100)
    rows = await client.pool.fetch(
        "SELECT run_at = created_at AS due_now, timeout_s, correlation_id, state "
        "FROM taskq.tasks WHERE id = ANY($1)", [r.id for r in results])
    assert {tuple(r) for r in rows} == {(True, None, None, "ready")}


async def test_bulk_copy_inherits_the_correlation_id_of_the_running_task(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue()
    token = current_correlation_id.set("order-7")
    try:
        results = await client.enqueue_many(queue.full_name, [TaskRequest("t")] * 100)
    finally:
        current_correlation_id.reset(token)
    tasks = [await client.get_task(r.id) for r in (results[0], results[-1])]
    assert [t.correlation_id for t in tasks if t] == ["order-7", "order-7"]


async def test_bulk_with_one_oversized_payload_enqueues_nothing(
    client: Client, make_queue: MakeQueue
) -> None:
    queue = await make_queue(payload_limit_bytes=1000)
    requests = [TaskRequest("t", {"n": n}) for n in range(200)]
    requests[150] = TaskRequest("t", {"blob": "é" * 600})  # 1,200 bytes in UTF-8
    with pytest.raises(PayloadTooLargeError, match="task 151 is 1211 bytes"):
        await client.enqueue_many(queue.full_name, requests)
    assert (await client.queue_stats(queue.full_name)).ready == 0


async def test_bulk_into_an_unknown_queue(client: Client) -> None:
    with pytest.raises(UnknownQueueError):
        await client.enqueue_many("nobody/here", [TaskRequest("t")] * 100)
