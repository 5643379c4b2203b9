-- Queue settings by name. Python used to send them as fourteen positional parameters of an
-- UPDATE, where two swapped arguments of one type went unnoticed until a round trip showed the
-- wrong value. taskq.ensure_queue takes them as one JSON object keyed by the columns of
-- taskq.queues (QueueSettings.to_columns() in Python): it creates the queue if it is missing
-- and applies the settings, in one call.
--
-- A key left out keeps the queue's current value (a new queue's is the column's default, which
-- equals QueueSettings' default), so SQL callers may change one setting alone:
--     SELECT paused FROM taskq.ensure_queue('shop', 'emails', '{"paused": true}');
-- An unknown key is an error rather than ignored, so a misspelt setting is noticed.
-- taskq.provision_queue(namespace, name) stays: it is part of the SQL interface.

CREATE FUNCTION taskq.ensure_queue(p_namespace text, p_name text, p_settings jsonb)
RETURNS taskq.queues
LANGUAGE plpgsql AS $$
DECLARE
    -- The columns of taskq.queues that are settings (the others are identity and state); the
    -- one list of them in SQL: the UPDATE below is built from it.
    c_settings CONSTANT text[] := ARRAY[
        'default_priority', 'max_attempts', 'backoff_kind', 'backoff_base_s', 'backoff_max_s',
        'backoff_jitter', 'timeout_s', 'payload_limit_bytes', 'retention_succeeded_s',
        'retention_dead_s', 'rate_limit_per_s', 'rate_burst', 'concurrency_limit', 'paused'];
    v_unknown text;
    v_queue taskq.queues;
BEGIN
    IF jsonb_typeof(p_settings) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'queue settings must be a JSON object, not %',
                        coalesce(jsonb_typeof(p_settings), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(key, ', ' ORDER BY key) INTO v_unknown
      FROM jsonb_object_keys(p_settings) AS key
     WHERE key <> ALL (c_settings);
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown queue settings: %', v_unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the settings are: ' || array_to_string(c_settings, ', ');
    END IF;

    PERFORM taskq.provision_queue(p_namespace, p_name);
    -- jsonb_populate_record over the current row: keys present replace its values, with the
    -- columns' types and constraints; a changed rate limit starts from a full bucket.
    EXECUTE format(
        'UPDATE taskq.queues q SET (%1$s) = (SELECT %1$s FROM jsonb_populate_record(q, $3)),'
        '       rate_tokens = CASE WHEN q.rate_limit_per_s IS DISTINCT FROM'
        '                              (jsonb_populate_record(q, $3)).rate_limit_per_s'
        '                          THEN NULL ELSE q.rate_tokens END'
        ' WHERE namespace = $1 AND name = $2 RETURNING q.*',
        (SELECT string_agg(quote_ident(c), ', ') FROM unnest(c_settings) AS c))
        INTO STRICT v_queue
        USING p_namespace, p_name, p_settings;
    RETURN v_queue;
END $$;
