-- A task's callback URL (migration 0020) is shown where the task is: taskq tasks show, the
-- API's task views (hidden, like the payload, from keys that may not read payloads: a URL can
-- carry a token) and the dashboard's task page. A view gains a column at its end in place.
CREATE OR REPLACE VIEW taskq.task_details AS
SELECT t.queue_id,
       t.id,
       q.namespace || '/' || q.name AS queue,
       t.task_name,
       t.state,
       t.priority,
       t.payload,
       t.run_at,
       t.idempotency_key,
       t.correlation_id,
       t.attempts,
       t.total_attempts,
       t.max_attempts,
       t.worker_id,
       t.attempt_id::text AS attempt_id,
       t.lease_expires_at,
       t.cancel_requested,
       t.result,
       t.error,
       t.progress,
       t.created_at,
       t.started_at,
       t.finished_at,
       t.traceparent,
       t.callback_url
  FROM taskq.tasks t
  JOIN taskq.queues q ON q.id = t.queue_id;
