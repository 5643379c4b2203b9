"""A page of GET /v1/tasks (taskq.list_tasks) walks the queue's primary key backwards from the
cursor and reads in proportion to the page, not to the queue: with a state filter, a task-name
filter, and from a cursor deep in the queue. The plan read is that of the function's inner
statement (auto_explain, nested statements), at the function's seventh run on a connection:
past the runs after which a prepared statement may go generic."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from devenv.filled_queue import fill_queue

from taskq.client import Client
from taskq.store import tasks as task_store

TASKS = 50_000
PAGE = 100


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture(scope="module")
async def full_queue(dsn: str) -> AsyncIterator[int]:
    """One queue of TASKS tasks for the module, dropped at its end: its running tasks' leases
    would otherwise expire under later tests, and every maintenance run would rescue them."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    client = Client(pool)
    queue = await client.ensure_queue("list-plan/q")
    await fill_queue(pool, queue.id, TASKS)  # devenv/filled_queue.py: the mix of states
    try:
        yield queue.id
    finally:
        await client.drop_queue("list-plan/q")
        await pool.close()


async def table_pages(pool: asyncpg.Pool, queue_id: int) -> int:
    pages: int = await pool.fetchval(
        "SELECT pg_relation_size(format('taskq.tasks_q%s', $1::int)::regclass) "
        "/ current_setting('block_size')::int",
        queue_id,
    )
    return pages


RUNS = 7  # a plan cache tries a generic plan from the sixth run of a statement


async def explain(pool: asyncpg.Pool, queue_id: int, **filters: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE of list_tasks's inner statement as the store runs it, with its
    parameters, at its RUNS-th run on one connection."""
    plans: list[dict[str, Any]] = []
    page: dict[str, Any] = {
        "state": None,
        "task_name": None,
        "correlation_id": None,
        "created_after": None,
        "created_before": None,
        "before_id": None,
        "limit": PAGE + 1,
        **filters,
    }

    def collect(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message or ""
        if "plan:" in text:
            document = json.loads(text.split("plan:", 1)[1])
            # the function's page statement (not its call, its argument check, or others)
            if "FROM taskq.task_details" in document["Query Text"]:
                plans.append(document["Plan"])

    async with pool.acquire() as conn:
        await conn.execute("LOAD 'auto_explain'")
        settings = {
            "auto_explain.log_min_duration": "0",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_buffers": "on",
            "auto_explain.log_format": "json",
            "auto_explain.log_nested_statements": "on",
        }
        for name, value in settings.items():
            await conn.execute(f"SET {name} = '{value}'")
        for _ in range(RUNS - 1):
            await task_store.list_tasks(conn, queue_id, **page)
        conn.add_log_listener(collect)
        try:
            await conn.execute("SET client_min_messages = log")
            await task_store.list_tasks(conn, queue_id, **page)
            await conn.execute("SELECT 1")  # the notices are delivered by then
        finally:
            conn.remove_log_listener(collect)
            await conn.execute("RESET client_min_messages")
            for name in settings:
                await conn.execute(f"RESET {name}")
    assert len(plans) == 1, f"{len(plans)} inner plans logged"
    return plans[0]


async def middle_id(pool: asyncpg.Pool, queue_id: int) -> int:
    value: int = await pool.fetchval(
        "SELECT id FROM taskq.tasks WHERE queue_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
        queue_id,
        TASKS // 2,
    )
    return value


@pytest.mark.parametrize(
    ("filters", "matching"),
    [
        ({}, 1.0),
        ({"state": "dead"}, 0.1),
        ({"state": "succeeded"}, 0.4),
        ({"task_name": "rare"}, 1 / 7),
        ({"state": "ready", "task_name": "rare"}, 0.2 / 7),
    ],
    ids=["unfiltered", "state-dead", "state-succeeded", "task-name", "state-and-task-name"],
)
@pytest.mark.parametrize("deep", [False, True], ids=["first-page", "cursor-mid-queue"])
async def test_a_page_walks_the_primary_key_in_proportion_to_the_page(
    pool: asyncpg.Pool,
    full_queue: int,
    filters: dict[str, Any],
    matching: float,
    deep: bool,
) -> None:
    if deep:
        filters = {**filters, "before_id": await middle_id(pool, full_queue)}
    await check_page(pool, full_queue, filters, matching)


async def check_page(
    pool: asyncpg.Pool, queue_id: int, filters: dict[str, Any], matching: float
) -> None:
    plan = await explain(pool, queue_id, **filters)
    plan_nodes = list(nodes(plan))
    # (the queues table, one row per queue, is read by whichever way the planner likes)
    seq_scans = [
        n["Relation Name"]
        for n in plan_nodes
        if n["Node Type"] == "Seq Scan" and n["Relation Name"].startswith("tasks")
    ]
    assert not seq_scans, f"a sequential scan of {seq_scans}"
    assert not [n for n in plan_nodes if n["Node Type"] == "Sort"], "a sort of the matches"
    scans = [n for n in plan_nodes if n.get("Relation Name", "").startswith("tasks_q")]
    assert len(scans) == 1, [n["Node Type"] for n in plan_nodes]
    [scan] = scans
    assert scan["Node Type"] == "Index Scan", scan["Node Type"]
    assert scan["Index Name"].endswith("pkey"), scan["Index Name"]
    assert scan["Scan Direction"] == "Backward"
    assert plan["Actual Rows"] == PAGE + 1
    # rows walked: the page over the share that matches, and a little slack
    walked = scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
    assert walked <= 1.5 * (PAGE + 1) / matching + 10, walked
    # pages read: a small part of the partition
    pages = await table_pages(pool, queue_id)
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert buffers < pages / 4, (buffers, pages)
    print(
        f"{filters}: {walked} rows walked, {buffers} buffers "
        f"of {pages} table pages, {plan['Actual Total Time']:.2f} ms"
    )


@pytest.mark.parametrize("deep", [False, True], ids=["first-page", "cursor-mid-queue"])
async def test_a_correlation_id_reads_its_own_tasks_only(
    pool: asyncpg.Pool, full_queue: int, deep: bool
) -> None:
    """One task in 1,000 has a correlation id, each its own: the page walks that id's index
    entries, not the queue down to the bottom looking for a full page."""
    wanted = TASKS // 2 // 1000 * 1000  # a task in the middle of the queue
    filters: dict[str, Any] = {"correlation_id": f"order-{wanted}"}
    if deep:
        filters["before_id"] = await middle_id(pool, full_queue) + 1000
    plan = await explain(pool, full_queue, **filters)
    plan_nodes = list(nodes(plan))
    scans = [n for n in plan_nodes if n.get("Relation Name", "").startswith("tasks_q")]
    assert [n.get("Index Name", "") for n in scans] == [
        f"tasks_q{full_queue}_queue_id_correlation_id_id_idx"
    ], [n["Node Type"] for n in plan_nodes]
    assert plan["Actual Rows"] == 1
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < 20
