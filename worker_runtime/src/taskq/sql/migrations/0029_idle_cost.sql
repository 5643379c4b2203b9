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
        -- the winner holds the row's lock already: one more version, once a period
        UPDATE taskq.duties d SET askers = (SELECT count(*) FROM taskq.workers)
         WHERE d.name = p_duty
        RETURNING d.askers INTO askers;
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

-- The beat also answers how many workers poll the worker's queues (the fewest of them; NULL:
-- not counted yet), whence a new return type.
DROP FUNCTION taskq.worker_beat(text, double precision, double precision, integer[]);

CREATE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision,
    p_queue_ids integer[] DEFAULT NULL, OUT rescued integer, OUT pollers integer
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
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
    rescued := 0;
    IF taskq.take_turn('rescue_dead_workers', p_rescue_every_s) THEN
        rescued := taskq.rescue_dead_workers();
        PERFORM taskq.count_pollers();
    END IF;
    SELECT min(p.workers) INTO pollers FROM taskq.queue_pollers p
     WHERE p.queue_id = ANY(p_queue_ids);
END $$;
