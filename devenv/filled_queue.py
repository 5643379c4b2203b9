"""A queue filled with many tasks at once, as a busy queue holds them after a long time: in id
order (the heap as one filled over time), creation times a hundredth of a second apart, and a
mix of states by id: 40 % succeeded, 10 % each dead, canceled, running and scheduled, 20 %
ready. One task name in seven is "rare"; one task in 1,000 has a correlation id
("order-<n>"). For the task-list plan tests and the list benchmark. And `age_finished`, which
spreads tasks finished through the real path over the past (the dashboard benchmark)."""

from __future__ import annotations

from typing import Final

import asyncpg

# n % 10 -> the state of the n-th task
STATES: Final = [
    "succeeded", "succeeded", "succeeded", "succeeded",
    "dead", "canceled", "running", "scheduled", "ready", "ready",
]  # fmt: skip

FILL = """
INSERT INTO taskq.tasks (queue_id, id, task_name, state, priority, payload, max_attempts,
                         attempts, total_attempts, worker_id, attempt_id, lease_expires_at,
                         error, finished_at, run_at, created_at, correlation_id)
SELECT $1, nextval('taskq.task_id_seq'), CASE WHEN n % 7 = 0 THEN 'rare' ELSE 't' END,
       s.state, 50, jsonb_build_object('n', n), 3,
       CASE WHEN s.state IN ('succeeded', 'dead', 'running') THEN 1 ELSE 0 END,
       CASE WHEN s.state IN ('succeeded', 'dead', 'running') THEN 1 ELSE 0 END,
       CASE WHEN s.state IN ('succeeded', 'running') THEN 'w' END,
       CASE WHEN s.state IN ('succeeded', 'running') THEN gen_random_uuid() END,
       CASE WHEN s.state = 'running' THEN now() + interval '1 hour' END,
       CASE WHEN s.state = 'dead' THEN '{"message": "boom"}'::jsonb END,
       CASE WHEN s.state IN ('succeeded', 'dead', 'canceled') THEN now() END,
       now() + CASE WHEN s.state = 'scheduled' THEN interval '1 day' ELSE '0' END,
       now() - make_interval(secs => ($2 - n) / 100.0),
       CASE WHEN n % 1000 = 0 THEN 'order-' || n END
  FROM generate_series(1, $2) AS n,
       LATERAL (SELECT ($3::text[])[n % 10 + 1] AS state) AS s
 ORDER BY n
"""


async def fill_queue(db: asyncpg.Pool, queue_id: int, count: int) -> None:
    """`count` tasks into the queue, then VACUUM ANALYZE of its partition (visibility map and
    statistics as a queue that autovacuum keeps)."""
    await db.execute(FILL, queue_id, count, STATES, timeout=3600)
    await db.execute(f"VACUUM ANALYZE taskq.tasks_q{int(queue_id)}", timeout=3600)


AGE_FINISHED = """
UPDATE taskq.tasks_q{queue_id} t
   SET finished_at = a.finished_at,
       started_at = a.finished_at - interval '50 milliseconds',
       run_at = a.finished_at - interval '50 milliseconds' - a.wait,
       created_at = a.finished_at - interval '50 milliseconds' - a.wait
  FROM (SELECT id, now() - random() * make_interval(secs => $1) AS finished_at,
               random() * random() * interval '2 seconds' AS wait
          FROM taskq.tasks_q{queue_id} WHERE finished_at IS NOT NULL) a
 WHERE t.id = a.id
"""


async def age_finished(db: asyncpg.Pool, queue_id: int, seconds: float) -> None:
    """Spread the queue's finished tasks (finished through the real claim and complete) over the
    last `seconds`, as a queue busy that long holds them: each started 50 ms before it finished
    and waited up to 2 s before that from due (enqueued)."""
    await db.execute(AGE_FINISHED.format(queue_id=int(queue_id)), seconds, timeout=3600)
