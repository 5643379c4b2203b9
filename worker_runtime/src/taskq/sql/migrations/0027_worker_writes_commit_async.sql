-- The worker's frequent writes commit asynchronously whatever the session says (issue 16: a
-- thousand workers through PgBouncer's transaction pooling).
--
-- A worker's own sessions set synchronous_commit = off (docs/design.md, "Durability of the
-- worker's writes"): a write lost in a crash only means a task runs again, which
-- at-least-once delivery allows, and not waiting for a WAL flush per batch is worth about
-- 15% of throughput on a durable server, and a flush a second per worker for the beats.
-- Through transaction pooling the worker cannot set it per session (PgBouncer refuses the
-- startup parameter, and each transaction may run on another server connection), so the
-- functions it calls per task or per second set it for their own transaction: claim,
-- complete, heartbeat and worker_beat. Other callers of them get the same (a claim, an outcome
-- or a beat lost in a crash is repeated). Enqueues stay synchronous.
--
-- set_config(..., is_local => true) lasts until the transaction ends, so the commit sees it.
-- A SET clause on the function (ALTER FUNCTION ... SET synchronous_commit = off) would not:
-- it is undone when the function returns, before the commit (measured: one WAL flush per
-- call). Apart from that line each body is as its last migration left it (claim, heartbeat:
-- 0018; complete: 0025; worker_beat: 0023).

CREATE OR REPLACE FUNCTION taskq.claim(p_queue_id integer, p_worker_id text, p_limit integer, p_lease_s double precision, p_promote boolean DEFAULT true, p_resume_priority smallint DEFAULT NULL::smallint, p_resume_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_resume_id bigint DEFAULT 0) RETURNS TABLE(id bigint, task_name text, payload jsonb, priority smallint, attempt integer, attempt_id uuid, max_attempts integer, timeout_s double precision, correlation_id text, idempotency_key text, created_at timestamp with time zone, run_at timestamp with time zone)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    v_queue taskq.queues;
    v_n integer := p_limit;
    v_running integer;
    v_tokens double precision;
    v_claimed integer;
    -- the walk reads what comes after (-priority, run_at, id) in claim order; NULL: the front
    v_from_priority smallint := CASE WHEN p_resume_at IS NOT NULL THEN p_resume_priority END;
    v_from_at timestamptz := CASE WHEN p_resume_priority IS NOT NULL THEN p_resume_at END;
    v_from_id bigint := coalesce(p_resume_id, 0);
    v_promoted_priority smallint;
    v_promoted_at timestamptz;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM taskq.require_range('claim', 'p_limit', p_limit, 0, 100000, 'tasks');
    PERFORM taskq.require_range('claim', 'p_lease_s', p_lease_s, 0, 86400, 'seconds',
                                p_low_open => true);
    SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = p_queue_id;
    IF v_queue.id IS NULL OR v_queue.paused OR p_limit <= 0 THEN
        RETURN;
    END IF;
    IF v_queue.concurrency_limit IS NOT NULL OR v_queue.rate_limit_per_s IS NOT NULL THEN
        -- limited queues claim one worker at a time so the limits hold across workers
        SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = p_queue_id FOR UPDATE;
        IF v_queue.concurrency_limit IS NOT NULL THEN
            SELECT count(*) INTO v_running FROM taskq.tasks t
             WHERE t.queue_id = p_queue_id AND t.state = 'running';
            v_n := least(v_n, v_queue.concurrency_limit - v_running);
        END IF;
        IF v_queue.rate_limit_per_s IS NOT NULL THEN
            -- the bucket holds rate_burst tokens (default: one second's worth) and starts full
            v_tokens := least(
                coalesce(v_queue.rate_burst, greatest(v_queue.rate_limit_per_s, 1)),
                coalesce(v_queue.rate_tokens, v_queue.rate_burst,
                         greatest(v_queue.rate_limit_per_s, 1))
                    + v_queue.rate_limit_per_s
                      * extract(epoch FROM now() - coalesce(v_queue.rate_refilled_at, now())));
            v_n := least(v_n, floor(v_tokens)::integer);
        END IF;
        IF v_n <= 0 THEN
            IF v_queue.rate_limit_per_s IS NOT NULL THEN
                UPDATE taskq.queues q SET rate_tokens = v_tokens, rate_refilled_at = now()
                 WHERE q.id = p_queue_id;
            END IF;
            RETURN;
        END IF;
    END IF;

    -- Delayed and retrying tasks whose time has come become ready first; the walk starts no
    -- later than the first of them in claim order, so that this claim takes them.
    IF p_promote THEN
        WITH promoted AS (
            UPDATE taskq.tasks t SET state = 'ready'
             WHERE t.queue_id = p_queue_id AND t.id = ANY(ARRAY(
                   SELECT w.id FROM taskq.tasks w
                    WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
                      AND w.run_at <= now()
                    ORDER BY w.run_at LIMIT v_n FOR UPDATE SKIP LOCKED))
            RETURNING t.priority, t.run_at
        )
        SELECT m.priority, m.run_at INTO v_promoted_priority, v_promoted_at FROM promoted m
         ORDER BY m.priority DESC, m.run_at LIMIT 1;
        IF v_promoted_at IS NOT NULL AND v_from_at IS NOT NULL
           AND (-v_promoted_priority, v_promoted_at, 0) < (-v_from_priority, v_from_at, v_from_id)
        THEN
            v_from_priority := v_promoted_priority;
            v_from_at := v_promoted_at;
            v_from_id := 0;
        END IF;
    END IF;

    -- The ready index is walked in claim order, from the resume point if there is one: under
    -- a long-lived snapshot the index keeps an entry for every task claimed since, each costing
    -- a heap visit, and a walk from the front would visit them all (docs/design.md, "Claims
    -- resume where they left off").
    RETURN QUERY
    WITH claimed AS (
        UPDATE taskq.tasks t
           SET state = 'running', worker_id = p_worker_id, attempt_id = gen_random_uuid(),
               attempts = t.attempts + 1, total_attempts = t.total_attempts + 1,
               lease_expires_at = now() + make_interval(secs => p_lease_s),
               started_at = now(), progress = NULL
         WHERE t.queue_id = p_queue_id AND t.id = ANY(ARRAY(
               SELECT r.id FROM taskq.tasks r
                WHERE r.queue_id = p_queue_id AND r.state = 'ready'
                  AND (v_from_at IS NULL OR (-r.priority, r.run_at, r.id)
                                            > (-v_from_priority, v_from_at, v_from_id))
                ORDER BY -r.priority, r.run_at, r.id
                LIMIT v_n FOR UPDATE SKIP LOCKED))
        RETURNING t.id, t.task_name, t.payload, t.priority, t.total_attempts, t.attempt_id,
                  t.max_attempts, coalesce(t.timeout_s, v_queue.timeout_s) AS timeout_s,
                  t.correlation_id, t.idempotency_key, t.created_at, t.run_at
    )
    -- in claim order: the primary-key probe returns rows in id order
    SELECT c.id, c.task_name, c.payload, c.priority, c.total_attempts, c.attempt_id,
           c.max_attempts, c.timeout_s, c.correlation_id, c.idempotency_key, c.created_at,
           c.run_at
      FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;

    IF v_queue.rate_limit_per_s IS NOT NULL THEN
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        UPDATE taskq.queues q SET rate_tokens = v_tokens - v_claimed, rate_refilled_at = now()
         WHERE q.id = p_queue_id;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION taskq.complete(
    p_queue_id integer, p_worker_id text, p_outcome text, p_ids bigint[], p_attempt_ids uuid[],
    p_details jsonb DEFAULT NULL
) RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_retryable boolean := p_outcome IN ('failed', 'timed_out');
    v_history_outcome text := CASE p_outcome WHEN 'fatal' THEN 'failed' ELSE p_outcome END;
    v_deleted integer := 0;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_outcome NOT IN ('succeeded', 'failed', 'fatal', 'timed_out', 'canceled') THEN
        RAISE EXCEPTION 'complete: unknown outcome %', p_outcome USING ERRCODE = 'TQ003';
    END IF;
    IF p_outcome = 'succeeded' AND EXISTS (
           SELECT FROM taskq.queues q
            WHERE q.id = p_queue_id AND q.retention_succeeded_s = 0
              AND NOT EXISTS (SELECT FROM taskq.webhooks w
                               WHERE w.namespace = q.namespace AND w.queue = q.name
                                 AND w.url IS NOT NULL AND 'succeeded' = ANY(w.events)))
    THEN
        -- kept for nobody: gone as it succeeds (a callback URL's task stays for the Dispatcher)
        RETURN QUERY
        WITH gone AS (
            DELETE FROM taskq.tasks t
             USING unnest(p_ids) WITH ORDINALITY AS i(id, ord)
             WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids) AND t.id = i.id
               AND t.state = 'running' AND t.attempt_id = p_attempt_ids[i.ord]
               AND t.callback_url IS NULL
            RETURNING t.id, t.total_attempts
        ), history AS (
            DELETE FROM taskq.attempts a
             WHERE a.queue_id = p_queue_id
               AND a.task_id = ANY(ARRAY(SELECT g.id FROM gone g WHERE g.total_attempts > 1))
        )
        SELECT g.id, 'succeeded'::text FROM gone g;
        GET DIAGNOSTICS v_deleted = ROW_COUNT;
        IF v_deleted = cardinality(p_ids) THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH finished AS (
        UPDATE taskq.tasks t
           SET state = CASE
                   WHEN p_outcome IN ('succeeded', 'canceled') THEN p_outcome
                   -- the user asked it to stop: a failure while stopping earns no retry
                   WHEN t.cancel_requested THEN 'canceled'
                   WHEN v_retryable AND t.attempts < t.max_attempts THEN 'retrying'
                   ELSE 'dead' END,
               run_at = CASE
                   WHEN v_retryable AND t.attempts < t.max_attempts AND NOT t.cancel_requested
                   THEN taskq.retry_at(t, q)
                   ELSE t.run_at END,
               finished_at = CASE
                   WHEN v_retryable AND t.attempts < t.max_attempts AND NOT t.cancel_requested
                   THEN NULL ELSE now() END,
               result = p_details -> t.id::text -> 'result',
               error = CASE WHEN p_outcome = 'succeeded' THEN NULL
                            ELSE coalesce(p_details -> t.id::text -> 'error', t.error) END,
               worker_id = CASE WHEN p_outcome = 'succeeded' THEN t.worker_id END,
               attempt_id = CASE WHEN p_outcome = 'succeeded' THEN t.attempt_id END,
               lease_expires_at = NULL
          FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord), taskq.queues q
         WHERE q.id = p_queue_id AND t.queue_id = p_queue_id AND t.id = ANY(p_ids)
           AND t.id = i.id AND t.state = 'running' AND t.attempt_id = p_attempt_ids[i.ord]
        RETURNING t.id, t.state, t.total_attempts, t.started_at, t.error, i.ord
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT p_queue_id, f.id, f.total_attempts, p_attempt_ids[f.ord], p_worker_id,
               f.started_at, now(), v_history_outcome,
               CASE WHEN p_outcome = 'canceled' THEN NULL ELSE f.error END
          FROM finished f
         WHERE p_outcome <> 'succeeded'
    )
    SELECT f.id, f.state FROM finished f;
END $$;

CREATE OR REPLACE FUNCTION taskq.heartbeat(p_queue_id integer, p_ids bigint[], p_attempt_ids uuid[], p_progress jsonb, p_lease_s double precision) RETURNS TABLE(id bigint, cancel_requested boolean)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM taskq.require_range('heartbeat', 'p_lease_s', p_lease_s, 0, 86400, 'seconds',
                                p_low_open => true);
    RETURN QUERY
    UPDATE taskq.tasks t
       SET lease_expires_at = now() + make_interval(secs => p_lease_s),
           progress = coalesce(p_progress -> t.id::text, t.progress)
      FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
     WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids) AND t.id = i.id
       AND t.attempt_id = p_attempt_ids[i.ord] AND t.state = 'running'
    RETURNING t.id, t.cancel_requested;
END $$;

CREATE OR REPLACE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision,
    p_queue_ids integer[] DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM taskq.require_range('worker_beat', 'p_dead_after_s', p_dead_after_s, 0, 86400,
                                'seconds', p_low_open => true);
    PERFORM taskq.require_range('worker_beat', 'p_rescue_every_s', p_rescue_every_s, 0, 86400,
                                'seconds', p_low_open => true);
    PERFORM taskq.require_range('worker_beat', 'cardinality(p_queue_ids)',
                                coalesce(cardinality(p_queue_ids), 0), 0, 10000, 'queues');
    UPDATE taskq.workers w
       SET beat_at = now(), dead_after_s = p_dead_after_s, queue_ids = p_queue_ids
     WHERE w.worker_id = p_worker_id;
    IF NOT FOUND THEN
        INSERT INTO taskq.workers (worker_id, dead_after_s, queue_ids)
        VALUES (p_worker_id, p_dead_after_s, p_queue_ids)
        ON CONFLICT (worker_id) DO NOTHING;
    END IF;
    IF taskq.take_turn('rescue_dead_workers', p_rescue_every_s) THEN
        RETURN taskq.rescue_dead_workers();
    END IF;
    RETURN 0;
END $$;
