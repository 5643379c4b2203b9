-- Named queries of the taskq client and worker. Each starts with "-- name: NAME".
-- Parameters are positional ($1...); no value is ever formatted into SQL text.

-- name: provision_queue
SELECT taskq.provision_queue($1, $2) AS id

-- name: configure_queue
UPDATE taskq.queues
   SET default_priority = $2, max_attempts = $3, backoff_kind = $4, backoff_base_s = $5,
       backoff_max_s = $6, backoff_jitter = $7, timeout_s = $8, payload_limit_bytes = $9,
       retention_succeeded_s = $10, retention_dead_s = $11, rate_limit_per_s = $12,
       rate_burst = $13, concurrency_limit = $14, paused = $15,
       -- a changed rate limit starts from a full bucket
       rate_tokens = CASE WHEN rate_limit_per_s IS DISTINCT FROM $12 THEN NULL ELSE rate_tokens END
 WHERE id = $1

-- name: drop_queue
SELECT taskq.drop_queue($1, $2) AS dropped

-- name: get_queue
SELECT * FROM taskq.queues WHERE namespace = $1 AND name = $2

-- name: list_queues
SELECT * FROM taskq.queues ORDER BY namespace, name

-- name: queue_stats
SELECT * FROM taskq.queue_stats($1)

-- name: enqueue_many
SELECT ord, id, created FROM taskq.enqueue_many($1, $2, $3::json[], $4, $5, $6, $7, $8, $9)

-- name: get_task
SELECT * FROM taskq.task_details WHERE id = $1

-- name: task_attempts
SELECT attempt, attempt_id::text AS attempt_id, worker_id, started_at, finished_at, outcome, error
  FROM taskq.attempt_history WHERE task_id = $1 ORDER BY attempt

-- name: cancel_task
SELECT state, cancel_requested FROM taskq.cancel($1)

-- name: list_dead
SELECT * FROM taskq.task_details
 WHERE queue_id = $1 AND state = 'dead'
 ORDER BY finished_at DESC, id DESC
 LIMIT $2

-- name: replay_dead
SELECT replayed, skipped FROM taskq.replay_dead($1, $2)

-- name: claim
SELECT id, task_name, payload, priority, attempt, attempt_id, max_attempts, timeout_s,
       correlation_id, idempotency_key, created_at
  FROM taskq.claim($1, $2, $3, $4, $5)

-- name: complete
SELECT id, state FROM taskq.complete($1, $2, $3, $4, $5, $6::jsonb)

-- name: heartbeat
SELECT id, cancel_requested FROM taskq.heartbeat($1, $2, $3, $4::jsonb, $5)

-- name: release
SELECT taskq.release($1, $2, $3, $4) AS released

-- name: rescue_expired
SELECT taskq.rescue_expired($1, $2) AS rescued

-- name: purge_finished
SELECT taskq.purge_finished($1, $2) AS purged

-- name: queue_for_copy
-- The queue's defaults for a bulk COPY, and the transaction's clock (the same now() the SQL
-- functions would use) to place delayed tasks.
SELECT id, default_priority, max_attempts, payload_limit_bytes, now() AS now
  FROM taskq.queues WHERE namespace = $1 AND name = $2

-- name: reserve_task_ids
SELECT array_agg(nextval('taskq.task_id_seq')) AS ids FROM generate_series(1, $1)

-- name: notify_ready
SELECT pg_notify('taskq_ready', $1)

-- name: next_run_in
SELECT taskq.next_run_in($1)

-- name: release_orphans
SELECT taskq.release_orphans($1, $2, $3) AS released

-- name: worker_beat
SELECT taskq.worker_beat($1, $2, $3) AS rescued

-- name: worker_gone
SELECT taskq.worker_gone($1)
