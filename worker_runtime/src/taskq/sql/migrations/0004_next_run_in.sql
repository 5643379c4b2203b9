-- Seconds until the earliest delayed or retrying task of a queue is due (zero or less: due
-- now; NULL: none waiting). A worker whose claim came back short sleeps until then instead
-- of a whole poll interval, so delayed tasks and retries start on time.
CREATE FUNCTION taskq.next_run_in(p_queue_id integer) RETURNS double precision
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN (SELECT extract(epoch FROM min(w.run_at) - now())::double precision
              FROM taskq.tasks w
             WHERE w.queue_id = p_queue_id AND w.state IN ('scheduled', 'retrying'));
END $$;
