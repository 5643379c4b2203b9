-- Tasks by correlation id: GET /v1/tasks?correlation_id= walked the queue's primary key from the
-- newest task down, checking each, and a correlation id names a handful of tasks at most: the
-- walk went through the whole queue (400 ms at 5,000,000 tasks, bench/list_bench.py). Partial:
-- a task without a correlation id costs nothing; one with costs an index entry per row
-- version.

CREATE INDEX tasks_correlation_idx ON taskq.tasks (queue_id, correlation_id, id)
    WHERE correlation_id IS NOT NULL;
