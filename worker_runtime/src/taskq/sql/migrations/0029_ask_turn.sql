-- One statement per maintenance ask, and a count of who asks (issue 16: a thousand workers on
-- one database). Every process that runs maintenance asked each duty's turn with take_turn
-- and, when it lost, asked turn_free_in when to ask again: two statements per duty per period
-- per process, about 4,000 a second of nothing for 1,000 idle workers and the two one-second
-- duties alone. ask_turn answers both in one, and tells the loser how many processes ask
-- (the winner counts the beating workers once a period into the duty's row), so that losers
-- spread their next asks over a window that grows with them (maintenance/runner.py): the
-- turn is still taken about as promptly, by whichever of the many asks first.

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
