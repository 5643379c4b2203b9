-- taskq.claim gains p_promote (default true, as before): false skips making due delayed and
-- retrying tasks ready. Planning that statement was a third of a small claim's time (0.3 of
-- 1.0 ms); a worker that knows nothing is due (it asked taskq.next_run_in, or promoted a
-- moment ago) leaves it out. Callers of the four-argument form keep promoting on every claim.

DROP FUNCTION taskq.claim(integer, text, integer, double precision);

CREATE FUNCTION taskq.claim(
    p_queue_id integer, p_worker_id text, p_limit integer, p_lease_s double precision,
    p_promote boolean DEFAULT true
) RETURNS TABLE (
    id bigint, task_name text, payload jsonb, priority smallint, attempt integer,
    attempt_id uuid, max_attempts integer, timeout_s double precision,
    correlation_id text, idempotency_key text, created_at timestamptz
)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_queue taskq.queues;
    v_n integer := p_limit;
    v_running integer;
    v_tokens double precision;
    v_claimed integer;
BEGIN
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

    -- Delayed and retrying tasks whose time has come become ready first.
    IF p_promote THEN
        UPDATE taskq.tasks t SET state = 'ready'
         WHERE t.queue_id = p_queue_id AND t.id = ANY(ARRAY(
               SELECT w.id FROM taskq.tasks w
                WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
                  AND w.run_at <= now()
                ORDER BY w.run_at LIMIT v_n FOR UPDATE SKIP LOCKED));
    END IF;

    -- "id = ANY(ARRAY(subquery))" makes the selection an init plan probed through the primary
    -- key; as a join, once the partition had statistics, the planner hashed a sequential scan
    -- of the whole partition.
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
                ORDER BY r.priority DESC, r.run_at, r.id
                LIMIT v_n FOR UPDATE SKIP LOCKED))
        RETURNING t.id, t.task_name, t.payload, t.priority, t.total_attempts, t.attempt_id,
                  t.max_attempts, coalesce(t.timeout_s, v_queue.timeout_s) AS timeout_s,
                  t.correlation_id, t.idempotency_key, t.created_at, t.run_at
    )
    -- in claim order: the primary-key probe returns rows in id order
    SELECT c.id, c.task_name, c.payload, c.priority, c.total_attempts, c.attempt_id,
           c.max_attempts, c.timeout_s, c.correlation_id, c.idempotency_key, c.created_at
      FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;

    IF v_queue.rate_limit_per_s IS NOT NULL THEN
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        UPDATE taskq.queues q SET rate_tokens = v_tokens - v_claimed, rate_refilled_at = now()
         WHERE q.id = p_queue_id;
    END IF;
END $$;
