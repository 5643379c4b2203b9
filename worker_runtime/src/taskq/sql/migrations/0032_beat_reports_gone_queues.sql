-- A worker learns from its beat that a queue it claims from is gone (issue 16: what an idle
-- worker costs). Each worker looked every queue of its own up by name every few seconds, to
-- follow a queue dropped and provisioned again under a new id: 0.19 statements a second per
-- idle worker, the largest kind after the beat, for an event that almost never happens. The
-- beat already names the worker's queues; it now also answers which of them no longer exist,
-- and the worker looks up by name only then.

DROP FUNCTION taskq.worker_beat(text, double precision, double precision, integer[],
                                double precision);

CREATE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision,
    p_queue_ids integer[] DEFAULT NULL, p_beat_every_s double precision DEFAULT 1,
    OUT rescued integer, OUT pollers integer, OUT gone_queue_ids integer[]
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
    -- queues dropped (and perhaps provisioned again under a new id) since the worker looked
    -- them up: it follows them by name only when told, instead of looking every few seconds
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO gone_queue_ids
      FROM unnest(p_queue_ids) AS b(id)
     WHERE NOT EXISTS (SELECT FROM taskq.queues q WHERE q.id = b.id);
END $$;
