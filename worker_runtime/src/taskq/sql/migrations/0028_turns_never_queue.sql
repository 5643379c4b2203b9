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
-- back leaves the turn to the next caller. (The rescue's part, deleting only the rows of silent
-- workers that no beat holds, is in migration 0029.) take_turn is otherwise 0019's.

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
