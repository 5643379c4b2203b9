-- taskq schema: queues, tasks (one list partition per queue) and the tries history.
-- The database owns the task state machine: CHECK constraints say which column sets are
-- valid in each state, and every transition below is a guarded UPDATE ... WHERE state = ...

CREATE SCHEMA IF NOT EXISTS taskq;

CREATE TABLE taskq.queues (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace            text NOT NULL,
    name                 text NOT NULL,
    default_priority     smallint NOT NULL DEFAULT 50,
    max_attempts         integer NOT NULL DEFAULT 3,
    backoff_kind         text NOT NULL DEFAULT 'exponential',
    backoff_base_s       double precision NOT NULL DEFAULT 1,
    backoff_max_s        double precision NOT NULL DEFAULT 3600,
    backoff_jitter       double precision NOT NULL DEFAULT 0.2,
    timeout_s            double precision NOT NULL DEFAULT 300,
    payload_limit_bytes  integer NOT NULL DEFAULT 262144,
    retention_succeeded_s bigint NOT NULL DEFAULT 86400,
    retention_dead_s     bigint NOT NULL DEFAULT 604800,
    rate_limit_per_s     double precision,
    rate_burst           double precision,
    concurrency_limit    integer,
    paused               boolean NOT NULL DEFAULT false,
    -- token bucket of the rate limit, refilled lazily at claim time from the database clock
    rate_tokens          double precision,
    rate_refilled_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name),
    CONSTRAINT queue_namespace_is_dns_label
        CHECK (namespace ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(namespace) <= 63),
    CONSTRAINT queue_name_is_dns_label
        CHECK (name ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(name) <= 63),
    CONSTRAINT queue_default_priority_range CHECK (default_priority BETWEEN 0 AND 100),
    CONSTRAINT queue_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT queue_backoff_kind CHECK (backoff_kind IN ('exponential', 'linear', 'fixed')),
    CONSTRAINT queue_backoff_bounds
        CHECK (backoff_base_s >= 0 AND backoff_max_s >= backoff_base_s),
    CONSTRAINT queue_backoff_jitter_range CHECK (backoff_jitter BETWEEN 0 AND 1),
    CONSTRAINT queue_timeout_positive CHECK (timeout_s > 0),
    CONSTRAINT queue_payload_limit_range CHECK (payload_limit_bytes BETWEEN 1 AND 67108864),
    CONSTRAINT queue_retention_non_negative
        CHECK (retention_succeeded_s >= 0 AND retention_dead_s >= 0),
    CONSTRAINT queue_rate_limit_positive
        CHECK (rate_limit_per_s IS NULL OR rate_limit_per_s > 0),
    CONSTRAINT queue_rate_burst_positive CHECK (rate_burst IS NULL OR rate_burst >= 1),
    CONSTRAINT queue_concurrency_limit_positive
        CHECK (concurrency_limit IS NULL OR concurrency_limit > 0)
);

CREATE SEQUENCE taskq.task_id_seq AS bigint CACHE 100;

CREATE TABLE taskq.tasks (
    queue_id         integer NOT NULL,
    id               bigint NOT NULL DEFAULT nextval('taskq.task_id_seq'),
    task_name        text NOT NULL,
    state            text NOT NULL,
    priority         smallint NOT NULL,
    payload          jsonb NOT NULL,
    run_at           timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text,
    correlation_id   text,
    -- attempts counts tries against max_attempts (a replay resets it);
    -- total_attempts numbers every try ever made, so history rows never collide
    attempts         integer NOT NULL DEFAULT 0,
    total_attempts   integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    -- per-task overrides; NULL means "the queue's setting"
    backoff_kind     text,
    backoff_base_s   double precision,
    backoff_max_s    double precision,
    timeout_s        double precision,
    worker_id        text,
    attempt_id       uuid,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    result           jsonb,
    error            jsonb,
    progress         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (id, queue_id),
    CONSTRAINT task_state_known CHECK (state IN
        ('scheduled', 'ready', 'running', 'succeeded', 'retrying', 'dead', 'canceled')),
    CONSTRAINT task_name_length CHECK (length(task_name) BETWEEN 1 AND 200),
    CONSTRAINT task_priority_range CHECK (priority BETWEEN 0 AND 100),
    CONSTRAINT task_idempotency_key_length CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT task_attempts_range
        CHECK (attempts >= 0 AND attempts <= max_attempts AND total_attempts >= attempts),
    CONSTRAINT task_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT task_backoff_kind CHECK (backoff_kind IN ('exponential', 'linear', 'fixed')),
    CONSTRAINT task_timeout_positive CHECK (timeout_s > 0),
    -- a running task, and only a running task, is held by a worker under a lease
    CONSTRAINT task_running_has_lease CHECK ((state = 'running') = (
        worker_id IS NOT NULL AND attempt_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    -- finished states, and only they, carry a finish time
    CONSTRAINT task_finished_has_time CHECK ((state IN ('succeeded', 'dead', 'canceled')) = (
        finished_at IS NOT NULL)),
    CONSTRAINT task_succeeded_no_error CHECK (state <> 'succeeded' OR error IS NULL),
    CONSTRAINT task_dead_has_error CHECK (state <> 'dead' OR error IS NOT NULL)
) PARTITION BY LIST (queue_id);

-- Every index leads with queue_id although a partition holds one queue: the planner then
-- matches the `queue_id = $1` qual to the index and walks it in order even before a new
-- partition has statistics (without it, a fresh partition's claim sorted the whole backlog).
-- The claim index: ready tasks in claim order (FIFO by run_at within a priority; ids only
-- break ties, since a cached sequence hands each producer session its own block of ids).
-- run_at is a key column, so depth and the oldest ready age are answered from the index alone.
CREATE INDEX tasks_ready_idx ON taskq.tasks (queue_id, priority DESC, run_at, id)
    WHERE state = 'ready';
-- Tasks waiting for their time (delayed, or failed and awaiting a retry).
CREATE INDEX tasks_waiting_idx ON taskq.tasks (queue_id, run_at) WHERE state IN ('scheduled', 'retrying');
-- Running tasks by lease: expired-lease rescue and the concurrency limit's count.
CREATE INDEX tasks_running_idx ON taskq.tasks (queue_id, lease_expires_at) WHERE state = 'running';
-- Finished tasks by state and time: retention, dead-letter listing, recent throughput.
CREATE INDEX tasks_finished_idx ON taskq.tasks (queue_id, state, finished_at)
    WHERE finished_at IS NOT NULL;
-- An idempotency key is unique among a queue's unfinished tasks.
CREATE UNIQUE INDEX tasks_idempotency_idx ON taskq.tasks (queue_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state IN ('scheduled', 'ready', 'running', 'retrying');

CREATE TABLE taskq.attempts (
    queue_id    integer NOT NULL,
    task_id     bigint NOT NULL,
    attempt     integer NOT NULL,
    attempt_id  uuid NOT NULL,
    worker_id   text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome     text NOT NULL,
    error       jsonb,
    PRIMARY KEY (task_id, attempt, queue_id),
    CONSTRAINT attempt_outcome_known CHECK (outcome IN
        ('succeeded', 'failed', 'timed_out', 'lost', 'canceled', 'released')),
    CONSTRAINT attempt_error_unless_succeeded CHECK ((outcome = 'succeeded') = (error IS NULL)
        OR outcome IN ('canceled', 'released'))
) PARTITION BY LIST (queue_id);

-- Tasks with their queue's full name, as the client and the CLI show them; pruning to one
-- partition still works through the view.
CREATE VIEW taskq.task_details AS
SELECT t.queue_id, t.id, q.namespace || '/' || q.name AS queue, t.task_name, t.state,
       t.priority, t.payload, t.run_at, t.idempotency_key, t.correlation_id, t.attempts,
       t.total_attempts, t.max_attempts, t.worker_id, t.attempt_id::text AS attempt_id,
       t.lease_expires_at, t.cancel_requested, t.result, t.error, t.progress, t.created_at,
       t.started_at, t.finished_at
  FROM taskq.tasks t JOIN taskq.queues q ON q.id = t.queue_id;
