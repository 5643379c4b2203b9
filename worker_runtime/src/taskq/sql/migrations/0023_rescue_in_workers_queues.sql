-- A dead worker's tasks are looked for in the queues it served, not in every queue. Before,
-- rescue_dead_workers read taskq.tasks without a queue id: each rescue planned, and locked,
-- every queue's partition and its indexes (about eleven locks per queue) and updated through
-- the parent, so with many queues a rescue could run the lock table out ('out of shared
-- memory') for every transaction of the database, and fail at every turn while the dead
-- worker's tasks waited for their leases.

-- The queue ids a worker claims from, as its beats report them (NULL: a worker from before
-- this migration, whose rescue still looks in every queue).
ALTER TABLE taskq.workers ADD COLUMN queue_ids integer[];

DROP FUNCTION taskq.worker_beat(text, double precision, double precision);

CREATE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision,
    p_queue_ids integer[] DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
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

-- One queue's running tasks of the workers p_dead, at most p_limit of them, become ready (or
-- dead, or canceled) with a 'lost' attempt, as rescue_dead_workers did for every queue at
-- once; still_held: those of the workers whose tasks here were locked by someone else (they
-- keep their worker row until a later turn takes them).
CREATE FUNCTION taskq.rescue_dead_in_queue(
    p_queue_id integer, p_dead text[], p_limit integer,
    OUT rescued integer, OUT still_held text[]
)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_priority smallint;
    v_run_at timestamptz;
BEGIN
    WITH lost AS (
        SELECT e.queue_id, e.id, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
          FROM taskq.tasks e
         WHERE e.queue_id = p_queue_id AND e.state = 'running' AND e.worker_id = ANY(p_dead)
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
         WHERE t.queue_id = p_queue_id AND t.id = l.id
        RETURNING t.queue_id, t.id, t.error, l.worker_id, l.attempt_id, l.total_attempts,
                  l.started_at, t.state, t.priority, t.run_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT r.queue_id, r.id, r.total_attempts, r.attempt_id, r.worker_id, r.started_at,
               now(), 'lost', r.error
          FROM rescued r
    )
    SELECT count(*),
           (array_agg(r.priority ORDER BY r.priority DESC, r.run_at)
                FILTER (WHERE r.state = 'ready'))[1],
           (array_agg(r.run_at ORDER BY r.priority DESC, r.run_at)
                FILTER (WHERE r.state = 'ready'))[1]
      INTO rescued, v_priority, v_run_at FROM rescued r;
    -- the queue's workers resume their claims no later than its first rescued task
    IF v_priority IS NOT NULL THEN
        PERFORM taskq.notify_ready(p_queue_id, v_priority, v_run_at);
    END IF;
    still_held := ARRAY(SELECT DISTINCT t.worker_id FROM taskq.tasks t
                         WHERE t.queue_id = p_queue_id AND t.state = 'running'
                           AND t.worker_id = ANY(p_dead));
END $$;

CREATE OR REPLACE FUNCTION taskq.rescue_dead_workers(p_limit integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_dead text[];
    v_queues integer[];
    v_queue integer;
    v_count integer := 0;
    v_held text[] := '{}';
    v_rescued integer;
    v_still_held text[];
    v_resumed timestamptz;
BEGIN
    PERFORM taskq.require_range('rescue_dead_workers', 'p_limit', p_limit, 0, 100000, 'tasks');
    -- silence counts from the last beat, or from when the turns resumed after an outage
    SELECT d.resumed_at INTO v_resumed FROM taskq.duties d WHERE d.name = 'rescue_dead_workers';
    SELECT array_agg(w.worker_id) INTO v_dead FROM taskq.workers w
     WHERE greatest(w.beat_at, v_resumed) < now() - make_interval(secs => w.dead_after_s);
    IF v_dead IS NULL THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM taskq.workers w
                WHERE w.worker_id = ANY(v_dead) AND w.queue_ids IS NULL) THEN
        v_queues := ARRAY(SELECT q.id FROM taskq.queues q ORDER BY q.id);
    ELSE
        v_queues := ARRAY(SELECT DISTINCT q FROM taskq.workers w, unnest(w.queue_ids) AS q
                           WHERE w.worker_id = ANY(v_dead) ORDER BY q);
    END IF;
    FOREACH v_queue IN ARRAY v_queues LOOP
        EXIT WHEN v_count >= p_limit;
        SELECT s.rescued, s.still_held INTO v_rescued, v_still_held
          FROM taskq.rescue_dead_in_queue(v_queue, v_dead, p_limit - v_count) s;
        v_count := v_count + v_rescued;
        v_held := v_held || v_still_held;
    END LOOP;
    -- a worker goes once every queue it served was looked at and none of its tasks is left
    IF v_count < p_limit THEN
        DELETE FROM taskq.workers w
         WHERE w.worker_id = ANY(v_dead) AND NOT w.worker_id = ANY(v_held);
    END IF;
    RETURN v_count;
END $$;
