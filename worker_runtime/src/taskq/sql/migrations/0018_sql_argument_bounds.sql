-- The SQL functions a worker or a maintenance job in any language calls (issue 15, class 2):
-- their durations and limits had no bounds, so a lease of 1e300 s or NaN failed with
-- "interval out of range" naming no argument, a negative p_limit with "LIMIT must not be
-- negative", and worker_beat stored a dead-after of 1e300 s that then made every later
-- rescue_dead_workers fail ("timestamp out of range") for every worker of the database.
-- Each function now refuses such values naming its argument and the range, as enqueue_many
-- and ensure_queue do (SQLSTATE TQ003); the bounds are taskq/models.py's MAX_PERIOD_SECONDS
-- (one day: a lease, a dead-after, a turn's period) and MAX_BATCH (most rows of one call),
-- checked equal by tests/integration/test_sql_bounds.py.

-- A dead-after stored before the bound: clamped to it (a worker silent for a day is dead).
UPDATE taskq.workers SET dead_after_s = 86400 WHERE dead_after_s > 86400;  -- NaN too
ALTER TABLE taskq.workers
    DROP CONSTRAINT worker_dead_after_positive,
    ADD CONSTRAINT worker_dead_after_range CHECK (dead_after_s > 0 AND dead_after_s <= 86400);

-- Refuses p_value outside p_low..p_high (above p_low only, when p_low_open), naming the
-- function, the argument and the range. NaN compares greater than every number in
-- PostgreSQL, so the upper bound refuses it, and Infinity; NULL is refused too.
CREATE FUNCTION taskq.require_range(p_function text, p_argument text,
                                    p_value double precision, p_low double precision,
                                    p_high double precision, p_unit text,
                                    p_low_open boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL OR p_value > p_high OR p_value < p_low
       OR (p_low_open AND p_value = p_low) THEN
        RAISE EXCEPTION '%: % is %: give %', p_function, p_argument,
                        coalesce(p_value::text, 'NULL'),
                        rtrim(CASE WHEN p_low_open
                                   THEN format('more than %s and at most %s %s',
                                               p_low, p_high, p_unit)
                                   ELSE format('%s..%s %s', p_low, p_high, p_unit) END)
            USING ERRCODE = 'TQ003';
    END IF;
END $$;

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

CREATE OR REPLACE FUNCTION taskq.heartbeat(p_queue_id integer, p_ids bigint[], p_attempt_ids uuid[], p_progress jsonb, p_lease_s double precision) RETURNS TABLE(id bigint, cancel_requested boolean)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
BEGIN
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

CREATE OR REPLACE FUNCTION taskq.purge_finished(p_queue_id integer, p_limit integer DEFAULT 10000) RETURNS integer
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    v_queue taskq.queues;
    v_count integer;
BEGIN
    PERFORM taskq.require_range('purge_finished', 'p_limit', p_limit, 0, 100000, 'tasks');
    SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = p_queue_id;
    IF v_queue.id IS NULL THEN
        RETURN 0;
    END IF;
    WITH deleted AS (
        DELETE FROM taskq.tasks t
         WHERE t.queue_id = p_queue_id AND t.id = ANY(ARRAY(
               SELECT d.id FROM taskq.tasks d
                WHERE d.queue_id = p_queue_id AND d.finished_at IS NOT NULL
                  AND ((d.state IN ('succeeded', 'canceled') AND d.finished_at
                        < now() - make_interval(secs => v_queue.retention_succeeded_s))
                    OR (d.state = 'dead' AND d.finished_at
                        < now() - make_interval(secs => v_queue.retention_dead_s)))
                LIMIT p_limit FOR UPDATE SKIP LOCKED))
        RETURNING t.id
    ), history AS (
        DELETE FROM taskq.attempts a
         WHERE a.queue_id = p_queue_id AND a.task_id = ANY(ARRAY(SELECT x.id FROM deleted x))
    )
    SELECT count(*) INTO v_count FROM deleted;
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION taskq.rescue_expired(p_queue_id integer, p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM taskq.require_range('rescue_expired', 'p_limit', p_limit, 0, 100000, 'tasks');
    WITH expired AS (
        SELECT e.id, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
          FROM taskq.tasks e
         WHERE e.queue_id = p_queue_id AND e.state = 'running' AND e.lease_expires_at < now()
         ORDER BY e.lease_expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    ), rescued AS (
        UPDATE taskq.tasks t
           SET state = CASE WHEN t.cancel_requested THEN 'canceled'
                            WHEN t.attempts < t.max_attempts THEN 'retrying'
                            ELSE 'dead' END,
               run_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                   THEN taskq.retry_at(t, q)
                   ELSE t.run_at END,
               finished_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                   THEN NULL ELSE now() END,
               error = jsonb_build_object(
                   'type', 'LeaseExpired',
                   'message', format('worker %s stopped renewing its lease (crashed, killed or '
                                     'cut off from the database)', e.worker_id)),
               worker_id = NULL, attempt_id = NULL, lease_expires_at = NULL
          FROM expired e, taskq.queues q
         WHERE q.id = p_queue_id AND t.queue_id = p_queue_id
           AND t.id = ANY(ARRAY(SELECT x.id FROM expired x)) AND t.id = e.id
        RETURNING t.id, t.error, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT p_queue_id, r.id, r.total_attempts, r.attempt_id, r.worker_id, r.started_at, now(),
               'lost', r.error
          FROM rescued r
    )
    SELECT count(*) INTO v_count FROM rescued;
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION taskq.rescue_dead_workers(p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_dead text[];
    v_count integer;
    v_queues integer[];
    v_priorities smallint[];
    v_run_ats timestamptz[];
BEGIN
    PERFORM taskq.require_range('rescue_dead_workers', 'p_limit', p_limit, 0, 100000, 'tasks');
    SELECT array_agg(w.worker_id) INTO v_dead FROM taskq.workers w
     WHERE w.beat_at < now() - make_interval(secs => w.dead_after_s);
    IF v_dead IS NULL THEN
        RETURN 0;
    END IF;
    WITH lost AS (
        SELECT e.queue_id, e.id, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
          FROM taskq.tasks e
         WHERE e.state = 'running' AND e.worker_id = ANY(v_dead)
         LIMIT p_limit FOR UPDATE SKIP LOCKED
    ), rescued AS (
        UPDATE taskq.tasks t
           SET state = CASE WHEN t.cancel_requested THEN 'canceled'
                            WHEN t.attempts < t.max_attempts THEN 'ready'
                            ELSE 'dead' END,
               finished_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                   THEN NULL ELSE now() END,
               error = jsonb_build_object(
                   'type', 'WorkerDied',
                   'message', format('worker %s stopped beating (crashed, killed or cut off '
                                     'from the database)', l.worker_id)),
               worker_id = NULL, attempt_id = NULL, lease_expires_at = NULL
          FROM lost l
         WHERE t.queue_id = l.queue_id AND t.id = l.id
        RETURNING t.queue_id, t.id, t.error, l.worker_id, l.attempt_id, l.total_attempts,
                  l.started_at, t.state, t.priority, t.run_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT r.queue_id, r.id, r.total_attempts, r.attempt_id, r.worker_id, r.started_at,
               now(), 'lost', r.error
          FROM rescued r
    )
    SELECT count(*), array_agg(r.queue_id) FILTER (WHERE r.state = 'ready'),
           array_agg(r.priority) FILTER (WHERE r.state = 'ready'),
           array_agg(r.run_at) FILTER (WHERE r.state = 'ready')
      INTO v_count, v_queues, v_priorities, v_run_ats FROM rescued r;
    -- each queue's workers resume their claims no later than its first rescued task
    PERFORM taskq.notify_ready(f.queue_id, f.priority, f.run_at)
       FROM (SELECT DISTINCT ON (q.queue_id) q.queue_id, q.priority, q.run_at
               FROM unnest(v_queues, v_priorities, v_run_ats) AS q(queue_id, priority, run_at)
              ORDER BY q.queue_id, q.priority DESC, q.run_at) f;
    DELETE FROM taskq.workers w
     WHERE w.worker_id = ANY(v_dead)
       AND NOT EXISTS (SELECT FROM taskq.tasks t
                        WHERE t.state = 'running' AND t.worker_id = w.worker_id);
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION taskq.worker_beat(p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision) RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM taskq.require_range('worker_beat', 'p_dead_after_s', p_dead_after_s, 0, 86400, 'seconds',
                                p_low_open => true);
    PERFORM taskq.require_range('worker_beat', 'p_rescue_every_s', p_rescue_every_s, 0, 86400, 'seconds',
                                p_low_open => true);
    UPDATE taskq.workers w SET beat_at = now(), dead_after_s = p_dead_after_s
     WHERE w.worker_id = p_worker_id;
    IF NOT FOUND THEN
        INSERT INTO taskq.workers (worker_id, dead_after_s) VALUES (p_worker_id, p_dead_after_s)
        ON CONFLICT (worker_id) DO NOTHING;
    END IF;
    IF taskq.take_turn('rescue_dead_workers', p_rescue_every_s) THEN
        RETURN taskq.rescue_dead_workers();
    END IF;
    RETURN 0;
END $$;

CREATE OR REPLACE FUNCTION taskq.take_turn(p_duty text, p_every_s double precision)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT taskq.require_range('take_turn', 'p_every_s', p_every_s, 0, 86400, 'seconds',
                               p_low_open => true);
    WITH taken AS (
        UPDATE taskq.duties d SET last_run_at = now()
         WHERE d.name = p_duty AND d.last_run_at <= now() - make_interval(secs => p_every_s)
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM taken)
$$;

-- A caller of taskq.enqueue reads its own argument names in an error (p_delay_s), not those of
-- the enqueue_many call it makes (p_delays_s[1]); the bounds are enqueue_many's. NULL keeps the
-- queue's default.
CREATE OR REPLACE FUNCTION taskq.enqueue(
    p_queue text, p_task_name text, p_payload jsonb DEFAULT '{}'::jsonb,
    p_priority integer DEFAULT NULL, p_delay_s double precision DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL, p_max_attempts integer DEFAULT NULL,
    p_timeout_s double precision DEFAULT NULL, p_correlation_id text DEFAULT NULL,
    p_traceparent text DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
    SELECT taskq.require_range('enqueue', a.argument, a.value, a.low, a.high, a.unit, a.low_open)
      FROM (VALUES ('p_priority', p_priority::double precision, 0, 100, '', false),
                   ('p_delay_s', p_delay_s, 0, 315360000, 'seconds', false),
                   ('p_max_attempts', p_max_attempts, 1, 1000, '', false),
                   ('p_timeout_s', p_timeout_s, 0, 2592000, 'seconds', true)
           ) AS a(argument, value, low, high, unit, low_open)
     WHERE a.value IS NOT NULL;
    SELECT e.id FROM taskq.enqueue_many(
        p_queue, ARRAY[p_task_name], ARRAY[p_payload::json], ARRAY[p_priority], ARRAY[p_delay_s],
        ARRAY[p_idempotency_key], ARRAY[p_max_attempts], ARRAY[p_timeout_s],
        ARRAY[p_correlation_id], p_traceparent) AS e
$$;
