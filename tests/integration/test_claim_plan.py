"""The claim stays on its index and reads in proportion to the batch, not the backlog or the
finished history. Plans are captured from the real taskq.claim function with auto_explain,
whose output reaches this client as log messages."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from taskq import TaskRequest
from taskq.claim_order import ResumePoint
from taskq.client import Client
from taskq.store.types import Connection
from tests.conftest import MakeQueue

# TASKQ_CLAIM_PLAN_BACKLOG runs the tests at another depth (docs/benchmarks.md: 10,000,000)
BACKLOG = int(os.environ.get("TASKQ_CLAIM_PLAN_BACKLOG", "60000"))
HISTORY = 60_000
BATCH = 100
CHUNK = 100_000  # tasks per enqueue_many: a deep backlog is not built in one list


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def claim_plans(
    conn: Connection, queue_id: int, resume: ResumePoint | None = None
) -> list[dict[str, Any]]:
    """The plans of every statement one claim of BATCH tasks ran, buffers included."""
    messages: list[str] = []

    def listener(_conn: object, message: object) -> None:
        messages.append(str(message))

    conn.add_log_listener(listener)
    await conn.execute("LOAD 'auto_explain'")
    for setting in (
        "log_min_duration = 0",
        "log_analyze = on",
        "log_buffers = on",
        "log_nested_statements = on",
        "log_format = json",
    ):
        await conn.execute(f"SET auto_explain.{setting}")
    await conn.execute("SET client_min_messages = log")
    claimed = await conn.fetch(
        "SELECT * FROM taskq.claim($1, 'plan-test', $2, 30, true, $3, $4, $5)",
        queue_id,
        BATCH,
        None if resume is None else resume.priority,
        None if resume is None else resume.run_at,
        0 if resume is None else resume.id,
    )
    await conn.execute("RESET client_min_messages")
    conn.remove_log_listener(listener)
    assert len(claimed) == BATCH
    plans = []
    for message in messages:
        start = message.find("{")
        if start >= 0:
            plans.append(json.loads(message[start:]))
    return plans


@pytest.fixture
async def big_queue(client: Client, pool: asyncpg.Pool, make_queue: MakeQueue) -> int:
    queue = await make_queue()
    await client.enqueue_many(queue.full_name, [TaskRequest("t", {"n": n}) for n in range(HISTORY)])
    # a large finished history: these tasks all succeeded long ago
    await pool.execute(
        "UPDATE taskq.tasks SET state = 'succeeded', finished_at = now() - interval '1 hour', "
        "worker_id = 'w', attempt_id = gen_random_uuid(), total_attempts = 1 WHERE queue_id = $1",
        queue.id,
    )
    for start in range(0, BACKLOG, CHUNK):
        await client.enqueue_many(
            queue.full_name,
            [TaskRequest("t", {"n": n}) for n in range(start, min(start + CHUNK, BACKLOG))],
        )
    await pool.execute("ANALYZE taskq.tasks")
    return queue.id


async def test_claim_walks_the_ready_index_in_proportion_to_the_batch(
    pool: asyncpg.Pool, big_queue: int
) -> None:
    async with pool.acquire() as conn:
        plans = await claim_plans(conn, big_queue)
    claim = next(p for p in plans if "state = 'running'" in p["Query Text"])
    plan_nodes = list(nodes(claim["Plan"]))
    assert not [n for n in plan_nodes if n["Node Type"] == "Seq Scan"], "a sequential scan"
    # the only sort orders the claimed batch itself, never the backlog
    assert all(n["Actual Rows"] <= BATCH for n in plan_nodes if n["Node Type"] == "Sort")
    ready_scans = [n for n in plan_nodes if n.get("Index Name", "").endswith("run_at_id_idx")]
    assert ready_scans, [n.get("Index Name") for n in plan_nodes]
    assert ready_scans[0]["Actual Rows"] <= 2 * BATCH
    updated = [n for n in plan_nodes if n.get("Index Name", "").endswith("pkey")]
    assert updated and updated[0]["Actual Rows"] == BATCH
    # pages read stay in proportion to the batch, whatever the backlog and history
    assert claim["Plan"]["Shared Hit Blocks"] + claim["Plan"]["Shared Read Blocks"] < 40 * BATCH


async def test_due_task_promotion_is_an_index_probe(pool: asyncpg.Pool, big_queue: int) -> None:
    async with pool.acquire() as conn:
        plans = await claim_plans(conn, big_queue)
    promote = next(
        p
        for p in plans
        if "state = 'ready'" in p["Query Text"]
        and "UPDATE" in p["Query Text"]
        and "'scheduled'" in p["Query Text"]
    )
    plan_nodes = list(nodes(promote["Plan"]))
    assert not [n for n in plan_nodes if n["Node Type"] == "Seq Scan"]
    assert sum(n.get("Actual Rows", 0) for n in plan_nodes if "Index Name" in n) == 0
