-- Completion webhooks (docs/webhooks.md). Nothing here runs when a task finishes: the
-- Dispatcher (taskq.maintenance.dispatcher) scans for finished tasks once a second, and each
-- notification it finds becomes a task of the system queue taskq-system/webhooks, which the
-- workers deliver with the built-in handler taskq.webhook (retries, dead letters, replay).

-- A task's own callback URL, given at enqueue. A new column at the end of the parent: no
-- rewrite, every partition (and every later one) keeps the parent's layout.
ALTER TABLE taskq.tasks ADD COLUMN callback_url text;

-- The Dispatcher's scan of finished tasks with a callback. Partial: a task without a callback
-- URL costs no entry, and a task with one costs one entry once it finishes.
CREATE INDEX tasks_callback_idx ON taskq.tasks (queue_id, finished_at)
    WHERE callback_url IS NOT NULL AND finished_at IS NOT NULL;

-- A queue's endpoints. By queue name, like schedules: a queue dropped and provisioned again
-- keeps them. A row without url signs and filters the calls to its tasks' callback URLs (at
-- most one per queue).
CREATE TABLE taskq.webhooks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace text NOT NULL
        CHECK (namespace ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    queue text NOT NULL
        CHECK (queue ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    name text NOT NULL
        CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    url text CHECK (url ~ '^https?://[^/?#]' AND length(url) <= 2048),
    events text[] NOT NULL DEFAULT '{succeeded,dead,canceled}'
        CHECK (cardinality(events) >= 1 AND events <@ '{succeeded,dead,canceled}'::text[]),
    -- the Standard Webhooks signing secret, whsec_<base64>
    secret text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    -- hosts reached without HTTPS and at private, loopback or link-local addresses
    allow_hosts text[] NOT NULL DEFAULT '{}',
    -- the object that declared it (e.g. TaskQueue shop/orders), NULL when made by hand
    declared_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, queue, name)
);

CREATE UNIQUE INDEX webhooks_one_callback_signer ON taskq.webhooks (namespace, queue)
    WHERE url IS NULL;

-- How far the Dispatcher has scanned each queue's finished tasks.
CREATE TABLE taskq.webhook_scans (
    queue_id integer PRIMARY KEY REFERENCES taskq.queues (id) ON DELETE CASCADE,
    scanned_to timestamptz NOT NULL
);

-- Notifications already turned into deliveries. finished_at is not commit order (it is the
-- finishing transaction's start), so each scan looks again at an overlap before its
-- watermark; these rows keep it from dispatching twice, and go once they are before it. The
-- finish time is part of the key: a replayed task that finishes again is announced again.
-- endpoint: the webhook's name, or '~callback' for the task's own callback URL.
CREATE TABLE taskq.webhook_dispatches (
    queue_id integer NOT NULL,
    finished_at timestamptz NOT NULL,
    task_id bigint NOT NULL,
    endpoint text NOT NULL,
    PRIMARY KEY (queue_id, finished_at, task_id, endpoint)
);

-- enqueue_many and its callers take the callback URLs: a new last parameter, named in every
-- call (NULL: none). Built on their definitions of migrations 0016 (p_traceparent) and 0018
-- (taskq.enqueue's bounds under its own argument names), which they keep. Dropped and made
-- again, since an overload beside the old ones would make named calls ambiguous.
DROP FUNCTION taskq.enqueue(text, text, jsonb, integer, double precision, text, integer,
                            double precision, text, text);
DROP FUNCTION taskq.enqueue_details(text, text[], json[], integer[], double precision[], text[],
                                    integer[], double precision[], text[], text);
DROP FUNCTION taskq.enqueue_many(text, text[], json[], integer[], double precision[], text[],
                                 integer[], double precision[], text[], text);

-- A callback URL's shape: taskq/models.py's CALLBACK_URL and MAX_CALLBACK_URL. One
-- expression, so that the planner inlines it into enqueue_many's scan of a batch.
CREATE FUNCTION taskq.is_callback_url(p_url text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_url ~ '^https?://[^/?#]' AND length(p_url) <= 2048
$$;

-- Refuses a callback URL of another shape, naming the function and the argument, as
-- taskq.require_range does; NULL (no callback) passes.
CREATE FUNCTION taskq.require_callback_url(p_function text, p_argument text, p_url text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT taskq.is_callback_url(p_url) THEN
        RAISE EXCEPTION '%: % is not an http(s) URL of at most 2048 characters',
                        p_function, p_argument
            USING ERRCODE = 'TQ003';
    END IF;
END $$;

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

CREATE FUNCTION taskq.enqueue(
    p_queue text, p_task_name text, p_payload jsonb DEFAULT '{}'::jsonb,
    p_priority integer DEFAULT NULL, p_delay_s double precision DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL, p_max_attempts integer DEFAULT NULL,
    p_timeout_s double precision DEFAULT NULL, p_correlation_id text DEFAULT NULL,
    p_traceparent text DEFAULT NULL, p_callback_url text DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
    SELECT taskq.require_range('enqueue', a.argument, a.value, a.low, a.high, a.unit, a.low_open)
      FROM (VALUES ('p_priority', p_priority::double precision, 0, 100, '', false),
                   ('p_delay_s', p_delay_s, 0, 315360000, 'seconds', false),
                   ('p_max_attempts', p_max_attempts, 1, 1000, '', false),
                   ('p_timeout_s', p_timeout_s, 0, 2592000, 'seconds', true)
           ) AS a(argument, value, low, high, unit, low_open)
     WHERE a.value IS NOT NULL;
    SELECT taskq.require_callback_url('enqueue', 'p_callback_url', p_callback_url);
    SELECT e.id FROM taskq.enqueue_many(
        p_queue, ARRAY[p_task_name], ARRAY[p_payload::json], ARRAY[p_priority], ARRAY[p_delay_s],
        ARRAY[p_idempotency_key], ARRAY[p_max_attempts], ARRAY[p_timeout_s],
        ARRAY[p_correlation_id], p_traceparent, ARRAY[p_callback_url]) AS e
$$;

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
    p_traceparent text DEFAULT NULL,
    p_callback_urls text[] DEFAULT NULL
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
                              p_correlation_ids, p_traceparent, p_callback_urls) AS e;
    RETURN QUERY SELECT v_created, d FROM taskq.task_details d
                  WHERE d.queue_id = taskq.queue_id(p_queue) AND d.id = v_id;
END $$;

-- The queue deliveries go through. Its own settings: many retries with a long backoff (a
-- receiver may be down for hours), a short attempt timeout, a payload limit that fits a
-- result excerpt, and a concurrency limit across the database so that deliveries to a slow
-- receiver cannot hold every slot.
CREATE FUNCTION taskq.webhook_queue() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    SELECT q.id INTO v_id FROM taskq.queues q
     WHERE q.namespace = 'taskq-system' AND q.name = 'webhooks';
    IF v_id IS NULL THEN
        v_id := (taskq.ensure_queue('taskq-system', 'webhooks', jsonb_build_object(
            'max_attempts', 12, 'backoff_kind', 'exponential', 'backoff_base_s', 10,
            'backoff_max_s', 3600, 'timeout_s', 60, 'payload_limit_bytes', 1048576,
            'retention_succeeded_s', 3600, 'retention_dead_s', 604800,
            'concurrency_limit', 64))).id;
    END IF;
    RETURN v_id;
END $$;

SELECT taskq.webhook_queue();

-- One queue's finished tasks since its watermark (less the overlap) become deliveries, at
-- most p_limit of them, oldest finish first; returns how many. Runs in one transaction: a
-- notification is recorded as dispatched exactly when its delivery task is enqueued. Its
-- arguments have the bounds of migration 0018's (MAX_PERIOD_SECONDS, MAX_BATCH): a zero
-- overlap would miss the tasks whose finishing transaction committed after a scan.
CREATE FUNCTION taskq.dispatch_webhooks(
    p_queue_id integer, p_overlap_s double precision, p_limit integer
) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_queue taskq.queues;
    v_scanned timestamptz;
    v_from timestamptz;
    v_states text[];
    v_signer taskq.webhooks;
    v_found integer;
    v_last timestamptz;
    v_payloads json[];
    v_correlation_ids text[];
BEGIN
    PERFORM taskq.require_range('dispatch_webhooks', 'p_overlap_s', p_overlap_s, 0, 86400,
                                'seconds', p_low_open => true);
    PERFORM taskq.require_range('dispatch_webhooks', 'p_limit', p_limit, 0, 100000, 'tasks');
    SELECT * INTO v_queue FROM taskq.queues q WHERE q.id = p_queue_id;
    -- deliveries are not announced: a webhook about a webhook would never end
    IF v_queue.id IS NULL OR v_queue.namespace = 'taskq-system' THEN
        RETURN 0;
    END IF;
    -- a first scan starts now, less the overlap
    INSERT INTO taskq.webhook_scans (queue_id, scanned_to) VALUES (p_queue_id, now())
        ON CONFLICT (queue_id) DO NOTHING;
    -- a dispatcher still at it (a run longer than its period) holds the row: leave it the queue
    SELECT s.scanned_to INTO v_scanned FROM taskq.webhook_scans s
     WHERE s.queue_id = p_queue_id FOR UPDATE SKIP LOCKED;
    IF v_scanned IS NULL THEN
        RETURN 0;
    END IF;
    v_from := v_scanned - make_interval(secs => p_overlap_s);
    DELETE FROM taskq.webhook_dispatches d
     WHERE d.queue_id = p_queue_id AND d.finished_at < v_from;

    SELECT array_agg(DISTINCT e) INTO v_states
      FROM taskq.webhooks w, unnest(w.events) AS e
     WHERE w.namespace = v_queue.namespace AND w.queue = v_queue.name AND w.url IS NOT NULL;
    SELECT * INTO v_signer FROM taskq.webhooks w
     WHERE w.namespace = v_queue.namespace AND w.queue = v_queue.name AND w.url IS NULL;

    WITH candidates AS (
        -- the queue's endpoints: tasks in one of the states they chose, finished since the
        -- endpoint exists (tasks_finished_idx: one range per state)
        SELECT t.id, t.finished_at, w.name AS endpoint, NULL::text AS url
          FROM taskq.tasks t
          JOIN taskq.webhooks w ON w.namespace = v_queue.namespace AND w.queue = v_queue.name
                               AND w.url IS NOT NULL AND t.state = ANY(w.events)
                               AND t.finished_at >= w.created_at
         WHERE v_states IS NOT NULL AND t.queue_id = p_queue_id
           AND t.state = ANY(v_states) AND t.finished_at >= v_from
        UNION ALL
        -- the tasks' own callback URLs (tasks_callback_idx), in the states the queue's
        -- callback signer chose (all three without one: the delivery then fails, visibly)
        SELECT t.id, t.finished_at, '~callback', t.callback_url
          FROM taskq.tasks t
         WHERE t.queue_id = p_queue_id AND t.callback_url IS NOT NULL
           AND t.finished_at >= v_from
           AND (v_signer.id IS NULL OR t.state = ANY(v_signer.events))
    ), fresh AS (
        SELECT c.* FROM candidates c
         WHERE NOT EXISTS (
               SELECT 1 FROM taskq.webhook_dispatches d
                WHERE d.queue_id = p_queue_id AND d.finished_at = c.finished_at
                  AND d.task_id = c.id AND d.endpoint = c.endpoint)
         ORDER BY c.finished_at, c.id, c.endpoint
         LIMIT p_limit
    ), claimed AS (
        -- the scan row's lock keeps other dispatchers out; ON CONFLICT is the second guard
        INSERT INTO taskq.webhook_dispatches (queue_id, finished_at, task_id, endpoint)
        SELECT p_queue_id, f.finished_at, f.id, f.endpoint FROM fresh f
        ON CONFLICT DO NOTHING
        RETURNING task_id, finished_at, endpoint
    )
    SELECT count(*), max(c.finished_at),
           array_agg(taskq.webhook_delivery(v_queue, t, c.endpoint, f.url)
                     ORDER BY c.finished_at, c.task_id, c.endpoint),
           array_agg(t.correlation_id ORDER BY c.finished_at, c.task_id, c.endpoint)
      INTO v_found, v_last, v_payloads, v_correlation_ids
      FROM claimed c
      JOIN fresh f ON f.id = c.task_id AND f.finished_at = c.finished_at
                  AND f.endpoint = c.endpoint
      JOIN taskq.tasks t ON t.queue_id = p_queue_id AND t.id = c.task_id;

    IF v_found > 0 THEN
        PERFORM taskq.webhook_queue();  -- made again if someone dropped it
        PERFORM taskq.enqueue_many(
            'taskq-system/webhooks', array_fill('taskq.webhook'::text, ARRAY[v_found]),
            v_payloads, p_correlation_ids => v_correlation_ids);
    END IF;
    -- a full batch: go on from its last finish next time; otherwise up to now
    UPDATE taskq.webhook_scans s
       SET scanned_to = greatest(s.scanned_to,
                                 CASE WHEN v_found >= p_limit THEN v_last ELSE now() END)
     WHERE s.queue_id = p_queue_id;
    RETURN v_found;
END $$;

-- The delivery task's payload: where to (the endpoint's name, or the task's callback URL),
-- the Standard Webhooks message id (the same on every retry, so receivers can drop
-- duplicates), and the event. A result or error over 256 KiB is left out and said so: the
-- delivery queue's payload limit must never make a dispatch fail.
CREATE FUNCTION taskq.webhook_delivery(
    q taskq.queues, t taskq.tasks, p_endpoint text, p_url text
) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'namespace', q.namespace,
        'queue', q.name,
        'endpoint', CASE WHEN p_endpoint = '~callback' THEN NULL ELSE p_endpoint END,
        'callback_url', p_url,
        'message_id', format('msg_%s_%s_%s', t.id,
                             (extract(epoch FROM t.finished_at) * 1000000)::bigint,
                             CASE WHEN p_endpoint = '~callback' THEN 'callback'
                                  ELSE p_endpoint END),
        'event', jsonb_build_object(
            'type', 'task.' || t.state,
            'timestamp', t.finished_at,
            'data', jsonb_build_object(
                'id', t.id,
                'queue', q.namespace || '/' || q.name,
                'name', t.task_name,
                'state', t.state,
                'result', CASE WHEN octet_length(t.result::text) <= 262144 THEN t.result END,
                'error', CASE WHEN octet_length(t.error::text) <= 262144 THEN t.error END,
                'omitted', to_jsonb(array_remove(ARRAY[
                    CASE WHEN octet_length(t.result::text) > 262144 THEN 'result' END,
                    CASE WHEN octet_length(t.error::text) > 262144 THEN 'error' END], NULL)),
                'correlation_id', t.correlation_id,
                'attempts', t.total_attempts,
                'created_at', t.created_at,
                'started_at', t.started_at,
                'finished_at', t.finished_at)))
$$;
