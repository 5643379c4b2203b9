-- An outage alone causes no rescue (issue 16, item 3). While the database is down, no worker
-- can beat, renew a lease or record an outcome. Before, the first rescue after a restart that
-- took longer than a lease found every lease expired and every beat stale, and handed the
-- tasks of live workers (finished during the outage, their outcomes about to be recorded) to
-- others: they ran twice.
--
-- So the time the database was down does not count against anyone. A rescue duty's first turn
-- after the server started (its previous turn is older than pg_postmaster_start_time(), or it
-- never ran) records the pause: paused_at, the last sign that the previous server was up (a
-- turn of any duty or a worker's beat: a duty may not have had a turn before the outage), and
-- resumed_at, this turn (the database was accepting work again, however long recovery took).
-- Then:
-- - a worker's silence counts from its last beat or from resumed_at, whichever is later: it
--   has dead_after_s to beat again once the database is back;
-- - a lease that ran out after paused_at is extended by the pause: it keeps what it had left
--   when the database went away (at most a lease, so a dead worker's tasks wait that much
--   longer at most, and its stale beat gives them back sooner).
-- Only a restart is recognised: a failover to a standby (whose server started long before) or
-- a network partition cutting every process off still looks like dead workers.
-- The three functions keep the argument bounds of 0018.

ALTER TABLE taskq.duties
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN resumed_at timestamptz;

-- The last sign that the server before this one was up; NULL on a database this server is the
-- first to run.
CREATE FUNCTION taskq.last_seen_before_start() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT max(s.seen) FROM (
        SELECT d.last_run_at FROM taskq.duties d
         WHERE isfinite(d.last_run_at) AND d.last_run_at < pg_postmaster_start_time()
        UNION ALL
        SELECT w.beat_at FROM taskq.workers w WHERE w.beat_at < pg_postmaster_start_time()
    ) s(seen)
$$;

CREATE OR REPLACE FUNCTION taskq.take_turn(p_duty text, p_every_s double precision) RETURNS boolean
LANGUAGE sql AS $$
    SELECT taskq.require_range('take_turn', 'p_every_s', p_every_s, 0, 86400, 'seconds',
                               p_low_open => true);
    WITH taken AS (
        -- every SET expression reads the row as it was: d.last_run_at is the previous turn
        UPDATE taskq.duties d
           SET last_run_at = now(),
               paused_at = CASE WHEN d.last_run_at < pg_postmaster_start_time()
                                THEN taskq.last_seen_before_start() ELSE d.paused_at END,
               resumed_at = CASE WHEN d.last_run_at < pg_postmaster_start_time()
                                 THEN CASE WHEN taskq.last_seen_before_start() IS NOT NULL
                                           THEN now() END
                                 ELSE d.resumed_at END
         WHERE d.name = p_duty AND d.last_run_at <= now() - make_interval(secs => p_every_s)
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
    DELETE FROM taskq.workers w
     WHERE w.worker_id = ANY(v_dead)
       AND NOT EXISTS (SELECT FROM taskq.tasks t
                        WHERE t.state = 'running' AND t.worker_id = w.worker_id);
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION taskq.rescue_expired(p_queue_id integer, p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    v_count integer;
    v_paused timestamptz;
    v_resumed timestamptz;
BEGIN
    PERFORM taskq.require_range('rescue_expired', 'p_limit', p_limit, 0, 100000, 'tasks');
    SELECT d.paused_at, d.resumed_at INTO v_paused, v_resumed
      FROM taskq.duties d WHERE d.name = 'rescue_expired_leases';
    WITH expired AS (
        SELECT e.id, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
          FROM taskq.tasks e
         WHERE e.queue_id = p_queue_id AND e.state = 'running' AND e.lease_expires_at < now()
           -- a lease that ran out after the turns paused is extended by the pause
           AND (v_paused IS NULL OR e.lease_expires_at <= v_paused
                OR e.lease_expires_at + (v_resumed - v_paused) < now())
         ORDER BY e.lease_expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    ), rescued AS (
        UPDATE taskq.tasks t
           SET state = CASE WHEN t.cancel_requested THEN 'canceled'
                            WHEN t.attempts < t.max_attempts THEN 'retrying'
                            ELSE 'dead' END,
               run_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                   THEN taskq.retry_at(t, q)
                   ELSE t.run_at END,
               finished_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                   THEN NULL ELSE now() END,
               error = jsonb_build_object(
                   'type', 'LeaseExpired',
                   'message', format('worker %s stopped renewing its lease (crashed, killed or '
                                     'cut off from the database)', e.worker_id)),
               worker_id = NULL, attempt_id = NULL, lease_expires_at = NULL
          FROM expired e, taskq.queues q
         WHERE q.id = p_queue_id AND t.queue_id = p_queue_id
           AND t.id = ANY(ARRAY(SELECT x.id FROM expired x)) AND t.id = e.id
        RETURNING t.id, t.error, e.worker_id, e.attempt_id, e.total_attempts, e.started_at
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT p_queue_id, r.id, r.total_attempts, r.attempt_id, r.worker_id, r.started_at, now(),
               'lost', r.error
          FROM rescued r
    )
    SELECT count(*) INTO v_count FROM rescued;
    RETURN v_count;
END $$;
