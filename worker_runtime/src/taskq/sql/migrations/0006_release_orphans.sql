-- A claim can commit on the server while its worker never learns of it: the connection broke
-- between the commit and the reply (a killed backend), or the worker gave up waiting (its
-- deadline). Those tasks are held by a live worker that does not run them, and would wait
-- out their lease. After such a failure the worker gives back every task the database says
-- it holds in the queue but that it does not know of (p_known: the tasks it runs or whose
-- outcome it has yet to record), as `release` does: ready again, the attempt not counted,
-- recorded as `released`.
CREATE FUNCTION taskq.release_orphans(
    p_queue_id integer, p_worker_id text, p_known bigint[]
) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_count integer;
BEGIN
    WITH orphans AS (
        SELECT o.id, o.attempt_id
          FROM taskq.tasks o
         WHERE o.queue_id = p_queue_id AND o.state = 'running' AND o.worker_id = p_worker_id
           AND o.id <> ALL(p_known)
           FOR UPDATE SKIP LOCKED
    ), released AS (
        UPDATE taskq.tasks t
           SET state = CASE WHEN t.cancel_requested THEN 'canceled' ELSE 'ready' END,
               finished_at = CASE WHEN t.cancel_requested THEN now() END,
               attempts = t.attempts - 1, worker_id = NULL, attempt_id = NULL,
               lease_expires_at = NULL
          FROM orphans o
         WHERE t.queue_id = p_queue_id AND t.id = o.id
        RETURNING t.id, t.total_attempts, t.started_at, o.attempt_id
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome)
        SELECT p_queue_id, r.id, r.total_attempts, r.attempt_id, p_worker_id, r.started_at, now(),
               'released'
          FROM released r
    )
    SELECT count(*) INTO v_count FROM released;
    IF v_count > 0 THEN
        PERFORM pg_notify('taskq_ready', p_queue_id::text);
    END IF;
    RETURN v_count;
END $$;
