-- A worker process that dies takes its tasks' leases with it: others used to wait out the
-- whole lease (30 s by default) before running those tasks again. Each worker process now
-- beats once a second from a thread of its own (taskq.worker_beat); a worker whose beats
-- stop for longer than its dead_after_s is dead, and its running tasks are made ready again
-- at once, the attempt recorded `lost` (it still counts against max_attempts, so a task that
-- kills its worker every time ends up dead). The lease stays the safety net for workers that
-- never beat and for a live process whose event loop stalls.

-- fillfactor: a beat rewrites its row with no indexed column changed, a HOT update on the
-- same page, so beats leave no index entries and vacuum little.
CREATE TABLE taskq.workers (
    worker_id    text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    beat_at      timestamptz NOT NULL DEFAULT now(),
    dead_after_s double precision NOT NULL,
    CONSTRAINT worker_dead_after_positive CHECK (dead_after_s > 0)
) WITH (fillfactor = 50);

-- Periodic duties shared by every process of a database. taskq.take_turn answers true to
-- exactly one caller per period: the row update serialises concurrent callers, and a caller
-- that waited on it re-checks the period against the winner's update and finds it taken.
CREATE TABLE taskq.duties (
    name        text PRIMARY KEY,
    last_run_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO taskq.duties (name) VALUES ('rescue_dead_workers');

CREATE FUNCTION taskq.take_turn(p_duty text, p_every_s double precision) RETURNS boolean
LANGUAGE sql AS $$
    WITH taken AS (
        UPDATE taskq.duties d SET last_run_at = now()
         WHERE d.name = p_duty AND d.last_run_at <= now() - make_interval(secs => p_every_s)
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM taken)
$$;

-- The running tasks of dead workers (every queue) become ready again, or dead when out of
-- attempts, or canceled if that was asked; the queues are notified; the rows of dead workers
-- that hold nothing any more are deleted. Returns how many tasks it rescued.
CREATE FUNCTION taskq.rescue_dead_workers(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_dead text[];
    v_count integer;
    v_queues integer[];
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
                  l.started_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT r.queue_id, r.id, r.total_attempts, r.attempt_id, r.worker_id, r.started_at,
               now(), 'lost', r.error
          FROM rescued r
    )
    SELECT count(*), array_agg(DISTINCT r.queue_id) INTO v_count, v_queues FROM rescued r;
    PERFORM pg_notify('taskq_ready', q::text) FROM unnest(v_queues) q;
    DELETE FROM taskq.workers w
     WHERE w.worker_id = ANY(v_dead)
       AND NOT EXISTS (SELECT FROM taskq.tasks t
                        WHERE t.state = 'running' AND t.worker_id = w.worker_id);
    RETURN v_count;
END $$;

-- A worker's beat: its row is renewed (made on the first beat), and if this period's turn at
-- rescuing dead workers' tasks is free, the caller takes it. Returns how many tasks it
-- rescued (0 when it was not its turn).
CREATE FUNCTION taskq.worker_beat(
    p_worker_id text, p_dead_after_s double precision, p_rescue_every_s double precision
) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE taskq.workers w SET beat_at = now(), dead_after_s = p_dead_after_s
     WHERE w.worker_id = p_worker_id;
    IF NOT FOUND THEN
        INSERT INTO taskq.workers (worker_id, dead_after_s) VALUES (p_worker_id, p_dead_after_s)
        ON CONFLICT (worker_id) DO NOTHING;
    END IF;
    IF taskq.take_turn('rescue_dead_workers', p_rescue_every_s) THEN
        RETURN taskq.rescue_dead_workers();
    END IF;
    RETURN 0;
END $$;

-- A worker that stops cleanly says so: its row goes at once.
CREATE FUNCTION taskq.worker_gone(p_worker_id text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM taskq.workers WHERE worker_id = p_worker_id
$$;
