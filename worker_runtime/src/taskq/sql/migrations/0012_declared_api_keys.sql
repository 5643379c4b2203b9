-- API keys declared from Kubernetes: the operator keeps one key per TaskqApiKey object
-- (docs/api-keys.md, "Declared from Kubernetes"). `declared_by` names that object as
-- namespace/name; NULL for keys made with `taskq keys create`. Its keys are found by it, not by
-- name: each key it is issued (a rotation issues a new one) has a name of its own, since a
-- revoked key keeps its name.
ALTER TABLE taskq.api_keys ADD COLUMN declared_by text;

ALTER TABLE taskq.api_keys ADD CONSTRAINT api_key_declared_by_object
    CHECK (declared_by ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$');

-- One usable key per object: a new key and the revocation of the one before it are one
-- transaction, and this index keeps two operators (or a retried pass) from leaving two.
CREATE UNIQUE INDEX api_keys_declared_by_unrevoked ON taskq.api_keys (declared_by)
    WHERE revoked_at IS NULL;
