-- taskq functions: the whole task life cycle as guarded statements, callable from any language.
--
-- Functions that touch taskq.tasks by queue run with plan_cache_mode = force_custom_plan so the
-- planner prunes to the queue's partition with the queue id as a constant; a generic plan would
-- lock and initialise every partition on each call. They are PL/pgSQL: a LANGUAGE sql function
-- with a SET clause is neither inlined nor planned with its arguments as constants, so it
-- planned every partition (520 ms a call at 200 queues, measured).
--
-- Errors raised here carry SQLSTATEs of class TQ so clients can map them:
--   TQ001 unknown queue   TQ002 payload too large   TQ003 invalid argument

-- Notification channels (payloads carry ids only; polling keeps working without them):
--   taskq_ready   payload: queue id        tasks became ready in that queue
--   taskq_cancel  payload: task id         a running task was asked to stop

CREATE FUNCTION taskq.queue_id(p_queue text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id integer;
BEGIN
    SELECT q.id INTO v_id FROM taskq.queues q
     WHERE q.namespace = split_part(p_queue, '/', 1) AND q.name = split_part(p_queue, '/', 2)
       AND p_queue = q.namespace || '/' || q.name;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'unknown queue "%"', p_queue USING ERRCODE = 'TQ001',
            HINT = 'create it first (taskq queue create NAMESPACE/NAME, or a TaskQueue resource)';
    END IF;
    RETURN v_id;
END $$;

-- Delay before retry number p_attempt + 1, in seconds, with symmetric jitter.
CREATE FUNCTION taskq.retry_delay(
    p_kind text, p_base_s double precision, p_max_s double precision,
    p_jitter double precision, p_attempt integer
) RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    SELECT greatest(0, least(p_max_s,
        CASE p_kind
            WHEN 'exponential' THEN p_base_s * power(2, least(greatest(p_attempt - 1, 0), 60))
            WHEN 'linear' THEN p_base_s * greatest(p_attempt, 1)
            ELSE p_base_s
        END * (1 + p_jitter * (2 * random() - 1))))
$$;

-- When a task that just failed runs again: its own backoff settings, else its queue's.
CREATE FUNCTION taskq.retry_at(t taskq.tasks, q taskq.queues) RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    SELECT now() + make_interval(secs => taskq.retry_delay(
        coalesce(t.backoff_kind, q.backoff_kind), coalesce(t.backoff_base_s, q.backoff_base_s),
        coalesce(t.backoff_max_s, q.backoff_max_s), q.backoff_jitter, t.attempts))
$$;

CREATE FUNCTION taskq.provision_queue(p_namespace text, p_name text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    -- one provisioner at a time: CREATE TABLE ... PARTITION OF is not safe to race
    PERFORM pg_advisory_xact_lock(hashtext('taskq.provision_queue'));
    INSERT INTO taskq.queues (namespace, name) VALUES (p_namespace, p_name)
        ON CONFLICT (namespace, name) DO NOTHING;
    SELECT id INTO STRICT v_id FROM taskq.queues WHERE namespace = p_namespace AND name = p_name;
    EXECUTE format('CREATE TABLE IF NOT EXISTS taskq.%I PARTITION OF taskq.tasks FOR VALUES IN (%s)',
                   'tasks_q' || v_id, v_id);
    EXECUTE format('CREATE TABLE IF NOT EXISTS taskq.%I PARTITION OF taskq.attempts FOR VALUES IN (%s)',
                   'attempts_q' || v_id, v_id);
    RETURN v_id;
END $$;

CREATE FUNCTION taskq.drop_queue(p_namespace text, p_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('taskq.provision_queue'));
    SELECT id INTO v_id FROM taskq.queues WHERE namespace = p_namespace AND name = p_name FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS taskq.%I', 'tasks_q' || v_id);
    EXECUTE format('DROP TABLE IF EXISTS taskq.%I', 'attempts_q' || v_id);
    DELETE FROM taskq.queues WHERE id = v_id;
    RETURN true;
END $$;

-- Enqueue many tasks in one statement. Every array has one element per task; NULL elements
-- (or NULL arrays) mean "the queue's default". Payloads are `json`, kept as sent, so the
-- payload limit counts the bytes the producer sent (the same bytes the client's COPY path
-- counts); they are stored as jsonb. Returns one row per input, in input order:
-- the task id and whether it was created (false: an unfinished task with that idempotency key
-- already existed, and its id is returned).
CREATE FUNCTION taskq.enqueue_many(
    p_queue text,
    p_task_names text[],
    p_payloads json[],
    p_priorities integer[] DEFAULT NULL,
    p_delays_s double precision[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL,
    p_max_attempts integer[] DEFAULT NULL,
    p_timeouts_s double precision[] DEFAULT NULL,
    p_correlation_ids text[] DEFAULT NULL
) RETURNS TABLE (ord integer, id bigint, created boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_queue taskq.queues;
    v_n integer := coalesce(cardinality(p_task_names), 0);
    v_oversized integer;
    v_ids bigint[];          -- result id per input position
    v_created boolean[];     -- result flag per input position
    v_pending integer[];     -- positions still to settle; NULL in the first round means all
    v_ords integer[];
    v_got bigint[];
    v_round integer := 0;
BEGIN
    SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = taskq.queue_id(p_queue);
    IF cardinality(p_payloads) IS DISTINCT FROM v_n
       OR cardinality(p_priorities) <> v_n OR cardinality(p_delays_s) <> v_n
       OR cardinality(p_idempotency_keys) <> v_n OR cardinality(p_max_attempts) <> v_n
       OR cardinality(p_timeouts_s) <> v_n OR cardinality(p_correlation_ids) <> v_n THEN
        RAISE EXCEPTION 'enqueue_many: every array must have one element per task (% task names)', v_n
            USING ERRCODE = 'TQ003';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    SELECT i.ord INTO v_oversized FROM unnest(p_payloads) WITH ORDINALITY AS i(payload, ord)
     WHERE octet_length(i.payload::text) > v_queue.payload_limit_bytes LIMIT 1;
    IF v_oversized IS NOT NULL THEN
        RAISE EXCEPTION 'payload of task % is % bytes, over the queue''s limit of % bytes',
            v_oversized, octet_length(p_payloads[v_oversized]::text), v_queue.payload_limit_bytes
            USING ERRCODE = 'TQ002',
            HINT = 'store large data elsewhere and pass a reference, or raise the queue''s payload limit';
    END IF;

    LOOP
        v_round := v_round + 1;
        -- Insert the pending positions. A conflicting idempotency key inserts nothing; the
        -- look-up below settles those in a fresh snapshot, which sees concurrent commits.
        WITH input AS (
            SELECT nextval('taskq.task_id_seq') AS id, i.*
              FROM unnest(p_task_names, p_payloads, p_priorities, p_delays_s, p_idempotency_keys,
                          p_max_attempts, p_timeouts_s, p_correlation_ids)
                   WITH ORDINALITY AS i(task_name, payload, priority, delay_s, idempotency_key,
                                        max_attempts, timeout_s, correlation_id, ord)
             WHERE v_pending IS NULL OR i.ord = ANY(v_pending)
        ), inserted AS (
            INSERT INTO taskq.tasks (queue_id, id, task_name, state, priority, payload, run_at,
                                     idempotency_key, max_attempts, timeout_s, correlation_id)
            SELECT v_queue.id, input.id, input.task_name,
                   CASE WHEN input.delay_s > 0 THEN 'scheduled' ELSE 'ready' END,
                   coalesce(input.priority, v_queue.default_priority),
                   input.payload::jsonb,
                   CASE WHEN input.delay_s > 0 THEN now() + make_interval(secs => input.delay_s)
                        ELSE now() END,
                   input.idempotency_key,
                   coalesce(input.max_attempts, v_queue.max_attempts),
                   input.timeout_s, input.correlation_id
              FROM input
            ON CONFLICT (queue_id, idempotency_key)
                WHERE idempotency_key IS NOT NULL
                  AND state IN ('scheduled', 'ready', 'running', 'retrying')
                DO NOTHING
            RETURNING taskq.tasks.id
        )
        SELECT array_agg(input.ord::integer ORDER BY input.ord),
               array_agg(inserted.id ORDER BY input.ord)
          INTO v_ords, v_got
          FROM input LEFT JOIN inserted ON inserted.id = input.id;

        IF v_round = 1 AND array_position(v_got, NULL) IS NULL THEN
            -- the common case: no key conflicted, every task was created in input order
            PERFORM pg_notify('taskq_ready', v_queue.id::text);
            RETURN QUERY SELECT g.i, v_got[g.i], true FROM generate_subscripts(v_got, 1) AS g(i);
            RETURN;
        END IF;
        IF v_round = 1 THEN
            v_ids := array_fill(NULL::bigint, ARRAY[v_n]);
            v_created := array_fill(false, ARRAY[v_n]);
        END IF;
        FOR i IN 1 .. cardinality(v_ords) LOOP
            IF v_got[i] IS NOT NULL THEN
                v_ids[v_ords[i]] := v_got[i];
                v_created[v_ords[i]] := true;
            END IF;
        END LOOP;

        SELECT array_agg(k.ord::integer), array_agg(t.id) INTO v_ords, v_got
          FROM unnest(p_idempotency_keys) WITH ORDINALITY AS k(key, ord)
          JOIN taskq.tasks t ON t.queue_id = v_queue.id AND t.idempotency_key = k.key
                            AND t.state IN ('scheduled', 'ready', 'running', 'retrying')
         WHERE v_ids[k.ord] IS NULL;
        FOR i IN 1 .. coalesce(cardinality(v_ords), 0) LOOP
            v_ids[v_ords[i]] := v_got[i];
        END LOOP;

        SELECT array_agg(g.i) INTO v_pending
          FROM generate_subscripts(v_ids, 1) AS g(i) WHERE v_ids[g.i] IS NULL;
        EXIT WHEN v_pending IS NULL;
        -- the key's holder finished between our insert and our look-up: insert those again
        IF v_round >= 10 THEN
            RAISE EXCEPTION 'enqueue_many: idempotency keys of tasks % kept changing hands', v_pending
                USING ERRCODE = '40001';
        END IF;
    END LOOP;

    IF true = ANY(v_created) THEN
        PERFORM pg_notify('taskq_ready', v_queue.id::text);
    END IF;
    RETURN QUERY SELECT g.i, v_ids[g.i], v_created[g.i] FROM generate_subscripts(v_ids, 1) AS g(i);
END $$;

-- The same for one task: the SQL interface for producers in any language. The payload limit
-- counts the bytes of the jsonb's text form.
--   SELECT taskq.enqueue('default/emails', 'send_email', '{"to": "a@example.com"}');
CREATE FUNCTION taskq.enqueue(
    p_queue text,
    p_task_name text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT NULL,
    p_delay_s double precision DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL,
    p_max_attempts integer DEFAULT NULL,
    p_timeout_s double precision DEFAULT NULL,
    p_correlation_id text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    SELECT e.id FROM taskq.enqueue_many(
        p_queue, ARRAY[p_task_name], ARRAY[p_payload::json], ARRAY[p_priority], ARRAY[p_delay_s],
        ARRAY[p_idempotency_key], ARRAY[p_max_attempts], ARRAY[p_timeout_s],
        ARRAY[p_correlation_id]) AS e
$$;

-- Claim up to p_limit tasks of one queue for a worker, under a lease of p_lease_s seconds.
-- Honours pause, the concurrency limit (max running across all workers) and the rate limit
-- (a token bucket on the queue row); queues without limits never touch the queue row's lock.
CREATE FUNCTION taskq.claim(
    p_queue_id integer, p_worker_id text, p_limit integer, p_lease_s double precision
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
    UPDATE taskq.tasks t SET state = 'ready'
     WHERE t.queue_id = p_queue_id AND t.id = ANY(ARRAY(
           SELECT w.id FROM taskq.tasks w
            WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
              AND w.run_at <= now()
            ORDER BY w.run_at LIMIT v_n FOR UPDATE SKIP LOCKED));

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

-- Record the outcome of attempts: one queue and one outcome per call, ids and attempt ids
-- aligned by position. Results and errors come only for the tasks that have them, in
-- p_details = {"<task id>": {"result": <json>, "error": <json>}}.
-- p_outcome: succeeded | failed (retried while attempts remain) | fatal (dead at once)
--            | timed_out (retried while attempts remain) | canceled
-- Only the current attempt of a running task can finish it: an attempt whose lease was lost
-- (the task rescued and claimed again) is ignored and not returned.
--
-- Arrays are read by position from a single-array unnest (whose row count the planner knows;
-- a multi-array unnest is estimated at 100 rows and led to a nested loop of batch x batch).
-- Only fixed-width arrays are subscripted: subscripting text[] or jsonb[] walks the array
-- from its start, which made a batch quadratic.
CREATE FUNCTION taskq.complete(
    p_queue_id integer, p_worker_id text, p_outcome text, p_ids bigint[], p_attempt_ids uuid[],
    p_details jsonb DEFAULT NULL
) RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_retryable boolean := p_outcome IN ('failed', 'timed_out');
    v_history_outcome text := CASE p_outcome WHEN 'fatal' THEN 'failed' ELSE p_outcome END;
BEGIN
    IF p_outcome NOT IN ('succeeded', 'failed', 'fatal', 'timed_out', 'canceled') THEN
        RAISE EXCEPTION 'complete: unknown outcome %', p_outcome USING ERRCODE = 'TQ003';
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
               worker_id = NULL, attempt_id = NULL, lease_expires_at = NULL
          FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord), taskq.queues q
         WHERE q.id = p_queue_id AND t.queue_id = p_queue_id AND t.id = ANY(p_ids)
           AND t.id = i.id AND t.state = 'running' AND t.attempt_id = p_attempt_ids[i.ord]
        RETURNING t.id, t.state, t.total_attempts, t.started_at, t.error, i.ord
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT p_queue_id, f.id, f.total_attempts, p_attempt_ids[f.ord], p_worker_id,
               f.started_at, now(), v_history_outcome,
               CASE WHEN p_outcome IN ('succeeded', 'canceled') THEN NULL ELSE f.error END
          FROM finished f
    )
    SELECT f.id, f.state FROM finished f;
END $$;

-- Renew the leases of a worker's running attempts and store their latest progress.
-- Returns the attempts still held, with whether a cancellation was requested; an attempt
-- missing from the result has lost its lease and must stop.
-- p_progress = {"<task id>": <progress json>} for the attempts that reported progress.
CREATE FUNCTION taskq.heartbeat(
    p_queue_id integer, p_ids bigint[], p_attempt_ids uuid[], p_progress jsonb,
    p_lease_s double precision
) RETURNS TABLE (id bigint, cancel_requested boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY
    UPDATE taskq.tasks t
       SET lease_expires_at = now() + make_interval(secs => p_lease_s),
           progress = coalesce(p_progress -> t.id::text, t.progress)
      FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
     WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids) AND t.id = i.id
       AND t.attempt_id = p_attempt_ids[i.ord] AND t.state = 'running'
    RETURNING t.id, t.cancel_requested;
END $$;

-- Give attempts back unfinished (graceful shutdown past its grace period): the tasks become
-- ready at once (canceled, if that was asked) and the attempt is not charged against
-- max_attempts.
CREATE FUNCTION taskq.release(
    p_queue_id integer, p_worker_id text, p_ids bigint[], p_attempt_ids uuid[]
) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_count integer;
BEGIN
    WITH released AS (
        UPDATE taskq.tasks t
           SET state = CASE WHEN t.cancel_requested THEN 'canceled' ELSE 'ready' END,
               finished_at = CASE WHEN t.cancel_requested THEN now() END,
               attempts = t.attempts - 1, worker_id = NULL, attempt_id = NULL,
               lease_expires_at = NULL
          FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
         WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids) AND t.id = i.id
           AND t.attempt_id = p_attempt_ids[i.ord] AND t.state = 'running'
        RETURNING t.id, t.total_attempts, t.started_at, p_attempt_ids[i.ord] AS attempt_id
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome)
        SELECT p_queue_id, r.id, r.total_attempts, r.attempt_id, p_worker_id, r.started_at, now(),
               'released'
          FROM released r
    )
    SELECT count(*) INTO v_count FROM released;
    IF v_count > 0 THEN
        PERFORM pg_notify('taskq_ready', p_queue_id::text);
    END IF;
    RETURN v_count;
END $$;

-- Maintenance: running tasks whose lease expired (their worker crashed or lost the database)
-- are retried with backoff, or dead when out of attempts, or canceled if that was asked.
CREATE FUNCTION taskq.rescue_expired(p_queue_id integer, p_limit integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_count integer;
BEGIN
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

-- Maintenance: delete finished tasks (and their history) past the queue's retention.
CREATE FUNCTION taskq.purge_finished(p_queue_id integer, p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_queue taskq.queues;
    v_count integer;
BEGIN
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

-- Cancel a task: waiting tasks become canceled at once; a running one is asked to stop
-- (its worker learns through taskq_cancel and its next heartbeat). Returns the task's state
-- afterwards and whether a stop was requested; no row for an unknown id.
CREATE FUNCTION taskq.cancel(p_task_id bigint)
RETURNS TABLE (state text, cancel_requested boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_queue_id integer;
    v_state text;
BEGIN
    SELECT t.queue_id, t.state INTO v_queue_id, v_state FROM taskq.tasks t
     WHERE t.id = p_task_id FOR UPDATE;
    IF v_queue_id IS NULL THEN
        RETURN;
    END IF;
    IF v_state IN ('scheduled', 'ready', 'retrying') THEN
        RETURN QUERY UPDATE taskq.tasks t SET state = 'canceled', finished_at = now()
                      WHERE t.queue_id = v_queue_id AND t.id = p_task_id
                      RETURNING t.state, t.cancel_requested;
    ELSIF v_state = 'running' THEN
        PERFORM pg_notify('taskq_cancel', p_task_id::text);
        RETURN QUERY UPDATE taskq.tasks t SET cancel_requested = true
                      WHERE t.queue_id = v_queue_id AND t.id = p_task_id
                      RETURNING t.state, t.cancel_requested;
    ELSE
        RETURN QUERY SELECT t.state, t.cancel_requested FROM taskq.tasks t
                      WHERE t.queue_id = v_queue_id AND t.id = p_task_id;
    END IF;
END $$;

-- Replay dead tasks (all of a queue's, or the listed ids): back to ready with a fresh budget of
-- attempts; their history stays. A dead task whose idempotency key is held by a newer
-- unfinished task, or by a newer dead task replayed with it, is left dead and counted as skipped.
CREATE FUNCTION taskq.replay_dead(p_queue_id integer, p_ids bigint[] DEFAULT NULL)
RETURNS TABLE (replayed integer, skipped integer)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_replayed integer;
    v_dead integer;
BEGIN
    SELECT count(*) INTO v_dead FROM taskq.tasks t
     WHERE t.queue_id = p_queue_id AND t.state = 'dead' AND (p_ids IS NULL OR t.id = ANY(p_ids));
    -- Of dead tasks sharing an idempotency key only the newest comes back: replaying them all
    -- would make several unfinished tasks hold one key (a unique violation).
    UPDATE taskq.tasks t
       SET state = 'ready', attempts = 0, run_at = now(), finished_at = NULL, result = NULL,
           cancel_requested = false
      FROM (SELECT DISTINCT ON (d.idempotency_key IS NULL, coalesce(d.idempotency_key, d.id::text))
                   d.id
              FROM taskq.tasks d
             WHERE d.queue_id = p_queue_id AND d.state = 'dead'
               AND (p_ids IS NULL OR d.id = ANY(p_ids))
             ORDER BY d.idempotency_key IS NULL, coalesce(d.idempotency_key, d.id::text),
                      d.finished_at DESC, d.id DESC) newest
     WHERE t.queue_id = p_queue_id AND t.id = newest.id AND t.state = 'dead'
       AND (t.idempotency_key IS NULL OR NOT EXISTS (
           SELECT 1 FROM taskq.tasks u
            WHERE u.queue_id = p_queue_id AND u.idempotency_key = t.idempotency_key
              AND u.state IN ('scheduled', 'ready', 'running', 'retrying')));
    GET DIAGNOSTICS v_replayed = ROW_COUNT;
    IF v_replayed > 0 THEN
        PERFORM pg_notify('taskq_ready', p_queue_id::text);
    END IF;
    RETURN QUERY SELECT v_replayed, v_dead - v_replayed;
END $$;

-- Depth of one queue, each count answered from its partial index. "ready" includes delayed
-- and retrying tasks whose time has come (no worker may be running to promote them).
CREATE FUNCTION taskq.queue_stats(p_queue_id integer)
RETURNS TABLE (
    ready bigint, scheduled bigint, running bigint, dead bigint,
    oldest_ready_at timestamptz, succeeded_last_minute bigint, dead_last_minute bigint,
    observed_at timestamptz
)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY
    WITH ready AS (
        SELECT count(*) AS n, min(r.run_at) AS oldest FROM taskq.tasks r
         WHERE r.queue_id = p_queue_id AND r.state = 'ready'
    ), due AS (
        SELECT count(*) AS n, min(w.run_at) AS oldest FROM taskq.tasks w
         WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
           AND w.run_at <= now()
    )
    SELECT ready.n + due.n,
           (SELECT count(*) FROM taskq.tasks w
             WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
               AND w.run_at > now()),
           (SELECT count(*) FROM taskq.tasks r
             WHERE r.queue_id = p_queue_id AND r.state = 'running'),
           (SELECT count(*) FROM taskq.tasks d
             WHERE d.queue_id = p_queue_id AND d.state = 'dead' AND d.finished_at IS NOT NULL),
           least(ready.oldest, due.oldest),
           (SELECT count(*) FROM taskq.tasks s
             WHERE s.queue_id = p_queue_id AND s.state = 'succeeded'
               AND s.finished_at > now() - interval '1 minute'),
           (SELECT count(*) FROM taskq.tasks d
             WHERE d.queue_id = p_queue_id AND d.state = 'dead'
               AND d.finished_at > now() - interval '1 minute'),
           now()
      FROM ready, due;
END $$;
