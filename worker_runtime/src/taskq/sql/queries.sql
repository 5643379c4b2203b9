-- Named queries of the taskq client and worker. Each starts with "-- name: NAME".
-- Parameters are positional ($1...); no value is ever formatted into SQL text. Each is named
-- where it is used, so reading a query takes no counting: SQL functions are called in named
-- notation (p_queue_id => $1, which PostgreSQL checks against the function), other parameters
-- are compared with or assigned to a column, or named in a "-- $n" comment line; a unit test
-- (tests/unit/test_sqlfiles.py) holds every query to that. The functions: schema.sql.

-- name: ensure_queue
-- $3: the settings as JSON, keyed by column (QueueSettings.to_columns())
SELECT * FROM taskq.ensure_queue(p_namespace => $1, p_name => $2, p_settings => $3::jsonb)

-- name: drop_queue
SELECT taskq.drop_queue(p_namespace => $1, p_name => $2) AS dropped

-- name: get_queue
SELECT * FROM taskq.queues WHERE namespace = $1 AND name = $2

-- name: list_queues
SELECT * FROM taskq.queues ORDER BY namespace, name

-- name: queue_stats
SELECT * FROM taskq.queue_stats(p_queue_id => $1, p_cap => $2)

-- name: queue_throughput
-- Tasks of a queue that finished succeeded or dead in each whole minute from $2's minute to the
-- current one, oldest first (migration 0024: one range of tasks_finished_idx per outcome).
SELECT minute, succeeded, dead FROM taskq.queue_throughput(p_queue_id => $1, p_since => $2)

-- name: queue_throughput_minutes
-- queue_throughput over the last $2 whole minutes and the current one, by the database's clock.
SELECT minute, succeeded, dead
  FROM taskq.queue_throughput(p_queue_id => $1,
                              p_since => now() - make_interval(mins => $2::int))

-- name: queue_wait
-- The wait (due to start) of succeeded tasks per minute of finishing over the last $2 whole
-- minutes and the current one, from at most $3 tasks a minute (migration 0024).
SELECT minute, sampled, p50_s, p95_s
  FROM taskq.queue_wait(p_queue_id => $1, p_since => now() - make_interval(mins => $2::int),
                        p_sample => $3)

-- name: record_worker_pool
-- A WorkerPool as the operator sees it, with its new scaling decisions (newest first).
SELECT taskq.record_worker_pool(
       p_namespace => $1, p_name => $2, p_queues => $3, p_autoscaling => $4,
       p_min_replicas => $5, p_max_replicas => $6, p_desired => $7, p_replicas => $8,
       p_ready => $9, p_decisions => $10::jsonb)

-- name: forget_worker_pool
DELETE FROM taskq.worker_pools WHERE namespace = $1 AND name = $2

-- name: worker_pools_serving
-- The pools that serve queue $1/$2, by name.
SELECT namespace, name, queues, autoscaling, min_replicas, max_replicas, desired, replicas,
       ready, decisions, updated_at
  FROM taskq.worker_pools
 WHERE namespace = $1 AND $2 = ANY(queues)
 ORDER BY name

-- name: learn_types
-- The types of these queries that asyncpg has no codec of its own for (arrays of scalars): it
-- looks each up once per connection (store/codecs.py, learn_types)
SELECT NULL::integer[] AS integers, NULL::bigint[] AS bigints,
       NULL::double precision[] AS doubles, NULL::json[] AS jsons, NULL::uuid[] AS uuids

-- name: schema_version
-- readiness: the database answers and the taskq schema is installed (the newest migration)
SELECT max(version) AS version FROM taskq.schema_migrations

-- name: enqueue_many
SELECT ord, id, created
  FROM taskq.enqueue_many(
       p_queue => $1, p_task_names => $2, p_payloads => $3::json[], p_priorities => $4,
       p_delays_s => $5, p_idempotency_keys => $6, p_max_attempts => $7, p_timeouts_s => $8,
       p_correlation_ids => $9, p_callback_urls => $10, p_traceparent => $11)

-- name: enqueue_details
-- One task, as enqueue_many's arrays of one: whether it was created, and the task.
SELECT e.created, (e.task).*
  FROM taskq.enqueue_details(
       p_queue => $1, p_task_names => $2, p_payloads => $3::json[], p_priorities => $4,
       p_delays_s => $5, p_idempotency_keys => $6, p_max_attempts => $7, p_timeouts_s => $8,
       p_correlation_ids => $9, p_callback_urls => $10, p_traceparent => $11) AS e

-- name: find_task_queue
-- The queue holding a task (NULL: no such task), one partition locked at a time (migration
-- 0021). A CALL outside a transaction block only: it commits after each partition it probes.
CALL taskq.find_task_queue(p_task_id => $1, p_queue_id => NULL)

-- name: task_queue_in_transaction
-- find_task_queue inside a transaction block, which a procedure cannot commit: the partitions
-- probed, newest queue first, stay locked until the transaction ends.
SELECT taskq.task_queue_among(
           p_task_id => $1, p_queue_ids => ARRAY(SELECT q.id FROM taskq.queues q ORDER BY q.id DESC)
       ) AS queue_id

-- name: get_task
SELECT * FROM taskq.get_task(p_queue_id => $1, p_task_id => $2)

-- name: queue_tasks_by_id
-- $1 queue name, $2 task ids: those tasks of the queue
SELECT * FROM taskq.queue_tasks_by_id(p_queue => $1, p_ids => $2)

-- name: task_attempts
SELECT attempt, attempt_id::text AS attempt_id, worker_id, started_at, finished_at, outcome, error
  FROM taskq.task_attempts(p_queue_id => $1, p_task_id => $2) ORDER BY attempt

-- name: list_tasks
-- One page of a queue's tasks, newest first (migration 0022): $2 state, $3 task name, $4
-- correlation id (NULL: any), $5 created at or after, $6 created before (a half-open window),
-- $7 the id to start below (a cursor; the largest bigint for the first page), $8 how many.
SELECT * FROM taskq.list_tasks(
       p_queue_id => $1, p_state => $2, p_task_name => $3, p_correlation_id => $4,
       p_created_after => $5, p_created_before => $6, p_before_id => $7, p_limit => $8)

-- name: list_tasks_by_error
-- list_tasks' page of tasks whose error text contains $9 (a plain substring, any case), walking
-- at most $10 tasks (migration 0031): the matches, and a last row with walked_to set (its task
-- columns NULL) when the walk stopped at $10 before filling the page.
SELECT s.walked_to, (s.task).* FROM taskq.list_tasks_by_error(
       p_queue_id => $1, p_state => $2, p_task_name => $3, p_correlation_id => $4,
       p_created_after => $5, p_created_before => $6, p_before_id => $7, p_limit => $8,
       p_error => $9, p_walk => $10) s

-- name: cancel_many
-- these tasks of the queue canceled (waiting) or asked to stop (running), 1,000 at most
SELECT canceled, asked, already, finished, missing
  FROM taskq.cancel_many(p_queue_id => $1, p_ids => $2::bigint[])

-- name: retry_many
-- these dead tasks of the queue back to ready; ids that are not dead tasks are left alone
SELECT replayed, skipped FROM taskq.replay_dead(p_queue_id => $1, p_ids => $2::bigint[])

-- name: cancel_task
SELECT state, cancel_requested FROM taskq.cancel(p_queue_id => $1, p_task_id => $2)

-- name: list_dead
-- the most recently dead first
SELECT * FROM taskq.list_dead(p_queue_id => $1, p_limit => $2)

-- name: task_states_locked
-- the state of each task id that is in the queue, locked until the transaction ends (a replay
-- checks them, then replays them)
SELECT id, state FROM taskq.task_states_locked(p_queue_id => $1, p_ids => $2::bigint[])

-- name: replay_dead
SELECT replayed, skipped FROM taskq.replay_dead(p_queue_id => $1, p_ids => $2)

-- name: claim
SELECT id, task_name, payload, priority, attempt, attempt_id, max_attempts, timeout_s,
       correlation_id, idempotency_key, created_at, run_at
  FROM taskq.claim(p_queue_id => $1, p_worker_id => $2, p_limit => $3, p_lease_s => $4,
                   p_promote => $5, p_resume_priority => $6, p_resume_at => $7,
                   p_resume_id => $8)

-- name: complete
SELECT id, state
  FROM taskq.complete(p_queue_id => $1, p_worker_id => $2, p_outcome => $3, p_ids => $4,
                      p_attempt_ids => $5, p_details => $6::jsonb)

-- name: heartbeat
SELECT id, cancel_requested
  FROM taskq.heartbeat(p_queue_id => $1, p_ids => $2, p_attempt_ids => $3,
                       p_progress => $4::jsonb, p_lease_s => $5)

-- name: release
SELECT taskq.release(p_queue_id => $1, p_worker_id => $2, p_ids => $3, p_attempt_ids => $4)
       AS released

-- name: rescue_expired
SELECT taskq.rescue_expired(p_queue_id => $1, p_limit => $2) AS rescued

-- name: purge_finished
SELECT taskq.purge_finished(p_queue_id => $1, p_limit => $2) AS purged

-- name: queue_for_copy
-- The queue's defaults for a bulk COPY, and the transaction's clock (the same now() the SQL
-- functions would use) to place delayed tasks.
SELECT id, default_priority, max_attempts, payload_limit_bytes, now() AS now
  FROM taskq.queues WHERE namespace = $1 AND name = $2

-- name: reserve_task_ids
-- $1: how many ids
SELECT array_agg(nextval('taskq.task_id_seq')) AS ids FROM generate_series(1, $1)

-- name: notify_ready
-- Tasks became ready in queue $1, none before priority $2 and run_at $3 in claim order.
SELECT taskq.notify_ready($1, $2, $3)

-- name: wake_queue
-- $1: the queue id, as text. Wakes the queue's idle workers; nothing became ready behind them.
SELECT pg_notify('taskq_ready', $1)

-- name: next_run_in
SELECT taskq.next_run_in(p_queue_id => $1)

-- name: release_orphans
SELECT taskq.release_orphans(p_queue_id => $1, p_worker_id => $2, p_known => $3) AS released

-- name: worker_beat
-- rescued: tasks of dead workers given back (when this period's rescue turn was this beat's);
-- pollers: the workers polling the least served of $4's queues (NULL: not counted yet);
-- gone_queue_ids: those of $4 that no longer exist (dropped, perhaps provisioned again)
SELECT rescued, pollers, gone_queue_ids
  FROM taskq.worker_beat(p_worker_id => $1, p_dead_after_s => $2, p_rescue_every_s => $3,
                         p_queue_ids => $4, p_beat_every_s => $5)

-- name: worker_gone
SELECT taskq.worker_gone(p_worker_id => $1)

-- name: ask_turn
-- $1 duty, $2 its period (s): taken (for exactly one caller per period across the database),
-- else seconds until the next turn is free (NULL: a duty the database does not know yet), and
-- how many processes ask (the beating workers, as the last winner counted them; NULL: never)
SELECT taken, free_in, askers FROM taskq.ask_turn(p_duty => $1, p_every_s => $2)

-- name: add_duty
-- $1 duty: a maintenance service's row in taskq.duties, made on its first turn
INSERT INTO taskq.duties (name) VALUES ($1) ON CONFLICT (name) DO NOTHING

-- name: maintained_queues
-- Every queue of the database: maintenance covers them all, whoever runs it.
SELECT id, namespace || '/' || name AS name FROM taskq.queues ORDER BY id

-- name: create_api_key
-- $1 name, $2 prefix, $3 digest (SHA-256 of the whole key, never the key), $4 role,
-- $5 namespaces (NULL: all), $6 reads_payloads, $7 seconds until it expires (NULL: never)
INSERT INTO taskq.api_keys (name, prefix, digest, role, namespaces, reads_payloads, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7::float8))
RETURNING id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at,
          revoked_at, last_used_at, declared_by

-- name: get_api_key
SELECT id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at, revoked_at,
       last_used_at, declared_by
  FROM taskq.api_keys WHERE name = $1

-- name: list_api_keys
-- every key, revoked and expired ones included; never a digest
SELECT id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at, revoked_at,
       last_used_at, declared_by
  FROM taskq.api_keys ORDER BY name

-- name: revoke_api_key
-- no row: no such key, or it was already revoked
UPDATE taskq.api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
RETURNING id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at,
          revoked_at, last_used_at, declared_by

-- name: declare_api_key
-- A key a Kubernetes object declares (migration 0012). $1 name, $2 prefix, $3 digest, $4 role,
-- $5 namespaces (NULL: all), $6 reads_payloads, $7 expires_at (NULL: never), $8 declared_by
INSERT INTO taskq.api_keys
       (name, prefix, digest, role, namespaces, reads_payloads, expires_at, declared_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at,
          revoked_at, last_used_at, declared_by

-- name: declared_api_key
-- the unrevoked key an object declares, with its digest: the operator compares the key in the
-- object's Secret with it
SELECT id, name, prefix, digest, role, namespaces, reads_payloads, created_at, expires_at,
       revoked_at, last_used_at, declared_by
  FROM taskq.api_keys WHERE declared_by = $1 AND revoked_at IS NULL

-- name: set_api_key_grants
-- no row: the key was revoked meanwhile
UPDATE taskq.api_keys
   SET role = $2, namespaces = $3, reads_payloads = $4, expires_at = $5
 WHERE id = $1 AND revoked_at IS NULL
RETURNING id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at,
          revoked_at, last_used_at, declared_by

-- name: revoke_declared_api_key
-- no row: the object declares no unrevoked key
UPDATE taskq.api_keys SET revoked_at = now() WHERE declared_by = $1 AND revoked_at IS NULL
RETURNING id, name, prefix, role, namespaces, reads_payloads, created_at, expires_at,
          revoked_at, last_used_at, declared_by

-- name: api_key_by_prefix
-- The key a request names, with its digest to compare (in Python, in constant time) and the
-- database clock to judge its expiry by.
SELECT id, name, prefix, digest, role, namespaces, reads_payloads, created_at, expires_at,
       revoked_at, last_used_at, declared_by, now() AS now
  FROM taskq.api_keys WHERE prefix = $1

-- name: api_key_used
-- $2: seconds since the last record under which this one is skipped (another request, maybe
-- of another process, recorded it); no row when skipped
UPDATE taskq.api_keys SET last_used_at = now()
 WHERE id = $1
   AND (last_used_at IS NULL OR last_used_at <= now() - make_interval(secs => $2::float8))
RETURNING last_used_at

-- name: database_now
SELECT now() AS now

-- name: create_schedule
-- A new schedule; no row when (namespace, name) is taken.
-- $1 namespace, $2 name, $3 queue, $4 task_name, $5 payload, $6 priority, $7 cron,
-- $8 time_zone, $9 suspend, $10 concurrency_policy, $11 starting_deadline_s,
-- $12 max_missed_runs, $13 next_run_at (the first tick from now)
INSERT INTO taskq.schedules AS s
       (namespace, name, queue, task_name, payload, priority, cron, time_zone, suspend,
        concurrency_policy, starting_deadline_s, max_missed_runs, next_run_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (namespace, name) DO NOTHING
RETURNING s.*

-- name: put_schedule
-- Create or update. The next tick moves only when what decides it changed (cron, time zone) or
-- the schedule resumes: an unchanged schedule re-declared keeps its place.
-- $1 namespace, $2 name, $3 queue, $4 task_name, $5 payload, $6 priority, $7 cron,
-- $8 time_zone, $9 suspend, $10 concurrency_policy, $11 starting_deadline_s,
-- $12 max_missed_runs, $13 next_run_at (the first tick from now)
INSERT INTO taskq.schedules AS s
       (namespace, name, queue, task_name, payload, priority, cron, time_zone, suspend,
        concurrency_policy, starting_deadline_s, max_missed_runs, next_run_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (namespace, name) DO UPDATE
   SET queue = EXCLUDED.queue, task_name = EXCLUDED.task_name, payload = EXCLUDED.payload,
       priority = EXCLUDED.priority, cron = EXCLUDED.cron, time_zone = EXCLUDED.time_zone,
       suspend = EXCLUDED.suspend, concurrency_policy = EXCLUDED.concurrency_policy,
       starting_deadline_s = EXCLUDED.starting_deadline_s,
       max_missed_runs = EXCLUDED.max_missed_runs,
       next_run_at = CASE
           WHEN s.cron <> EXCLUDED.cron OR s.time_zone <> EXCLUDED.time_zone
             OR (s.suspend AND NOT EXCLUDED.suspend) THEN EXCLUDED.next_run_at
           ELSE s.next_run_at END,
       updated_at = now()
RETURNING s.*

-- name: get_schedule
SELECT * FROM taskq.schedules WHERE namespace = $1 AND name = $2

-- name: list_schedules
-- $1: a namespace, or NULL for all
SELECT * FROM taskq.schedules
 WHERE $1::text IS NULL OR namespace = $1
 ORDER BY namespace, name

-- name: set_schedule_suspended
-- $3: suspend or resume. Resuming starts from the next tick from now ($4): ticks while
-- suspended are not run.
UPDATE taskq.schedules AS s
   SET suspend = $3,
       next_run_at = CASE WHEN s.suspend AND NOT $3 THEN $4 ELSE s.next_run_at END,
       updated_at = now()
 WHERE namespace = $1 AND name = $2
RETURNING s.*

-- name: delete_schedule
DELETE FROM taskq.schedules WHERE namespace = $1 AND name = $2 RETURNING id

-- name: due_schedules
-- $1: now (the database's clock, or a test's); $2: the most schedules to return
SELECT id FROM taskq.schedules
 WHERE NOT suspend AND next_run_at <= $1
 ORDER BY next_run_at
 LIMIT $2

-- name: lock_due_schedule
-- The schedule if it is still due at $2 (now) and no other scheduler holds it.
SELECT * FROM taskq.schedules
 WHERE id = $1 AND NOT suspend AND next_run_at <= $2
   FOR UPDATE SKIP LOCKED

-- name: task_state
-- A schedule's last task, looked for in the schedule's queue ($1 namespace, $2 queue name): the
-- queue's id and the task's state (NULL once purged); no row once the queue is gone.
SELECT q.id AS queue_id, taskq.task_state(p_queue_id => q.id, p_task_id => $3) AS state
  FROM taskq.queues q WHERE q.namespace = $1 AND q.name = $2

-- name: record_schedule_pass
-- $2 the next tick, $3 the latest tick enqueued and $4 its task, $5 the latest tick skipped
-- and $6 why ($3 to $6 NULL: unchanged)
UPDATE taskq.schedules
   SET next_run_at = $2,
       last_schedule_time = coalesce($3, last_schedule_time),
       last_task_id = coalesce($4, last_task_id),
       last_skipped_time = coalesce($5, last_skipped_time),
       last_skipped_reason = CASE WHEN $5 IS NULL THEN last_skipped_reason ELSE $6 END,
       last_error = NULL,
       updated_at = now()
 WHERE id = $1

-- name: record_schedule_error
-- The pass could not enqueue: its ticks stay due, retried on the next pass.
UPDATE taskq.schedules SET last_error = $2, updated_at = now() WHERE id = $1

-- name: task_traceparents
-- The traceparents of tasks a worker claimed (only a tracing worker asks).
SELECT id, traceparent FROM taskq.task_traceparents(p_queue_id => $1, p_ids => $2::bigint[])

-- name: put_webhook
-- Create or update a queue's endpoint (docs/webhooks.md). An update keeps created_at: tasks
-- finished before the endpoint existed are never announced to it.
-- $1 namespace, $2 queue, $3 name, $4 url (NULL: the tasks' own callback URLs), $5 events,
-- $6 secret, $7 allow_hosts, $8 declared_by (NULL: made by hand)
INSERT INTO taskq.webhooks AS w
       (namespace, queue, name, url, events, secret, allow_hosts, declared_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (namespace, queue, name) DO UPDATE
   SET url = EXCLUDED.url, events = EXCLUDED.events, secret = EXCLUDED.secret,
       allow_hosts = EXCLUDED.allow_hosts, declared_by = EXCLUDED.declared_by,
       updated_at = now()
RETURNING w.*

-- name: get_webhook
SELECT * FROM taskq.webhooks WHERE namespace = $1 AND queue = $2 AND name = $3

-- name: list_webhooks
-- $1 namespace and $2 queue, each NULL for all
SELECT * FROM taskq.webhooks
 WHERE ($1::text IS NULL OR namespace = $1) AND ($2::text IS NULL OR queue = $2)
 ORDER BY namespace, queue, name

-- name: delete_webhook
DELETE FROM taskq.webhooks WHERE namespace = $1 AND queue = $2 AND name = $3 RETURNING id

-- name: delete_declared_webhooks
-- The webhooks $1 (e.g. TaskQueue shop/orders) declared on queue $2/$3, but those named in
-- $4: what a TaskQueue's spec no longer lists.
DELETE FROM taskq.webhooks
 WHERE declared_by = $1 AND namespace = $2 AND queue = $3 AND name <> ALL($4::text[])
RETURNING name

-- name: delivery_webhook
-- What a delivery needs of its endpoint, read when it is made (so a rotated secret or a
-- changed allow-list applies to retries): the queue's webhook named $3, or with $3 NULL the
-- queue's signer of callbacks (the row without url).
SELECT url, secret, allow_hosts FROM taskq.webhooks
 WHERE namespace = $1 AND queue = $2
   AND (CASE WHEN $3::text IS NULL THEN url IS NULL ELSE name = $3 END)

-- name: webhook_queues
-- The queues the Dispatcher has work in: those with endpoints, and those that were given a
-- task with a callback URL (enqueue_many made their scan row). Never a scan of taskq.tasks:
-- without a queue id it would plan, and lock, every queue's partition and its indexes.
SELECT q.id, q.namespace || '/' || q.name AS name
  FROM taskq.queues q
 WHERE q.namespace <> 'taskq-system'
   AND (EXISTS (SELECT 1 FROM taskq.webhooks w
                 WHERE w.namespace = q.namespace AND w.queue = q.name AND w.url IS NOT NULL)
        OR EXISTS (SELECT 1 FROM taskq.webhook_scans s WHERE s.queue_id = q.id))
 ORDER BY q.id

-- name: dispatch_webhooks
SELECT taskq.dispatch_webhooks(p_queue_id => $1, p_overlap_s => $2, p_limit => $3)
       AS dispatched

-- name: webhook_queue
-- The delivery queue's id, made if missing
SELECT taskq.webhook_queue() AS id
