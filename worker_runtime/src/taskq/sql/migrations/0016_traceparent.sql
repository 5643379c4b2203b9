-- Traces from enqueue to execution (docs/tracing.md): each task keeps the W3C traceparent of the
-- span that enqueued it, and the worker's execution span is that span's child. One value per
-- call (a batch is enqueued under one span), given by the Python client, the API, or a SQL
-- caller's p_traceparent. The worker reads it only when it traces, so the claim is unchanged.
ALTER TABLE taskq.tasks ADD COLUMN traceparent text;

CREATE OR REPLACE VIEW taskq.task_details AS
 SELECT t.queue_id, t.id, q.namespace || '/' || q.name AS queue, t.task_name, t.state,
        t.priority, t.payload, t.run_at, t.idempotency_key, t.correlation_id, t.attempts,
        t.total_attempts, t.max_attempts, t.worker_id, t.attempt_id::text AS attempt_id,
        t.lease_expires_at, t.cancel_requested, t.result, t.error, t.progress, t.created_at,
        t.started_at, t.finished_at, t.traceparent
   FROM taskq.tasks t JOIN taskq.queues q ON q.id = t.queue_id;

-- The functions gain a parameter: dropped and made again, since an overload beside the old
-- ones would make named calls ambiguous.
DROP FUNCTION taskq.enqueue(text, text, jsonb, integer, double precision, text, integer,
                            double precision, text);
DROP FUNCTION taskq.enqueue_details(text, text[], json[], integer[], double precision[], text[],
                                    integer[], double precision[], text[]);
DROP FUNCTION taskq.enqueue_many(text, text[], json[], integer[], double precision[], text[],
                                 integer[], double precision[], text[]);

CREATE FUNCTION taskq.enqueue_many(
    p_queue text,
    p_task_names text[],
    p_payloads json[],
    p_priorities integer[] DEFAULT NULL,
    p_delays_s double precision[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL,
    p_max_attempts integer[] DEFAULT NULL,
    p_timeouts_s double precision[] DEFAULT NULL,
    p_correlation_ids text[] DEFAULT NULL,
    p_traceparent text DEFAULT NULL
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
       OR cardinality(p_timeouts_s) <> v_n OR cardinality(p_correlation_ids) <> v_n THEN
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
                                     idempotency_key, max_attempts, timeout_s, correlation_id,
                                     traceparent)
            SELECT v_queue.id, input.id, input.task_name,
                   CASE WHEN input.delay_s > 0 THEN 'scheduled' ELSE 'ready' END,
                   coalesce(input.priority, v_queue.default_priority),
                   input.payload::jsonb,
                   CASE WHEN input.delay_s > 0 THEN now() + make_interval(secs => input.delay_s)
                        ELSE now() END,
                   input.idempotency_key,
                   coalesce(input.max_attempts, v_queue.max_attempts),
                   input.timeout_s, input.correlation_id, p_traceparent
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


CREATE FUNCTION taskq.enqueue_details(
    p_queue text,
    p_task_names text[],
    p_payloads json[],
    p_priorities integer[] DEFAULT NULL,
    p_delays_s double precision[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL,
    p_max_attempts integer[] DEFAULT NULL,
    p_timeouts_s double precision[] DEFAULT NULL,
    p_correlation_ids text[] DEFAULT NULL,
    p_traceparent text DEFAULT NULL
) RETURNS TABLE (created boolean, task taskq.task_details)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_id bigint;
    v_created boolean;
BEGIN
    IF cardinality(p_task_names) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'enqueue_details: one task at a time (% given)',
            coalesce(cardinality(p_task_names), 0) USING ERRCODE = 'TQ003';
    END IF;
    SELECT e.id, e.created INTO v_id, v_created
      FROM taskq.enqueue_many(p_queue, p_task_names, p_payloads, p_priorities, p_delays_s,
                              p_idempotency_keys, p_max_attempts, p_timeouts_s,
                              p_correlation_ids, p_traceparent) AS e;
    RETURN QUERY SELECT v_created, d FROM taskq.task_details d
                  WHERE d.queue_id = taskq.queue_id(p_queue) AND d.id = v_id;
END $$;

CREATE FUNCTION taskq.enqueue(
    p_queue text,
    p_task_name text,
    p_payload jsonb DEFAULT '{}',
    p_priority integer DEFAULT NULL,
    p_delay_s double precision DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL,
    p_max_attempts integer DEFAULT NULL,
    p_timeout_s double precision DEFAULT NULL,
    p_correlation_id text DEFAULT NULL,
    p_traceparent text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    SELECT e.id FROM taskq.enqueue_many(
        p_queue, ARRAY[p_task_name], ARRAY[p_payload::json], ARRAY[p_priority], ARRAY[p_delay_s],
        ARRAY[p_idempotency_key], ARRAY[p_max_attempts], ARRAY[p_timeout_s],
        ARRAY[p_correlation_id], p_traceparent) AS e
$$;
