-- Claims resume where the worker's last claim on the queue left off (issue 18, item 3).
--
-- Under a long-lived snapshot (a transaction left idle, a long report, a lagging replica with
-- hot_standby_feedback) nothing a claim makes obsolete can be removed, and the ready index keeps
-- an entry for every task claimed since: a claim that walks the index from the queue's front
-- visits each of them in the heap (claim p99 6x its clean value after 100 s at 800 tasks/s).
-- taskq.claim gains a resume point (p_resume_priority, p_resume_at, p_resume_id: the last task
-- the caller claimed) and reads the ready index after it, in claim order; it returns each
-- task's run_at so that the caller knows its next resume point. Without one (the defaults) it
-- claims from the front, as before.
--
-- A task can become ready before a worker's resume point: a higher priority, an enqueue that
-- committed after a later one, a released or rescued task, a replayed one. Every path that
-- makes tasks ready says so with taskq.notify_ready, whose payload carries a point before
-- them in claim order ("<queue id> <priority> <run_at in microseconds since the epoch>", id 0);
-- a worker moves its resume point back to it. A worker that may have missed
-- notifications claims from the front again (docs/design.md, "Claims resume where they left
-- off").
--
-- The ready index is rebuilt on -priority so that "from this point on, in claim order" is one
-- range of it (a row comparison); the claim stays one statement, planned once.

CREATE FUNCTION taskq.notify_ready(p_queue_id integer, p_priority integer, p_from timestamptz)
RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('taskq_ready', format('%s %s %s', p_queue_id, p_priority,
                                           floor(extract(epoch FROM p_from) * 1000000)::bigint))
$$;

CREATE INDEX tasks_claim_order_idx ON taskq.tasks (queue_id, (-priority), run_at, id)
    WHERE state = 'ready';
DROP INDEX taskq.tasks_ready_idx;

DROP FUNCTION taskq.claim(integer, text, integer, double precision, boolean);

CREATE FUNCTION taskq.claim(
    p_queue_id integer, p_worker_id text, p_limit integer, p_lease_s double precision,
    p_promote boolean DEFAULT true, p_resume_priority smallint DEFAULT NULL,
    p_resume_at timestamptz DEFAULT NULL, p_resume_id bigint DEFAULT 0
) RETURNS TABLE (
    id bigint, task_name text, payload jsonb, priority smallint, attempt integer,
    attempt_id uuid, max_attempts integer, timeout_s double precision,
    correlation_id text, idempotency_key text, created_at timestamptz, run_at timestamptz
)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
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

CREATE OR REPLACE FUNCTION taskq.enqueue_many(
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

CREATE OR REPLACE FUNCTION taskq.release(
    p_queue_id integer, p_worker_id text, p_ids bigint[], p_attempt_ids uuid[]
) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_count integer;
    v_from_priority smallint;
    v_from_at timestamptz;
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
        RETURNING t.id, t.total_attempts, t.started_at, p_attempt_ids[i.ord] AS attempt_id,
                  t.state, t.priority, t.run_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome)
        SELECT p_queue_id, r.id, r.total_attempts, r.attempt_id, p_worker_id, r.started_at, now(),
               'released'
          FROM released r
    )
    SELECT count(*),
           (array_agg(r.priority ORDER BY r.priority DESC, r.run_at)
               FILTER (WHERE r.state = 'ready'))[1],
           (array_agg(r.run_at ORDER BY r.priority DESC, r.run_at)
               FILTER (WHERE r.state = 'ready'))[1]
      INTO v_count, v_from_priority, v_from_at FROM released r;
    IF v_from_at IS NOT NULL THEN
        PERFORM taskq.notify_ready(p_queue_id, v_from_priority, v_from_at);
    END IF;
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION taskq.replay_dead(p_queue_id integer, p_ids bigint[] DEFAULT NULL)
RETURNS TABLE (replayed integer, skipped integer)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_replayed integer;
    v_dead integer;
    v_top smallint;
BEGIN
    SELECT count(*) INTO v_dead FROM taskq.tasks t
     WHERE t.queue_id = p_queue_id AND t.state = 'dead' AND (p_ids IS NULL OR t.id = ANY(p_ids));
    -- Of dead tasks sharing an idempotency key only the newest comes back: replaying them all
    -- would make several unfinished tasks hold one key (a unique violation).
    WITH replayed AS (
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
                  AND u.state IN ('scheduled', 'ready', 'running', 'retrying')))
        RETURNING t.priority
    )
    SELECT count(*), max(r.priority) INTO v_replayed, v_top FROM replayed r;
    IF v_replayed > 0 THEN
        PERFORM taskq.notify_ready(p_queue_id, v_top, now());
    END IF;
    RETURN QUERY SELECT v_replayed, v_dead - v_replayed;
END $$;

CREATE OR REPLACE FUNCTION taskq.rescue_dead_workers(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_dead text[];
    v_count integer;
    v_queues integer[];
    v_priorities smallint[];
    v_run_ats timestamptz[];
BEGIN
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
