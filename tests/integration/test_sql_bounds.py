"""The SQL functions a worker or a maintenance job in any language calls hold the bounds of
taskq/models.py (MAX_PERIOD_SECONDS, MAX_BATCH, and a task's for taskq.enqueue): the largest
value passes, anything past it, NaN, Infinity and NULL are refused naming the argument and the
range (SQLSTATE TQ003), where they used to fail with "interval out of range" or "LIMIT must
not be negative", or, for worker_beat, were stored and then broke every later rescue."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from taskq.models import (
    MAX_BATCH,
    MAX_DELAY_SECONDS,
    MAX_PERIOD_SECONDS,
    MAX_TIMEOUT_SECONDS,
    QueueInfo,
)
from tests.conftest import MakeQueue

# (function, argument, the call with $1 the queue id and $2 the value, highest, open at zero)
_QUEUE_CALLS = [
    ("purge_finished", "p_limit", "SELECT taskq.purge_finished($1, $2::integer)",
     MAX_BATCH, False),
    ("rescue_expired", "p_limit", "SELECT taskq.rescue_expired($1, $2::integer)",
     MAX_BATCH, False),
    ("claim", "p_limit", "SELECT count(*) FROM taskq.claim($1, 'w', $2::integer, 30)",
     MAX_BATCH, False),
    ("claim", "p_lease_s", "SELECT count(*) FROM taskq.claim($1, 'w', 1, $2::float8)",
     MAX_PERIOD_SECONDS, True),
    ("heartbeat", "p_lease_s",
     "SELECT count(*) FROM taskq.heartbeat($1, '{}', '{}', NULL, $2::float8)",
     MAX_PERIOD_SECONDS, True),
    ("dispatch_webhooks", "p_limit", "SELECT taskq.dispatch_webhooks($1, 60, $2::integer)",
     MAX_BATCH, False),
    ("dispatch_webhooks", "p_overlap_s", "SELECT taskq.dispatch_webhooks($1, $2::float8, 1000)",
     MAX_PERIOD_SECONDS, True),
]
# the same, without a queue ($1 unused but given, so every call takes two parameters)
_GLOBAL_CALLS = [
    ("rescue_dead_workers", "p_limit", "SELECT taskq.rescue_dead_workers($2::integer + 0 * $1)",
     MAX_BATCH, False),
    ("take_turn", "p_every_s", "SELECT taskq.take_turn('test_bounds', $2::float8 + 0 * $1)",
     MAX_PERIOD_SECONDS, True),
    ("ask_turn", "p_every_s",
     "SELECT taken FROM taskq.ask_turn('test_bounds', $2::float8 + 0 * $1)",
     MAX_PERIOD_SECONDS, True),
    ("worker_beat", "p_dead_after_s",
     "SELECT rescued FROM taskq.worker_beat('test-bounds-' || $1::integer, $2::float8, 3600)",
     MAX_PERIOD_SECONDS, True),
    ("worker_beat", "p_rescue_every_s",
     "SELECT rescued FROM taskq.worker_beat('test-bounds-' || $1::integer, 3, $2::float8)",
     MAX_PERIOD_SECONDS, True),
    ("worker_beat", "p_beat_every_s",
     "SELECT rescued FROM taskq.worker_beat('test-bounds-' || $1::integer, 3, 3600,"
     " p_beat_every_s => $2::float8)",
     MAX_PERIOD_SECONDS, True),
    ("rescue_dead_workers", "p_grace_s",
     "SELECT taskq.rescue_dead_workers(p_grace_s => $2::float8 + 0 * $1)",
     MAX_PERIOD_SECONDS, False),
]
_CALLS = _QUEUE_CALLS + _GLOBAL_CALLS


def _refused(highest: int, is_integer: bool) -> list[Any]:
    if is_integer:  # an integer argument: no NaN or Infinity reaches it
        return [highest + 1, -1, None]
    return [highest * 10.0, 1e300, float("nan"), float("inf"), float("-inf"), 0.0, None]


@pytest.mark.parametrize(
    ("function", "argument", "call", "highest", "open_at_zero"),
    _CALLS,
    ids=[f"{c[0]}.{c[1]}" for c in _CALLS],
)
async def test_each_bound_argument_is_refused_by_name(
    pool: asyncpg.Pool,
    make_queue: MakeQueue,
    function: str,
    argument: str,
    call: str,
    highest: int,
    open_at_zero: bool,
) -> None:
    queue: QueueInfo = await make_queue()
    is_integer = "::integer" in call
    await pool.fetchval(call, queue.id, highest)  # the bound itself is accepted
    if not open_at_zero:
        await pool.fetchval(call, queue.id, 0)
    for value in _refused(highest, is_integer):
        if value == 0 and (is_integer or not open_at_zero):
            continue
        with pytest.raises(asyncpg.PostgresError) as raised:
            await pool.fetchval(call, queue.id, value)
        message = raised.value.args[0]
        assert raised.value.sqlstate == "TQ003", message
        assert message.startswith(f"{function}: {argument} is "), message
        assert f"{highest} " in message and "give " in message, message


async def test_a_refused_dead_after_is_not_stored(pool: asyncpg.Pool) -> None:
    """A dead-after of 1e300 s used to be stored; every rescue_dead_workers after it failed
    with "timestamp out of range", for every worker of the database."""
    with pytest.raises(asyncpg.PostgresError, match="p_dead_after_s is 1e\\+300"):
        await pool.fetchval("SELECT rescued FROM taskq.worker_beat('poison', 1e300, 86400)")
    assert await pool.fetchval("SELECT count(*) FROM taskq.workers WHERE worker_id = 'poison'") == 0
    await pool.fetchval("SELECT taskq.rescue_dead_workers()")
    with pytest.raises(asyncpg.CheckViolationError, match="worker_dead_after_range"):
        await pool.execute(
            "INSERT INTO taskq.workers (worker_id, dead_after_s) VALUES ('poison', 'NaN')"
        )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ("p_priority => 100000", "enqueue: p_priority is 100000: give 0..100"),
        ("p_priority => -1", "enqueue: p_priority is -1: give 0..100"),
        ("p_delay_s => -5", "enqueue: p_delay_s is -5: give 0.."),
        ("p_delay_s => 1e300", "enqueue: p_delay_s is 1e+300"),
        ("p_delay_s => 'NaN'", "enqueue: p_delay_s is NaN"),
        ("p_delay_s => '-Infinity'", "enqueue: p_delay_s is -Infinity"),
        ("p_max_attempts => 0", "enqueue: p_max_attempts is 0: give 1..1000"),
        ("p_timeout_s => 0", "enqueue: p_timeout_s is 0: give more than 0 and at most"),
        ("p_timeout_s => 'Infinity'", "enqueue: p_timeout_s is Infinity"),
    ],
)
async def test_enqueue_names_its_own_arguments(
    pool: asyncpg.Pool, make_queue: MakeQueue, arguments: str, named: str
) -> None:
    """`taskq.enqueue(p_delay_s => ...)` is refused naming p_delay_s, not the p_delays_s[1] of
    the enqueue_many call it makes; nothing is written."""
    queue = await make_queue()
    with pytest.raises(asyncpg.PostgresError, match=re.escape(named)) as raised:
        await pool.fetchval(f"SELECT taskq.enqueue($1, 't', {arguments})", queue.full_name)
    assert raised.value.sqlstate == "TQ003"
    assert await pool.fetchval(
        "SELECT count(*) FROM taskq.tasks WHERE queue_id = $1", queue.id
    ) == 0


async def test_enqueue_takes_its_bounds(pool: asyncpg.Pool, make_queue: MakeQueue) -> None:
    queue = await make_queue()
    task_id = await pool.fetchval(
        "SELECT taskq.enqueue($1, 't', p_priority => 100, p_delay_s => $2,"
        " p_max_attempts => 1000, p_timeout_s => $3)",
        queue.full_name, float(MAX_DELAY_SECONDS), float(MAX_TIMEOUT_SECONDS),
    )
    row = await pool.fetchrow(
        "SELECT priority, max_attempts, timeout_s FROM taskq.tasks WHERE id = $1", task_id
    )
    assert row is not None
    assert tuple(row) == (100, 1000, MAX_TIMEOUT_SECONDS)
