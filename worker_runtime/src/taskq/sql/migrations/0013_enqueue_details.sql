-- One task enqueued and read back in one call: the API's single enqueue answers with the task,
-- and reading it back was a second round trip (with authentication, a third) per request.
-- The arguments are taskq.enqueue_many's, for one task; the result is the task as
-- taskq.task_details shows it (the existing task when its idempotency key was held) and
-- whether this call created it.

CREATE FUNCTION taskq.enqueue_details(
    p_queue text,
    p_task_names text[],
    p_payloads json[],
    p_priorities integer[] DEFAULT NULL,
    p_delays_s double precision[] DEFAULT NULL,
    p_idempotency_keys text[] DEFAULT NULL,
    p_max_attempts integer[] DEFAULT NULL,
    p_timeouts_s double precision[] DEFAULT NULL,
    p_correlation_ids text[] DEFAULT NULL
) RETURNS TABLE (created boolean, task taskq.task_details)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_id bigint;
    v_created boolean;
BEGIN
    IF cardinality(p_task_names) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'enqueue_details: one task at a time (% given)',
            coalesce(cardinality(p_task_names), 0) USING ERRCODE = 'TQ003';
    END IF;
    SELECT e.id, e.created INTO v_id, v_created
      FROM taskq.enqueue_many(p_queue, p_task_names, p_payloads, p_priorities, p_delays_s,
                              p_idempotency_keys, p_max_attempts, p_timeouts_s,
                              p_correlation_ids) AS e;
    RETURN QUERY SELECT v_created, d FROM taskq.task_details d
                  WHERE d.queue_id = taskq.queue_id(p_queue) AND d.id = v_id;
END $$;
