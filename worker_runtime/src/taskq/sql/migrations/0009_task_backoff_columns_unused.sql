-- Per-task backoff overrides were never settable: no function, query or client path writes
-- tasks.backoff_kind, backoff_base_s or backoff_max_s, so every retry already used its queue's
-- backoff. retry_at now reads the queue's settings alone.
--
-- The columns stay, marked unused. Dropping them was measured: with three dropped columns in
-- taskq.tasks, processing fell from 40.4–44.6k to 31.4–35.2k tasks/s and bulk enqueue from
-- ~185k to ~150k rows/s (interleaved `make bench`, 4 pairs), even with new partitions laid out
-- like their parent, dropped attributes included. Three always-NULL columns cost a null-bitmap
-- bit each. Dropping them waits for a layout change that rewrites the table anyway.

CREATE OR REPLACE FUNCTION taskq.retry_at(t taskq.tasks, q taskq.queues) RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    SELECT now() + make_interval(secs => taskq.retry_delay(
        q.backoff_kind, q.backoff_base_s, q.backoff_max_s, q.backoff_jitter, t.attempts))
$$;

COMMENT ON COLUMN taskq.tasks.backoff_kind IS
    'unused since migration 0009 (never written; retries use the queue''s backoff)';
COMMENT ON COLUMN taskq.tasks.backoff_base_s IS
    'unused since migration 0009 (never written; retries use the queue''s backoff)';
COMMENT ON COLUMN taskq.tasks.backoff_max_s IS
    'unused since migration 0009 (never written; retries use the queue''s backoff)';
