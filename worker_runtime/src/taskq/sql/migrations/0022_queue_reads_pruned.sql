-- The last statements on the partitioned tables that were sent as they are: a page of a
-- queue's tasks, its throughput, and the read-back of the tasks an API group enqueued. A
-- prepared statement with `queue_id = $1` is planned with the value for its first five runs;
-- on the sixth PostgreSQL also builds a generic plan, which expands, and locks, every
-- queue's partition and each of its indexes (about eleven locks per queue: with a thousand
-- queues more than the default lock table holds). The read-back was worse: `queue_id =
-- taskq.queue_id($1)` is no constant, so every run planned every partition. Each is now a
-- function planned per call with its values (force_custom_plan), like those of migration
-- 0021, and bounded like those of migration 0018.

-- One page of a queue's tasks, newest first: a backward walk of the partition's primary key
-- (queue_id, id) from p_before_id, the id to start below, that stops after p_limit rows. The
-- filters (NULL, or the infinities for the window: any) are checked on the rows walked, so a
-- rare value costs a long walk (docs/api.md); a correlation id walks that id's own index
-- entries (tasks_correlation_idx) instead. Created in [p_created_after, p_created_before).
CREATE FUNCTION taskq.list_tasks(
    p_queue_id integer, p_state text, p_task_name text, p_correlation_id text,
    p_created_after timestamptz, p_created_before timestamptz, p_before_id bigint,
    p_limit integer
) RETURNS SETOF taskq.task_details
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM taskq.require_range('list_tasks', 'p_limit', p_limit, 0, 10000, 'tasks');
    IF p_correlation_id IS NOT NULL THEN
        RETURN QUERY
            SELECT * FROM taskq.task_details d
             WHERE d.queue_id = p_queue_id
               AND d.correlation_id = p_correlation_id
               AND (p_state IS NULL OR d.state = p_state)
               AND (p_task_name IS NULL OR d.task_name = p_task_name)
               AND d.created_at >= p_created_after AND d.created_at < p_created_before
               AND d.id < p_before_id
             ORDER BY d.id DESC
             LIMIT p_limit;
    ELSE
        RETURN QUERY
            SELECT * FROM taskq.task_details d
             WHERE d.queue_id = p_queue_id
               AND (p_state IS NULL OR d.state = p_state)
               AND (p_task_name IS NULL OR d.task_name = p_task_name)
               AND d.created_at >= p_created_after AND d.created_at < p_created_before
               AND d.id < p_before_id
             ORDER BY d.id DESC
             LIMIT p_limit;
    END IF;
END $$;

-- Tasks of a queue that finished succeeded or dead in each of the last p_minutes whole
-- minutes and the current one, oldest first: one range of tasks_finished_idx per minute and
-- state. The bound is taskq.client's MAX_THROUGHPUT_MINUTES (a day).
CREATE FUNCTION taskq.queue_throughput(p_queue_id integer, p_minutes integer)
RETURNS TABLE (minute timestamptz, succeeded bigint, dead bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM taskq.require_range('queue_throughput', 'p_minutes', p_minutes, 1, 1440,
                                'minutes');
    RETURN QUERY
        SELECT m.minute,
               count(t.id) FILTER (WHERE t.state = 'succeeded'),
               count(t.id) FILTER (WHERE t.state = 'dead')
          FROM generate_series(date_trunc('minute', now()) - make_interval(mins => p_minutes),
                               date_trunc('minute', now()), interval '1 minute') AS m(minute)
          LEFT JOIN taskq.tasks t
            ON t.queue_id = p_queue_id AND t.state IN ('succeeded', 'dead')
           AND t.finished_at >= m.minute AND t.finished_at < m.minute + interval '1 minute'
         GROUP BY m.minute
         ORDER BY m.minute;
END $$;

-- These tasks of the queue named p_queue (namespace/name), as taskq.task_details shows them:
-- what an API group of enqueues reads back in its transaction.
CREATE FUNCTION taskq.queue_tasks_by_id(p_queue text, p_ids bigint[])
RETURNS SETOF taskq.task_details
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_queue_id integer := taskq.queue_id(p_queue);
BEGIN
    PERFORM taskq.require_range('queue_tasks_by_id', 'cardinality(p_ids)',
                                coalesce(cardinality(p_ids), 0), 0, 100000, 'ids');
    RETURN QUERY SELECT * FROM taskq.task_details d
                  WHERE d.queue_id = v_queue_id AND d.id = ANY(p_ids);
END $$;
