-- Per-task backoff overrides were never settable: no function, query or client path writes
-- tasks.backoff_kind, backoff_base_s or backoff_max_s, so every retry already used its queue's
-- backoff. The columns go (their CHECK task_backoff_kind with them), and retry_at reads the
-- queue's settings alone. Dropping a column changes the catalog only: no partition is rewritten.

CREATE OR REPLACE FUNCTION taskq.retry_at(t taskq.tasks, q taskq.queues) RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    SELECT now() + make_interval(secs => taskq.retry_delay(
        q.backoff_kind, q.backoff_base_s, q.backoff_max_s, q.backoff_jitter, t.attempts))
$$;

ALTER TABLE taskq.tasks
    DROP COLUMN backoff_kind,
    DROP COLUMN backoff_base_s,
    DROP COLUMN backoff_max_s;
