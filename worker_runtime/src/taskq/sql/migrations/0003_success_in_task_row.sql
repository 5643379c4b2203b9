-- A task's successful attempt is recorded in the task row alone: the row keeps the attempt's
-- id and worker (and already holds its attempt number, start and finish). taskq.attempts keeps
-- the attempts that did not succeed. Writing a history row for every success was a sixth of
-- the database's work per task; taskq.attempt_history shows both as one history.

-- Succeeded tasks recorded before: their success moves from the history into the task row.
ALTER TABLE taskq.tasks DROP CONSTRAINT task_running_has_lease;
UPDATE taskq.tasks t SET worker_id = a.worker_id, attempt_id = a.attempt_id
  FROM taskq.attempts a
 WHERE t.state = 'succeeded' AND a.queue_id = t.queue_id AND a.task_id = t.id
   AND a.attempt = t.total_attempts AND a.outcome = 'succeeded';
DELETE FROM taskq.attempts WHERE outcome = 'succeeded';

-- a running task, and only a running task, has a lease
ALTER TABLE taskq.tasks ADD CONSTRAINT task_running_has_lease
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL));
-- a running task is held by its attempt; a succeeded one names the attempt that succeeded
ALTER TABLE taskq.tasks ADD CONSTRAINT task_attempt_held_or_succeeded
    CHECK ((state IN ('running', 'succeeded')) = (worker_id IS NOT NULL AND attempt_id IS NOT NULL));
ALTER TABLE taskq.attempts DROP CONSTRAINT attempt_outcome_known;
ALTER TABLE taskq.attempts ADD CONSTRAINT attempt_outcome_known
    CHECK (outcome IN ('failed', 'timed_out', 'lost', 'canceled', 'released'));
ALTER TABLE taskq.attempts DROP CONSTRAINT attempt_error_unless_succeeded;
ALTER TABLE taskq.attempts ADD CONSTRAINT attempt_failure_has_error
    CHECK (error IS NOT NULL OR outcome IN ('canceled', 'released'));

-- Every attempt of every task, in one shape.
CREATE VIEW taskq.attempt_history AS
SELECT a.queue_id, a.task_id, a.attempt, a.attempt_id, a.worker_id, a.started_at, a.finished_at,
       a.outcome, a.error
  FROM taskq.attempts a
UNION ALL
SELECT t.queue_id, t.id, t.total_attempts, t.attempt_id, t.worker_id, t.started_at, t.finished_at,
       'succeeded', NULL::jsonb
  FROM taskq.tasks t
 WHERE t.state = 'succeeded';

-- Record the outcome of attempts: one queue and one outcome per call, ids and attempt ids
-- aligned by position. Results and errors come only for the tasks that have them, in
-- p_details = {"<task id>": {"result": <json>, "error": <json>}}.
-- p_outcome: succeeded | failed (retried while attempts remain) | fatal (dead at once)
--            | timed_out (retried while attempts remain) | canceled
-- A success is recorded in the task row alone (it keeps the attempt's id and worker); every
-- other outcome also adds a row to taskq.attempts.
-- Only the current attempt of a running task can finish it: an attempt whose lease was lost
-- (the task rescued and claimed again) is ignored and not returned.
--
-- Arrays are read by position from a single-array unnest (whose row count the planner knows;
-- a multi-array unnest is estimated at 100 rows and led to a nested loop of batch x batch).
-- Only fixed-width arrays are subscripted: subscripting text[] or jsonb[] walks the array
-- from its start, which made a batch quadratic.
CREATE OR REPLACE FUNCTION taskq.complete(
    p_queue_id integer, p_worker_id text, p_outcome text, p_ids bigint[], p_attempt_ids uuid[],
    p_details jsonb DEFAULT NULL
) RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_retryable boolean := p_outcome IN ('failed', 'timed_out');
    v_history_outcome text := CASE p_outcome WHEN 'fatal' THEN 'failed' ELSE p_outcome END;
BEGIN
    IF p_outcome NOT IN ('succeeded', 'failed', 'fatal', 'timed_out', 'canceled') THEN
        RAISE EXCEPTION 'complete: unknown outcome %', p_outcome USING ERRCODE = 'TQ003';
    END IF;
    RETURN QUERY
    WITH finished AS (
        UPDATE taskq.tasks t
           SET state = CASE
                   WHEN p_outcome IN ('succeeded', 'canceled') THEN p_outcome
                   -- the user asked it to stop: a failure while stopping earns no retry
                   WHEN t.cancel_requested THEN 'canceled'
                   WHEN v_retryable AND t.attempts < t.max_attempts THEN 'retrying'
                   ELSE 'dead' END,
               run_at = CASE
                   WHEN v_retryable AND t.attempts < t.max_attempts AND NOT t.cancel_requested
                   THEN taskq.retry_at(t, q)
                   ELSE t.run_at END,
               finished_at = CASE
                   WHEN v_retryable AND t.attempts < t.max_attempts AND NOT t.cancel_requested
                   THEN NULL ELSE now() END,
               result = p_details -> t.id::text -> 'result',
               error = CASE WHEN p_outcome = 'succeeded' THEN NULL
                            ELSE coalesce(p_details -> t.id::text -> 'error', t.error) END,
               worker_id = CASE WHEN p_outcome = 'succeeded' THEN t.worker_id END,
               attempt_id = CASE WHEN p_outcome = 'succeeded' THEN t.attempt_id END,
               lease_expires_at = NULL
          FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord), taskq.queues q
         WHERE q.id = p_queue_id AND t.queue_id = p_queue_id AND t.id = ANY(p_ids)
           AND t.id = i.id AND t.state = 'running' AND t.attempt_id = p_attempt_ids[i.ord]
        RETURNING t.id, t.state, t.total_attempts, t.started_at, t.error, i.ord
    ), history AS (
        INSERT INTO taskq.attempts (queue_id, task_id, attempt, attempt_id, worker_id,
                                    started_at, finished_at, outcome, error)
        SELECT p_queue_id, f.id, f.total_attempts, p_attempt_ids[f.ord], p_worker_id,
               f.started_at, now(), v_history_outcome,
               CASE WHEN p_outcome = 'canceled' THEN NULL ELSE f.error END
          FROM finished f
         WHERE p_outcome <> 'succeeded'
    )
    SELECT f.id, f.state FROM finished f;
END $$;
