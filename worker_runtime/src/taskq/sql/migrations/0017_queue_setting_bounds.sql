-- Every queue setting has an upper bound through every door (taskq/models.py MAX_*; issue 15):
-- past them the database's timestamps and integers overflow ("timestamp out of range" on every
-- maintenance pass for a retention of 10^12 s), and NaN or Infinity passed every "> 0" check.
-- taskq.ensure_queue now refuses such settings naming the key and the range, and the table's
-- constraints hold the same bounds for any other writer.

-- Values stored before the bounds existed: clamped to them (ten years of retention or backoff
-- is "forever" in practice), NaN back to the column's default.
UPDATE taskq.queues SET
    backoff_base_s = CASE WHEN backoff_base_s = 'NaN' THEN 1 ELSE least(backoff_base_s, 315360000) END,
    backoff_max_s = CASE WHEN backoff_max_s = 'NaN' THEN 3600 ELSE least(backoff_max_s, 315360000) END,
    timeout_s = CASE WHEN timeout_s = 'NaN' THEN 300 ELSE least(timeout_s, 2592000) END,
    retention_succeeded_s = least(retention_succeeded_s, 315360000),
    retention_dead_s = least(retention_dead_s, 315360000),
    rate_limit_per_s = CASE WHEN rate_limit_per_s = 'NaN' THEN NULL
                            ELSE least(rate_limit_per_s, 1000000) END,
    rate_burst = CASE WHEN rate_burst = 'NaN' THEN NULL ELSE least(rate_burst, 1000000) END,
    concurrency_limit = least(concurrency_limit, 1000000)
 WHERE backoff_base_s = 'NaN' OR backoff_base_s > 315360000
    OR backoff_max_s = 'NaN' OR backoff_max_s > 315360000
    OR timeout_s = 'NaN' OR timeout_s > 2592000
    OR retention_succeeded_s > 315360000 OR retention_dead_s > 315360000
    OR rate_limit_per_s = 'NaN' OR rate_limit_per_s > 1000000
    OR rate_burst = 'NaN' OR rate_burst > 1000000 OR concurrency_limit > 1000000;

-- NaN compares greater than every number in PostgreSQL: an upper bound refuses it too.
ALTER TABLE taskq.queues
    DROP CONSTRAINT queue_backoff_bounds,
    DROP CONSTRAINT queue_timeout_positive,
    DROP CONSTRAINT queue_retention_non_negative,
    DROP CONSTRAINT queue_rate_limit_positive,
    DROP CONSTRAINT queue_rate_burst_positive,
    DROP CONSTRAINT queue_concurrency_limit_positive,
    ADD CONSTRAINT queue_backoff_bounds
        CHECK (backoff_base_s >= 0 AND backoff_max_s >= backoff_base_s
               AND backoff_max_s <= 315360000),
    ADD CONSTRAINT queue_timeout_range CHECK (timeout_s > 0 AND timeout_s <= 2592000),
    ADD CONSTRAINT queue_retention_range
        CHECK (retention_succeeded_s BETWEEN 0 AND 315360000
               AND retention_dead_s BETWEEN 0 AND 315360000),
    ADD CONSTRAINT queue_rate_limit_range
        CHECK (rate_limit_per_s IS NULL OR (rate_limit_per_s > 0 AND rate_limit_per_s <= 1000000)),
    ADD CONSTRAINT queue_rate_burst_range
        CHECK (rate_burst IS NULL OR rate_burst BETWEEN 1 AND 1000000),
    ADD CONSTRAINT queue_concurrency_limit_range
        CHECK (concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND 1000000);

-- The first setting of p_settings out of its range, as a message naming its key; NULL if none.
CREATE FUNCTION taskq.queue_settings_problem(p_settings jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
             WHEN jsonb_typeof(p_settings -> b.key) = 'null' AND NOT b.nullable THEN
                 format('p_settings.%s must not be null: give %s', b.key, b.range)
             WHEN jsonb_typeof(p_settings -> b.key) NOT IN ('number', 'null') THEN
                 format('p_settings.%s is %s, not a number: give %s', b.key,
                        p_settings -> b.key, b.range)
             ELSE format('p_settings.%s is %s: give %s', b.key, p_settings -> b.key, b.range)
           END
      FROM (VALUES
            ('default_priority', 0, 100, false, true, false, '0..100'),
            ('max_attempts', 1, 1000, false, true, false, '1..1000'),
            ('backoff_base_s', 0, 315360000, false, false, false, '0..315360000 seconds (ten years)'),
            ('backoff_max_s', 0, 315360000, false, false, false, '0..315360000 seconds (ten years)'),
            ('backoff_jitter', 0, 1, false, false, false, '0..1'),
            ('timeout_s', 0, 2592000, true, false, false,
             'more than 0 and at most 2592000 seconds (thirty days)'),
            ('payload_limit_bytes', 1, 67108864, false, true, false, '1..67108864 bytes'),
            ('retention_succeeded_s', 0, 315360000, false, true, false,
             '0..315360000 seconds (ten years)'),
            ('retention_dead_s', 0, 315360000, false, true, false,
             '0..315360000 seconds (ten years)'),
            ('rate_limit_per_s', 0, 1000000, true, false, true,
             'more than 0 and at most 1000000 a second, or null for no limit'),
            ('rate_burst', 1, 1000000, false, false, true, '1..1000000, or null'),
            ('concurrency_limit', 1, 1000000, false, true, true, '1..1000000, or null for no limit')
           ) AS b(key, low, high, low_open, whole, nullable, range)
     WHERE p_settings ? b.key
       AND NOT CASE jsonb_typeof(p_settings -> b.key)
             WHEN 'null' THEN b.nullable
             WHEN 'number' THEN (p_settings ->> b.key)::numeric <= b.high
                  AND ((p_settings ->> b.key)::numeric > b.low
                       OR (NOT b.low_open AND (p_settings ->> b.key)::numeric = b.low))
                  AND (NOT b.whole OR (p_settings ->> b.key)::numeric % 1 = 0)
             ELSE false END
     LIMIT 1
$$;

CREATE OR REPLACE FUNCTION taskq.ensure_queue(p_namespace text, p_name text, p_settings jsonb)
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
    v_problem text;
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
    v_problem := taskq.queue_settings_problem(p_settings);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'ensure_queue: %', v_problem USING ERRCODE = 'TQ003';
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
