-- Turns never queue (issue 16: a thousand workers on one database). Every worker's beat asks
-- for the rescue_dead_workers turn once a second, and maintenance asks for its turns too, all
-- on one row per duty. take_turn updated that row with a plain UPDATE: while the winner's
-- transaction ran (its rescue included), every other caller waited for it, holding its own
-- workers row (the beat updates it first). The winner's rescue then deleted the rows of
-- workers it found silent, waiting for a row a slow beat held while that beat waited for the
-- turn: a deadlock. Measured with 1,000 workers starting through PgBouncer on 2 cores: beats
-- failed with "deadlock detected", then queued for minutes, each holding a server connection.
--
-- Now take_turn locks the duty's row with SKIP LOCKED first: a row locked is a turn being taken
-- right now, so the caller lost it, at once. Exactly one caller per period still wins (the
-- lock holder re-checks last_run_at on the latest version). A winner whose transaction rolls
-- back leaves the turn to the next caller. And rescue_dead_workers deletes only the rows of
-- silent workers that no beat holds (one holding it is alive), checking the silence again on
-- the row it locked. Both bodies are otherwise 0019's.

CREATE OR REPLACE FUNCTION taskq.take_turn(p_duty text, p_every_s double precision) RETURNS boolean
LANGUAGE sql AS $$
    SELECT taskq.require_range('take_turn', 'p_every_s', p_every_s, 0, 86400, 'seconds',
                               p_low_open => true);
    WITH free AS (
        -- a row locked is a turn being taken right now: lost, without waiting for it
        SELECT f.name FROM taskq.duties f
         WHERE f.name = p_duty AND f.last_run_at <= now() - make_interval(secs => p_every_s)
         FOR UPDATE SKIP LOCKED
    ), taken AS (
        -- every SET expression reads the row as it was: d.last_run_at is the previous turn
        UPDATE taskq.duties d
           SET last_run_at = now(),
               paused_at = CASE WHEN isfinite(d.last_run_at)
                                     AND d.last_run_at < pg_postmaster_start_time()
                                THEN d.last_run_at ELSE d.paused_at END,
               resumed_at = CASE WHEN isfinite(d.last_run_at)
                                      AND d.last_run_at < pg_postmaster_start_time()
                                 THEN now() ELSE d.resumed_at END
          FROM free f
         WHERE d.name = f.name
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM taken)
$$;

CREATE OR REPLACE FUNCTION taskq.rescue_dead_workers(p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_dead text[];
    v_count integer;
    v_queues integer[];
    v_priorities smallint[];
    v_run_ats timestamptz[];
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
    -- a row locked is a worker beating right now: alive, and skipped rather than waited for
    -- (its beat may be waiting for this turn's row: a deadlock)
    DELETE FROM taskq.workers w
     WHERE w.worker_id = ANY(ARRAY(
           SELECT d.worker_id FROM taskq.workers d
            WHERE d.worker_id = ANY(v_dead)
              AND greatest(d.beat_at, v_resumed) < now() - make_interval(secs => d.dead_after_s)
              AND NOT EXISTS (SELECT FROM taskq.tasks t
                               WHERE t.state = 'running' AND t.worker_id = d.worker_id)
              FOR UPDATE SKIP LOCKED));
    RETURN v_count;
END $$;
