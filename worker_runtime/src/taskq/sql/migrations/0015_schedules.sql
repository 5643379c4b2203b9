-- Recurring tasks (docs/schedules.md). A schedule belongs to a namespace and enqueues into a
-- queue of that namespace by name, so a queue dropped and provisioned again is still its
-- target. The scheduler (taskq.maintenance.scheduler) locks a due row, enqueues its ticks and
-- moves next_run_at past them in one transaction: each tick yields at most one task, however
-- many processes run the scheduler and wherever one of them crashes.
CREATE TABLE taskq.schedules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace text NOT NULL
        CHECK (namespace ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    name text NOT NULL
        CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    queue text NOT NULL
        CHECK (queue ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    task_name text NOT NULL CHECK (length(task_name) BETWEEN 1 AND 200),
    payload jsonb NOT NULL DEFAULT '{}',
    priority smallint NOT NULL DEFAULT 50 CHECK (priority BETWEEN 0 AND 100),
    cron text NOT NULL,
    time_zone text NOT NULL DEFAULT 'UTC',
    suspend boolean NOT NULL DEFAULT false,
    concurrency_policy text NOT NULL DEFAULT 'Allow'
        CHECK (concurrency_policy IN ('Allow', 'Forbid', 'Replace')),
    starting_deadline_s integer CHECK (starting_deadline_s > 0),
    max_missed_runs integer NOT NULL DEFAULT 1 CHECK (max_missed_runs BETWEEN 0 AND 1000),
    -- the earliest tick not handled yet
    next_run_at timestamptz NOT NULL,
    -- the latest tick that enqueued a task, and that task
    last_schedule_time timestamptz,
    last_task_id bigint,
    -- the latest tick skipped (Missed, PastStartingDeadline, PreviousUnfinished) and why
    last_skipped_time timestamptz,
    last_skipped_reason text,
    -- why the latest pass could not enqueue (e.g. the queue does not exist); NULL once one did
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);

CREATE INDEX schedules_due_idx ON taskq.schedules (next_run_at) WHERE NOT suspend;
