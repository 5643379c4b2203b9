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
-- the row it locked. take_turn is otherwise 0019's, rescue_dead_workers 0023's.

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
               paused_at = CASE WHEN d.last_run_at < pg_postmaster_start_time()
                                THEN taskq.last_seen_before_start() ELSE d.paused_at END,
               resumed_at = CASE WHEN d.last_run_at < pg_postmaster_start_time()
                                 THEN CASE WHEN taskq.last_seen_before_start() IS NOT NULL
                                           THEN now() END
                                 ELSE d.resumed_at END
          FROM free f
         WHERE d.name = f.name
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM taken)
$$;

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
        -- a row locked is a worker beating right now: alive, and skipped rather than waited
        -- for (its beat may be waiting for this turn's row: a deadlock); the silence is
        -- checked again on the row locked
        DELETE FROM taskq.workers w
         WHERE w.worker_id = ANY(ARRAY(
               SELECT d.worker_id FROM taskq.workers d
                WHERE d.worker_id = ANY(v_dead) AND NOT d.worker_id = ANY(v_held)
                  AND greatest(d.beat_at, v_resumed)
                      < now() - make_interval(secs => d.dead_after_s)
                  FOR UPDATE SKIP LOCKED));
    END IF;
    RETURN v_count;
END $$;
