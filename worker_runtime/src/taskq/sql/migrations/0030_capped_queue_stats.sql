-- Queue depth in bounded time (issue 16): every count of queue_stats stops at p_cap rows, so a
-- reading costs at most about p_cap index entries per count whatever the backlog (before, a
-- count(*) over 10,000,000 ready tasks took seconds, and the operator reads every queue every
-- couple of seconds). A count that reached p_cap means "at least p_cap": count_cap comes back
-- with the counts so callers can tell (taskq.models.QueueStats.capped). oldest_ready_at was a
-- min() over every ready task; it is now one index probe per priority present (a skip scan of
-- the claim index) and one of the waiting index.
DROP FUNCTION taskq.queue_stats(integer);

CREATE FUNCTION taskq.queue_stats(p_queue_id integer, p_cap bigint)
RETURNS TABLE(ready bigint, scheduled bigint, running bigint, dead bigint,
              oldest_ready_at timestamptz, succeeded_last_minute bigint,
              dead_last_minute bigint, observed_at timestamptz, count_cap bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM taskq.require_range('queue_stats', 'p_cap', p_cap, 1, 1000000000, 'tasks');
    RETURN QUERY
    WITH RECURSIVE level(priority, run_at) AS (
        -- the oldest ready task of the highest priority, then of each lower one present
        (SELECT r.priority, r.run_at FROM taskq.tasks r
          WHERE r.queue_id = p_queue_id AND r.state = 'ready'
          ORDER BY -r.priority, r.run_at LIMIT 1)
        UNION ALL
        SELECT n.priority, n.run_at FROM level l, LATERAL (
            SELECT r.priority, r.run_at FROM taskq.tasks r
             WHERE r.queue_id = p_queue_id AND r.state = 'ready' AND -r.priority > -l.priority
             ORDER BY -r.priority, r.run_at LIMIT 1) n
    )
    SELECT (SELECT count(*) FROM (
                SELECT 1 FROM (
                    (SELECT 1 FROM taskq.tasks r
                      WHERE r.queue_id = p_queue_id AND r.state = 'ready' LIMIT p_cap)
                    UNION ALL
                    (SELECT 1 FROM taskq.tasks w
                      WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
                        AND w.run_at <= now() LIMIT p_cap)) u
                 LIMIT p_cap) c),
           (SELECT count(*) FROM (
                SELECT 1 FROM taskq.tasks w
                 WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
                   AND w.run_at > now() LIMIT p_cap) c),
           (SELECT count(*) FROM (
                SELECT 1 FROM taskq.tasks r
                 WHERE r.queue_id = p_queue_id AND r.state = 'running' LIMIT p_cap) c),
           (SELECT count(*) FROM (
                SELECT 1 FROM taskq.tasks d
                 WHERE d.queue_id = p_queue_id AND d.state = 'dead' AND d.finished_at IS NOT NULL
                 LIMIT p_cap) c),
           least((SELECT min(l.run_at) FROM level l),
                 (SELECT w.run_at FROM taskq.tasks w
                   WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying')
                     AND w.run_at <= now()
                   ORDER BY w.run_at LIMIT 1)),
           (SELECT count(*) FROM (
                SELECT 1 FROM taskq.tasks s
                 WHERE s.queue_id = p_queue_id AND s.state = 'succeeded'
                   AND s.finished_at > now() - interval '1 minute' LIMIT p_cap) c),
           (SELECT count(*) FROM (
                SELECT 1 FROM taskq.tasks d
                 WHERE d.queue_id = p_queue_id AND d.state = 'dead'
                   AND d.finished_at > now() - interval '1 minute' LIMIT p_cap) c),
           now(),
           p_cap;
END $$;
