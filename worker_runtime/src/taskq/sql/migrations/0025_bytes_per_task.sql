-- Fewer bytes per task (issue 18, item 4; docs/design.md, "Bytes per task").
--
-- 1. enqueue_many inserts a batch without idempotency keys with a plain INSERT. INSERT ... ON
--    CONFLICT inserts every row speculatively and writes a confirmation record per row (48 bytes
--    of WAL a task, measured with pg_walinspect), key or no key. Batches with a key take the
--    path they took before.
-- 2. A queue that keeps no succeeded task (retention_succeeded_s = 0) deletes a succeeded task
--    as its completion is recorded, instead of writing a third, succeeded version of the row
--    for the Pruner to delete later: the row's last version is the running one, marked deleted
--    in place (no new tuple, no index entry). Kept, as before, when something still reads the
--    succeeded row: a task with a callback URL, or a queue with a webhook endpoint for the
--    succeeded event (the Dispatcher reads finished tasks from the table). Its earlier failed
--    attempts go with it, as the Pruner's purge takes them. The task's result, which a retention
--    of zero already kept only until the Pruner's next turn, is then not readable at all.

CREATE OR REPLACE FUNCTION taskq.enqueue_many(
    p_queue text,
    p_task_names text[],
    p_payloads json[],
    p_priorities integer[] DEFAULT NULL,
    p_delays_s double precision[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL,
    p_max_attempts integer[] DEFAULT NULL,
    p_timeouts_s double precision[] DEFAULT NULL,
    p_correlation_ids text[] DEFAULT NULL,
    p_traceparent text DEFAULT NULL,
    p_callback_urls text[] DEFAULT NULL
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
    v_top integer;
    v_problem text;
BEGIN
    SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = taskq.queue_id(p_queue);
    IF cardinality(p_payloads) IS DISTINCT FROM v_n
       OR cardinality(p_priorities) <> v_n OR cardinality(p_delays_s) <> v_n
       OR cardinality(p_idempotency_keys) <> v_n OR cardinality(p_max_attempts) <> v_n
       OR cardinality(p_timeouts_s) <> v_n OR cardinality(p_correlation_ids) <> v_n
       OR cardinality(p_callback_urls) <> v_n THEN
        RAISE EXCEPTION 'enqueue_many: every array must have one element per task (% task names)', v_n
            USING ERRCODE = 'TQ003';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF p_traceparent !~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' THEN
        RAISE EXCEPTION 'enqueue_many: p_traceparent % is not a W3C traceparent '
            '(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)', quote_literal(p_traceparent)
            USING ERRCODE = 'TQ003';
    END IF;
    -- The bounds the Python client checks (taskq/models.py MAX_*), for SQL callers too: out of
    -- them a timestamp or a smallint overflows with a message that names nothing.
    IF p_priorities IS NOT NULL OR p_delays_s IS NOT NULL OR p_max_attempts IS NOT NULL
       OR p_timeouts_s IS NOT NULL THEN
        SELECT CASE
                 WHEN NOT i.priority BETWEEN 0 AND 100 THEN
                     format('p_priorities[%s] is %s: give 0..100', i.ord, i.priority)
                 WHEN NOT i.delay_s BETWEEN 0 AND 315360000 THEN
                     format('p_delays_s[%s] is %s: give 0..315360000 seconds (ten years)',
                            i.ord, i.delay_s)
                 WHEN NOT i.max_attempts BETWEEN 1 AND 1000 THEN
                     format('p_max_attempts[%s] is %s: give 1..1000', i.ord, i.max_attempts)
                 ELSE format('p_timeouts_s[%s] is %s: give more than 0 and at most 2592000 '
                             'seconds (thirty days)', i.ord, i.timeout_s)
               END INTO v_problem
          FROM unnest(p_priorities, p_delays_s, p_max_attempts, p_timeouts_s)
               WITH ORDINALITY AS i(priority, delay_s, max_attempts, timeout_s, ord)
         WHERE NOT coalesce(i.priority BETWEEN 0 AND 100, true)
            OR NOT coalesce(i.delay_s BETWEEN 0 AND 315360000, true)
            OR NOT coalesce(i.max_attempts BETWEEN 1 AND 1000, true)
            OR NOT coalesce(i.timeout_s > 0 AND i.timeout_s <= 2592000, true)
         ORDER BY i.ord LIMIT 1;
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION 'enqueue_many: %', v_problem USING ERRCODE = 'TQ003';
        END IF;
    END IF;
    -- The URL's shape only: whether it may be called (HTTPS, allowed hosts, addresses) is
    -- decided when it is, by the queue's settings then. The first bad one is found in one
    -- scan (a call per URL added about 3 ms to a batch of 1,000, a fifth of its time).
    PERFORM taskq.require_callback_url('enqueue_many', format('p_callback_urls[%s]', b.ord),
                                       b.url)
       FROM (SELECT i.url, i.ord FROM unnest(p_callback_urls) WITH ORDINALITY AS i(url, ord)
              WHERE NOT taskq.is_callback_url(i.url) ORDER BY i.ord LIMIT 1) b;
    -- A queue's first callback URL gives it a scan row: the Dispatcher probes the queues that
    -- have one (or endpoints), so that no pass reads, and locks, every queue's partition.
    IF array_remove(p_callback_urls, NULL) <> '{}' THEN
        INSERT INTO taskq.webhook_scans (queue_id, scanned_to) VALUES (v_queue.id, now())
            ON CONFLICT (queue_id) DO NOTHING;
    END IF;
    -- no task of this call comes before (v_top, now()) in claim order (p_priorities is NULL
    -- when no task names one: then no query is run for it)
    v_top := v_queue.default_priority;
    IF p_priorities IS NOT NULL THEN
        v_top := coalesce(
            (SELECT max(coalesce(x, v_queue.default_priority)) FROM unnest(p_priorities) AS x),
            v_top);
    END IF;
    SELECT i.ord INTO v_oversized FROM unnest(p_payloads) WITH ORDINALITY AS i(payload, ord)
     WHERE octet_length(i.payload::text) > v_queue.payload_limit_bytes LIMIT 1;
    IF v_oversized IS NOT NULL THEN
        RAISE EXCEPTION 'payload of task % is % bytes, over the queue''s limit of % bytes',
            v_oversized, octet_length(p_payloads[v_oversized]::text), v_queue.payload_limit_bytes
            USING ERRCODE = 'TQ002',
            HINT = 'store large data elsewhere and pass a reference, or raise the queue''s payload limit';
    END IF;


    IF p_idempotency_keys IS NULL OR array_remove(p_idempotency_keys, NULL) = '{}' THEN
        -- No task of the batch has a key: a plain INSERT. INSERT ... ON CONFLICT inserts each
        -- row speculatively and confirms it with a WAL record of its own (48 bytes a task,
        -- with or without a key), and there is nothing to conflict with.
        RETURN QUERY
        WITH input AS (
            SELECT nextval('taskq.task_id_seq') AS id, i.*
              FROM unnest(p_task_names, p_payloads, p_priorities, p_delays_s, p_max_attempts,
                          p_timeouts_s, p_correlation_ids, p_callback_urls)
                   WITH ORDINALITY AS i(task_name, payload, priority, delay_s, max_attempts,
                                        timeout_s, correlation_id, callback_url, ord)
        ), inserted AS (
            INSERT INTO taskq.tasks (queue_id, id, task_name, state, priority, payload, run_at,
                                     max_attempts, timeout_s, correlation_id, traceparent,
                                     callback_url)
            SELECT v_queue.id, input.id, input.task_name,
                   CASE WHEN input.delay_s > 0 THEN 'scheduled' ELSE 'ready' END,
                   coalesce(input.priority, v_queue.default_priority),
                   input.payload::jsonb,
                   CASE WHEN input.delay_s > 0 THEN now() + make_interval(secs => input.delay_s)
                        ELSE now() END,
                   coalesce(input.max_attempts, v_queue.max_attempts),
                   input.timeout_s, input.correlation_id, p_traceparent, input.callback_url
              FROM input
        )
        -- a data-modifying CTE runs to completion whether or not it is read
        SELECT input.ord::integer, input.id, true FROM input ORDER BY input.ord;
        PERFORM taskq.notify_ready(v_queue.id, v_top, now());
        RETURN;
    END IF;

    LOOP
        v_round := v_round + 1;
        -- Insert the pending positions. A conflicting idempotency key inserts nothing; the
        -- look-up below settles those in a fresh snapshot, which sees concurrent commits.
        WITH input AS (
            SELECT nextval('taskq.task_id_seq') AS id, i.*
              FROM unnest(p_task_names, p_payloads, p_priorities, p_delays_s, p_idempotency_keys,
                          p_max_attempts, p_timeouts_s, p_correlation_ids, p_callback_urls)
                   WITH ORDINALITY AS i(task_name, payload, priority, delay_s, idempotency_key,
                                        max_attempts, timeout_s, correlation_id, callback_url,
                                        ord)
             WHERE v_pending IS NULL OR i.ord = ANY(v_pending)
        ), inserted AS (
            INSERT INTO taskq.tasks (queue_id, id, task_name, state, priority, payload, run_at,
                                     idempotency_key, max_attempts, timeout_s, correlation_id,
                                     traceparent, callback_url)
            SELECT v_queue.id, input.id, input.task_name,
                   CASE WHEN input.delay_s > 0 THEN 'scheduled' ELSE 'ready' END,
                   coalesce(input.priority, v_queue.default_priority),
                   input.payload::jsonb,
                   CASE WHEN input.delay_s > 0 THEN now() + make_interval(secs => input.delay_s)
                        ELSE now() END,
                   input.idempotency_key,
                   coalesce(input.max_attempts, v_queue.max_attempts),
                   input.timeout_s, input.correlation_id, p_traceparent, input.callback_url
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
            PERFORM taskq.notify_ready(v_queue.id, v_top, now());
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
        PERFORM taskq.notify_ready(v_queue.id, v_top, now());
    END IF;
    RETURN QUERY SELECT g.i, v_ids[g.i], v_created[g.i] FROM generate_subscripts(v_ids, 1) AS g(i);
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
