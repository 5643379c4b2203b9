-- The dashboard's queue page and overview (issue 12): the worker pools that serve a queue, and
-- the throughput and wait charts.
--
-- 1. taskq.worker_pools: one row per WorkerPool, written by the operator (which owns the
--    autoscaler) into the database of the pool's queues, and only when something about the
--    pool changed: its queues, desired, current or ready replicas, or a scaling decision (the
--    last 20 kept, newest first). Never once per autoscaler tick. The API server reads it, so
--    it shows the pools next to a queue without Kubernetes credentials, from outside the
--    cluster too; without an operator the table is empty and the page shows no pools.
-- 2. taskq.queue_throughput replaces migration 0022's function of that name. It counts from
--    p_since with one range of tasks_finished_idx per outcome, not one per minute, so a caller
--    that remembers closed minutes asks for the last two only.
-- 3. taskq.queue_wait: how long tasks waited from due (enqueued, or the end of their delay or
--    backoff) to the start of the attempt that succeeded, per minute of finishing, from a
--    sample of at most p_sample tasks per minute (bounded heap reads whatever the throughput).

CREATE TABLE taskq.worker_pools (
    namespace   text NOT NULL,
    name        text NOT NULL,
    queues      text[] NOT NULL,           -- queue names, in the pool's namespace
    autoscaling text NOT NULL,             -- Builtin | External
    min_replicas integer NOT NULL,
    max_replicas integer NOT NULL,
    desired     integer NOT NULL,
    replicas    integer NOT NULL,
    ready       integer NOT NULL,
    -- [{"at", "from", "to", "reason", "message"}, ...], newest first, at most 20
    decisions   jsonb NOT NULL DEFAULT '[]',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name),
    CONSTRAINT worker_pool_decisions_array CHECK (jsonb_typeof(decisions) = 'array')
);

-- Record a pool as the operator sees it; p_decisions (newest first, may be empty) are put in
-- front of those recorded, and the newest 20 kept.
CREATE FUNCTION taskq.record_worker_pool(
    p_namespace text, p_name text, p_queues text[], p_autoscaling text,
    p_min_replicas integer, p_max_replicas integer,
    p_desired integer, p_replicas integer, p_ready integer, p_decisions jsonb)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO taskq.worker_pools AS p
           (namespace, name, queues, autoscaling, min_replicas, max_replicas,
            desired, replicas, ready, decisions, updated_at)
    VALUES (p_namespace, p_name, p_queues, p_autoscaling, p_min_replicas, p_max_replicas,
            p_desired, p_replicas, p_ready,
            coalesce((SELECT jsonb_agg(d.e ORDER BY d.o)
                        FROM jsonb_array_elements(p_decisions) WITH ORDINALITY d(e, o)
                       WHERE d.o <= 20), '[]'),
            now())
    ON CONFLICT (namespace, name) DO UPDATE
       SET queues = EXCLUDED.queues, autoscaling = EXCLUDED.autoscaling,
           min_replicas = EXCLUDED.min_replicas, max_replicas = EXCLUDED.max_replicas,
           desired = EXCLUDED.desired, replicas = EXCLUDED.replicas, ready = EXCLUDED.ready,
           decisions = coalesce((SELECT jsonb_agg(d.e ORDER BY d.o)
                                   FROM jsonb_array_elements(p_decisions || p.decisions)
                                        WITH ORDINALITY d(e, o)
                                  WHERE d.o <= 20), '[]'),
           updated_at = now();
$$;

-- Tasks of a queue that finished succeeded or dead in each whole minute from p_since's minute
-- to the current one, oldest first (minutes without any: zeros). It replaces migration 0022's
-- queue_throughput over the last p_minutes, which counted one index range per minute.
DROP FUNCTION taskq.queue_throughput(integer, integer);

CREATE FUNCTION taskq.queue_throughput(p_queue_id integer, p_since timestamptz)
RETURNS TABLE (minute timestamptz, succeeded bigint, dead bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY
    WITH counted AS (
        SELECT date_trunc('minute', t.finished_at) AS m,
               count(*) FILTER (WHERE t.state = 'succeeded') AS s,
               count(*) FILTER (WHERE t.state = 'dead') AS d
          FROM taskq.tasks t
         WHERE t.queue_id = p_queue_id AND t.state IN ('succeeded', 'dead')
           AND t.finished_at IS NOT NULL
           AND t.finished_at >= date_trunc('minute', p_since)
         GROUP BY 1
    )
    SELECT g.m, coalesce(c.s, 0), coalesce(c.d, 0)
      FROM generate_series(date_trunc('minute', p_since), date_trunc('minute', now()),
                           interval '1 minute') AS g(m)
      LEFT JOIN counted c ON c.m = g.m
     ORDER BY g.m;
END $$;

-- The wait of succeeded tasks (started_at - run_at: from due to the start of the attempt that
-- succeeded) in each whole minute of finishing from p_since's minute to the current one, oldest
-- first: how many were sampled (at most p_sample, the first of the minute) and their median and
-- 95th percentile in seconds (NULL in a minute without any).
CREATE FUNCTION taskq.queue_wait(p_queue_id integer, p_since timestamptz, p_sample integer)
RETURNS TABLE (minute timestamptz, sampled bigint, p50_s double precision,
               p95_s double precision)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM taskq.require_range('queue_wait', 'p_sample', p_sample, 1, 10000, 'tasks');
    RETURN QUERY
    SELECT g.m, w.n, w.p[1], w.p[2]
      FROM generate_series(date_trunc('minute', p_since), date_trunc('minute', now()),
                           interval '1 minute') AS g(m)
     CROSS JOIN LATERAL (
        SELECT count(*) AS n,
               percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY x.wait_s) AS p
          FROM (SELECT greatest(extract(epoch FROM t.started_at - t.run_at), 0)::float8 AS wait_s
                  FROM taskq.tasks t
                 WHERE t.queue_id = p_queue_id AND t.state = 'succeeded'
                   AND t.finished_at IS NOT NULL
                   AND t.finished_at >= g.m AND t.finished_at < g.m + interval '1 minute'
                 LIMIT p_sample) x
     ) w
     ORDER BY g.m;
END $$;
