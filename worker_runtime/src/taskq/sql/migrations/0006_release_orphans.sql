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
    v_ids bigint[];
    v_attempt_ids uuid[];
BEGIN
    SELECT array_agg(o.id), array_agg(o.attempt_id) INTO v_ids, v_attempt_ids
      FROM taskq.tasks o
     WHERE o.queue_id = p_queue_id AND o.state = 'running' AND o.worker_id = p_worker_id
       AND o.id <> ALL(p_known);
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN taskq.release(p_queue_id, p_worker_id, v_ids, v_attempt_ids);
END $$;
