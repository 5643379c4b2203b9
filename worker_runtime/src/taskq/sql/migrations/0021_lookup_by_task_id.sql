-- Lookups by task id alone take a bounded number of locks, whatever the number of queues.
--
-- A statement over taskq.tasks or taskq.attempts without the queue id as a plan-time constant is
-- planned over every partition: it takes an AccessShareLock on each partition and on each of
-- its indexes (9 per queue for tasks, 2 for attempts) and holds them to the end of its
-- transaction. At a few hundred queues a handful of such statements at once filled
-- PostgreSQL's shared lock table (max_locks_per_transaction x max_connections), and every other
-- transaction, workers' included, failed with "out of shared memory" (17 CI tests:
-- Client.task_attempts, GET /v1/tasks/{id}). The task's id alone was the key of get_task,
-- task_attempts, cancel and the Scheduler's look at a schedule's last task.
--
-- So a lookup by id is two steps:
-- 1. taskq.find_task_queue, a procedure, finds the task's queue by probing the queues'
--    partitions one at a time (newest queue first), by primary key, committing after each probe:
--    at most one partition and its indexes are locked at once, 9 locks, which fit in a backend's
--    16 fast-path lock slots, so a lookup never takes an entry of the shared lock table. Its
--    transactions are read-only and write no WAL. Only a CALL outside a transaction block may
--    commit: inside one, PostgreSQL refuses it ("invalid transaction termination"), and the
--    caller probes with taskq.task_queue_among instead (the client does).
-- 2. The statement itself takes the queue id: taskq.get_task, taskq.task_attempts,
--    taskq.task_state, taskq.cancel(p_queue_id, p_task_id), planned with the queue id as a
--    constant (force_custom_plan) and pruned to its partitions.
-- Nothing is written on enqueue, claim or completion to make this possible (an index of task
-- ids to queues would cost every enqueue a second insert).

-- The first queue among p_queue_ids, in their order, whose partition holds task p_task_id;
-- NULL when none does. Each probe locks the queue's tasks partition and its indexes until the
-- transaction ends. A queue dropped meanwhile is skipped (it holds no task any more).
CREATE FUNCTION taskq.task_queue_among(p_task_id bigint, p_queue_ids integer[])
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_queue_id integer;
    v_found boolean;
BEGIN
    FOREACH v_queue_id IN ARRAY coalesce(p_queue_ids, '{}') LOOP
        BEGIN
            -- the partition's primary key leads with id; the name comes from an integer
            EXECUTE format('SELECT EXISTS (SELECT FROM taskq.%I t WHERE t.id = $1)',
                           'tasks_q' || v_queue_id)
               INTO v_found USING p_task_id;
        EXCEPTION WHEN undefined_table THEN
            v_found := false;
        END;
        IF v_found THEN
            RETURN v_queue_id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- The queue holding task p_task_id (NULL: no such task), with at most one queue's partition
-- locked at a time: CALL it outside a transaction block, e.g.
--   CALL taskq.find_task_queue(p_task_id => 1234, p_queue_id => NULL);
-- Newest queues are probed first; an unknown id probes every queue.
CREATE PROCEDURE taskq.find_task_queue(p_task_id bigint, INOUT p_queue_id integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_queues integer[];
    v_queue_id integer;
BEGIN
    v_queues := ARRAY(SELECT q.id FROM taskq.queues q ORDER BY q.id DESC);
    p_queue_id := NULL;
    FOREACH v_queue_id IN ARRAY v_queues LOOP
        -- the locks of one probe are released before the next
        COMMIT;
        p_queue_id := taskq.task_queue_among(p_task_id, ARRAY[v_queue_id]);
        EXIT WHEN p_queue_id IS NOT NULL;
    END LOOP;
END $$;

-- A task of a known queue, as taskq.task_details shows it; no row when the queue has no such
-- task.
CREATE FUNCTION taskq.get_task(p_queue_id integer, p_task_id bigint)
RETURNS SETOF taskq.task_details
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY SELECT * FROM taskq.task_details d
                  WHERE d.queue_id = p_queue_id AND d.id = p_task_id;
END $$;

-- Every attempt of a task of a known queue (taskq.attempt_history).
CREATE FUNCTION taskq.task_attempts(p_queue_id integer, p_task_id bigint)
RETURNS SETOF taskq.attempt_history
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY SELECT * FROM taskq.attempt_history h
                  WHERE h.queue_id = p_queue_id AND h.task_id = p_task_id;
END $$;

-- The state of a task of a known queue; NULL when the queue has no such task.
CREATE FUNCTION taskq.task_state(p_queue_id integer, p_task_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN (SELECT t.state FROM taskq.tasks t WHERE t.queue_id = p_queue_id AND t.id = p_task_id);
END $$;

-- Cancel a task of a known queue: waiting tasks become canceled at once; a running one is asked
-- to stop (its worker learns through taskq_cancel and its next heartbeat). Returns the task's
-- state afterwards and whether a stop was requested; no row when the queue has no such task.
-- It replaces taskq.cancel(p_task_id), which locked every partition to find the task.
DROP FUNCTION taskq.cancel(bigint);

CREATE FUNCTION taskq.cancel(p_queue_id integer, p_task_id bigint)
RETURNS TABLE (state text, cancel_requested boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_state text;
BEGIN
    SELECT t.state INTO v_state FROM taskq.tasks t
     WHERE t.queue_id = p_queue_id AND t.id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_state IN ('scheduled', 'ready', 'retrying') THEN
        RETURN QUERY UPDATE taskq.tasks t SET state = 'canceled', finished_at = now()
                      WHERE t.queue_id = p_queue_id AND t.id = p_task_id
                      RETURNING t.state, t.cancel_requested;
    ELSIF v_state = 'running' THEN
        PERFORM pg_notify('taskq_cancel', p_task_id::text);
        RETURN QUERY UPDATE taskq.tasks t SET cancel_requested = true
                      WHERE t.queue_id = p_queue_id AND t.id = p_task_id
                      RETURNING t.state, t.cancel_requested;
    ELSE
        RETURN QUERY SELECT t.state, t.cancel_requested FROM taskq.tasks t
                      WHERE t.queue_id = p_queue_id AND t.id = p_task_id;
    END IF;
END $$;

-- Statements of one queue that were sent as top-level prepared statements (queue id $1): the
-- sixth run of each on a connection had PostgreSQL build a generic plan to compare, which
-- planned and locked every partition and its indexes once (2,711 locks at 300 queues,
-- measured). As functions with force_custom_plan they are always pruned to the queue.

-- The state of each task of the queue among p_ids, locked until the transaction ends (a replay
-- of dead tasks checks them, then replays them: the API's retry of a task).
CREATE FUNCTION taskq.task_states_locked(p_queue_id integer, p_ids bigint[])
RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY SELECT t.id, t.state FROM taskq.tasks t
                  WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids) FOR UPDATE;
END $$;

-- The traceparents of tasks of the queue among p_ids that have one (a tracing worker's claims).
CREATE FUNCTION taskq.task_traceparents(p_queue_id integer, p_ids bigint[])
RETURNS TABLE (id bigint, traceparent text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY SELECT t.id, t.traceparent FROM taskq.tasks t
                  WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids)
                    AND t.traceparent IS NOT NULL;
END $$;

-- The queue's dead tasks, the most recently dead first, at most p_limit.
CREATE FUNCTION taskq.list_dead(p_queue_id integer, p_limit integer)
RETURNS SETOF taskq.task_details
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY SELECT * FROM taskq.task_details d
                  WHERE d.queue_id = p_queue_id AND d.state = 'dead'
                  ORDER BY d.finished_at DESC, d.id DESC LIMIT p_limit;
END $$;
