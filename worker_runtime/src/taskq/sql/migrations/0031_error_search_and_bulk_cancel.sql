-- The dashboard's task search by error text, and its bulk cancel (issue 12).
--
-- taskq.error_text: a task's last error as the task page shows it ("Type: message" for the
-- worker's {"type", "message", "traceback"} objects; the JSON text of anything else). The
-- traceback is not searched: it is long, and a frame name is rarely what one looks for.
CREATE FUNCTION taskq.error_text(p_error jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_error) = 'object' AND p_error ? 'message'
                THEN coalesce(p_error ->> 'type', 'Error') || ': ' || (p_error ->> 'message')
                ELSE p_error #>> '{}' END
$$;

-- One page of a queue's tasks whose error text contains p_error (a plain substring, compared
-- case-insensitively with strpos: no LIKE pattern, so '%' and '_' are themselves), and that
-- match the other filters as taskq.list_tasks does. No index serves a substring search, so the
-- walk is bounded instead: at most p_walk tasks below p_before_id, newest first (by the
-- correlation index when a correlation id is given, else the primary key). Rows with task set
-- are the matches, newest first; when fewer than p_limit matched and the walk stopped at
-- p_walk (not at the queue's oldest task), a last row with task NULL gives walked_to, the
-- oldest id walked: the next page starts below it.
CREATE FUNCTION taskq.list_tasks_by_error(
    p_queue_id integer, p_state text, p_task_name text, p_correlation_id text,
    p_created_after timestamptz, p_created_before timestamptz, p_before_id bigint,
    p_limit integer, p_error text, p_walk integer)
RETURNS TABLE(walked_to bigint, task taskq.task_details)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_needle text := lower(p_error);
    v_ids bigint[];
    v_walked integer;
    v_oldest bigint;
BEGIN
    PERFORM taskq.require_range('list_tasks_by_error', 'p_limit', p_limit, 1, 10000, 'tasks');
    PERFORM taskq.require_range('list_tasks_by_error', 'p_walk', p_walk, 1, 1000000, 'tasks');
    IF p_error IS NULL OR p_error = '' THEN
        RAISE EXCEPTION 'list_tasks_by_error: p_error is empty: give the text to look for'
            USING ERRCODE = 'TQ003';
    END IF;
    v_ids := ARRAY(
        SELECT w.id FROM (
            SELECT t.id, t.state, t.task_name, t.created_at, t.error FROM taskq.tasks t
             WHERE t.queue_id = p_queue_id AND t.id < p_before_id
               AND (p_correlation_id IS NULL OR t.correlation_id = p_correlation_id)
             ORDER BY t.id DESC
             LIMIT p_walk) w
         WHERE w.error IS NOT NULL
           AND (p_state IS NULL OR w.state = p_state)
           AND (p_task_name IS NULL OR w.task_name = p_task_name)
           AND w.created_at >= p_created_after AND w.created_at < p_created_before
           AND strpos(lower(taskq.error_text(w.error)), v_needle) > 0
         ORDER BY w.id DESC
         LIMIT p_limit);
    RETURN QUERY
        SELECT NULL::bigint, d FROM taskq.task_details d
         WHERE d.queue_id = p_queue_id AND d.id = ANY(v_ids)
         ORDER BY d.id DESC;
    IF cardinality(v_ids) < p_limit THEN
        -- where the walk ended (an index-only range of at most p_walk entries)
        SELECT count(*), min(w.id) INTO v_walked, v_oldest FROM (
            SELECT t.id FROM taskq.tasks t
             WHERE t.queue_id = p_queue_id AND t.id < p_before_id
               AND (p_correlation_id IS NULL OR t.correlation_id = p_correlation_id)
             ORDER BY t.id DESC
             LIMIT p_walk) w;
        IF v_walked = p_walk THEN
            RETURN QUERY SELECT v_oldest, NULL::taskq.task_details;
        END IF;
    END IF;
END $$;

-- Cancel many tasks of a queue at once, as taskq.cancel does one: waiting ones (scheduled,
-- ready, retrying) are canceled, running ones asked to stop. At most 1,000 ids a call, so one
-- transaction locks at most that many rows; the caller splits a larger selection. What each
-- id came to, counted: canceled, asked (to stop), already (canceled, or asked before),
-- finished (succeeded or dead: nothing to cancel) and missing (not a task of the queue).
CREATE FUNCTION taskq.cancel_many(p_queue_id integer, p_ids bigint[])
RETURNS TABLE(canceled integer, asked integer, already integer, finished integer,
              missing integer)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_wanted integer;
    v_found integer;
    v_already integer;
    v_finished integer;
    v_canceled integer;
    v_asked bigint[];
BEGIN
    PERFORM taskq.require_range('cancel_many', 'p_ids', cardinality(p_ids), 0, 1000, 'ids');
    SELECT count(DISTINCT i) INTO v_wanted FROM unnest(p_ids) i;
    -- locked in id order, so two bulk cancels over the same tasks cannot deadlock
    SELECT count(*),
           count(*) FILTER (WHERE l.state IN ('succeeded', 'dead')),
           count(*) FILTER (WHERE l.state = 'canceled'
                                  OR (l.state = 'running' AND l.cancel_requested))
      INTO v_found, v_finished, v_already
      FROM (SELECT t.state, t.cancel_requested FROM taskq.tasks t
             WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids)
             ORDER BY t.id FOR UPDATE) l;
    WITH done AS (
        UPDATE taskq.tasks t SET state = 'canceled', finished_at = now()
         WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids)
           AND t.state IN ('scheduled', 'ready', 'retrying')
        RETURNING 1)
    SELECT count(*) INTO v_canceled FROM done;
    WITH asked AS (
        UPDATE taskq.tasks t SET cancel_requested = true
         WHERE t.queue_id = p_queue_id AND t.id = ANY(p_ids)
           AND t.state = 'running' AND NOT t.cancel_requested
        RETURNING t.id)
    SELECT coalesce(array_agg(a.id), '{}') INTO v_asked FROM asked a;
    PERFORM pg_notify('taskq_cancel', i::text) FROM unnest(v_asked) i;
    RETURN QUERY SELECT v_canceled, cardinality(v_asked), v_already, v_finished,
                        v_wanted - v_found;
END $$;
