-- What an idle worker costs the database (issue 16: a thousand workers on one database).
--
-- One statement per maintenance ask, and a count of who asks. Every process that runs
-- maintenance asked each duty's turn with take_turn and, when it lost, asked turn_free_in when
-- to ask again: two statements per duty per period per process, about 4,000 a second of
-- nothing for 1,000 idle workers and the two one-second duties alone. ask_turn answers both in
-- one, and tells the loser how many processes ask (the winner counts the beating workers once
-- a period into the duty's row), so that losers spread their next asks over a window that
-- grows with them (maintenance/runner.py): the turn is still taken about as promptly, by
-- whichever of the many asks first.

ALTER TABLE taskq.duties ADD COLUMN askers integer;

CREATE FUNCTION taskq.ask_turn(
    p_duty text, p_every_s double precision,
    OUT taken boolean, OUT free_in double precision, OUT askers integer
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM taskq.require_range('ask_turn', 'p_every_s', p_every_s, 0, 86400, 'seconds',
                                p_low_open => true);
    taken := taskq.take_turn(p_duty, p_every_s);
    IF taken THEN
        askers := (SELECT count(*) FROM taskq.workers);
        -- the winner holds the row's lock already; a count that did not change writes nothing
        UPDATE taskq.duties d SET askers = ask_turn.askers
         WHERE d.name = p_duty AND d.askers IS DISTINCT FROM ask_turn.askers;
        free_in := p_every_s;
        RETURN;
    END IF;
    -- epochs, not timestamp arithmetic: last_run_at may be -infinity; no row (a duty new to
    -- this database): free_in stays NULL
    SELECT greatest(0, extract(epoch FROM d.last_run_at)::float8 + p_every_s
                       - extract(epoch FROM now())::float8), d.askers
      INTO free_in, askers
      FROM taskq.duties d WHERE d.name = p_duty;
END $$;

-- How many workers poll each queue, so that each polls less often the more there are (their
-- polls together, not each one's, set how soon an idle queue's new task is taken): counted
-- from the workers' beats once a second by the beat that takes the rescue turn, and told to
-- every beat as the fewest of its queues'. A queue no beating worker serves has no row.
CREATE TABLE taskq.queue_pollers (
    queue_id integer PRIMARY KEY,
    workers  integer NOT NULL
);

CREATE FUNCTION taskq.count_pollers() RETURNS void
LANGUAGE sql AS $$
    WITH counted AS (
        SELECT q AS queue_id, count(*)::integer AS workers
          FROM taskq.workers w, unnest(w.queue_ids) AS q
         GROUP BY q
    ), gone AS (
        DELETE FROM taskq.queue_pollers p
         WHERE NOT EXISTS (SELECT FROM counted c WHERE c.queue_id = p.queue_id)
    )
    -- a count that did not change writes nothing
    INSERT INTO taskq.queue_pollers AS p (queue_id, workers)
    SELECT c.queue_id, c.workers FROM counted c
    ON CONFLICT (queue_id) DO UPDATE SET workers = excluded.workers
     WHERE p.workers <> excluded.workers
$$;

-- Silence is measured against the rescuer's own. When the database or the pooler in front of
-- it falls behind (more statements offered than it serves: measured with 1,000 workers through
-- a 20-connection PgBouncer on 2 cores), every beat comes late, and a live worker whose beat
-- waited more than its dead_after_s was taken for dead: its tasks ran again (14,880 lost
-- attempts in one benchmark run). The beat that takes the rescue turn waited as long as the
-- others: a worker is dead once it has been silent dead_after_s longer than that beat's own
-- lateness (its silence past p_beat_every_s). A dead worker's silence grows without bound, so
-- it is still found; in a healthy database the grace is about zero. And the rescue deletes
-- only the rows of silent workers that no beat holds (one holding it is alive, and its beat
-- may be waiting for the rescue's turn: waiting for it was a deadlock, migration 0028),
-- checking the silence again on the row it locked. The body is otherwise 0023's.
DROP FUNCTION taskq.rescue_dead_workers(integer);

CREATE FUNCTION taskq.rescue_dead_workers(
    p_limit integer DEFAULT 1000, p_grace_s double precision DEFAULT 0
) RETURNS integer
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
    v_grace interval;
BEGIN
    PERFORM taskq.require_range('rescue_dead_workers', 'p_limit', p_limit, 0, 100000, 'tasks');
    PERFORM taskq.require_range('rescue_dead_workers', 'p_grace_s', p_grace_s, 0, 86400,
                                'seconds');
    v_grace := make_interval(secs => p_grace_s);
    -- silence counts from the last beat, or from when the turns resumed after an outage
    SELECT d.resumed_at INTO v_resumed FROM taskq.duties d WHERE d.name = 'rescue_dead_workers';
    SELECT array_agg(w.worker_id) INTO v_dead FROM taskq.workers w
     WHERE greatest(w.beat_at, v_resumed) < now() - make_interval(secs => w.dead_after_s) - v_grace;
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
                      < now() - make_interval(secs => d.dead_after_s) - v_grace
                  FOR UPDATE SKIP LOCKED));
    END IF;
    RETURN v_count;
END $$;

-- The beat also answers how many workers poll the worker's queues (the fewest of them; NULL:
-- not counted yet), whence a new return type.
DROP FUNCTION taskq.worker_beat(text, double precision, double precision, integer[]);

CREATE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision,
    p_queue_ids integer[] DEFAULT NULL, p_beat_every_s double precision DEFAULT 1,
    OUT rescued integer, OUT pollers integer
)
LANGUAGE plpgsql AS $$
DECLARE
    v_silent double precision;  -- seconds since this worker's last beat
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM taskq.require_range('worker_beat', 'p_dead_after_s', p_dead_after_s, 0, 86400,
                                'seconds', p_low_open => true);
    PERFORM taskq.require_range('worker_beat', 'p_rescue_every_s', p_rescue_every_s, 0, 86400,
                                'seconds', p_low_open => true);
    PERFORM taskq.require_range('worker_beat', 'cardinality(p_queue_ids)',
                                coalesce(cardinality(p_queue_ids), 0), 0, 10000, 'queues');
    PERFORM taskq.require_range('worker_beat', 'p_beat_every_s', p_beat_every_s, 0, 86400,
                                'seconds', p_low_open => true);
    -- the previous version's beat_at: every SET expression reads the row as it was
    UPDATE taskq.workers w
       SET beat_at = now(), dead_after_s = p_dead_after_s, queue_ids = p_queue_ids
      FROM taskq.workers o
     WHERE w.worker_id = p_worker_id AND o.worker_id = p_worker_id
    RETURNING extract(epoch FROM now() - o.beat_at) INTO v_silent;
    IF NOT FOUND THEN
        INSERT INTO taskq.workers (worker_id, dead_after_s, queue_ids)
        VALUES (p_worker_id, p_dead_after_s, p_queue_ids)
        ON CONFLICT (worker_id) DO NOTHING;
    END IF;
    rescued := 0;
    IF taskq.take_turn('rescue_dead_workers', p_rescue_every_s) THEN
        -- this beat's own lateness is the others' grace (see rescue_dead_workers)
        rescued := taskq.rescue_dead_workers(
            p_grace_s => least(86400, greatest(0, coalesce(v_silent, 0) - p_beat_every_s)));
        PERFORM taskq.count_pollers();
    END IF;
    SELECT min(p.workers) INTO pollers FROM taskq.queue_pollers p
     WHERE p.queue_id = ANY(p_queue_ids);
END $$;
