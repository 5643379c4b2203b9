-- API keys of the HTTP and gRPC front door (taskq/auth.py says what they allow). A key is
-- `tq_<prefix>_<secret>`; the table keeps its public prefix, to find it and to name it in
-- logs and lists, and the SHA-256 of the whole key: never the key, so a copy of the database
-- authenticates nobody. Rows are never deleted: a revoked key keeps its row (and its name)
-- so that its prefix still names it in old logs.
CREATE TABLE taskq.api_keys (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    prefix         text NOT NULL UNIQUE,
    digest         bytea NOT NULL,
    role           text NOT NULL,
    -- NULL: every namespace, present and future; otherwise the only ones the key reaches
    namespaces     text[],
    -- a viewer sees payloads and results only when this is set (other roles always do)
    reads_payloads boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    -- written at most once a minute per key (store/keys.py), not on every request
    last_used_at   timestamptz,
    -- names are typed in commands and shown in lists: the queue's label rules
    CONSTRAINT api_key_name_is_dns_label
        CHECK (name ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(name) <= 63),
    CONSTRAINT api_key_prefix_format CHECK (prefix ~ '^[a-z0-9]{8}$'),
    CONSTRAINT api_key_digest_is_sha256 CHECK (octet_length(digest) = 32),
    CONSTRAINT api_key_role CHECK (role IN ('viewer', 'operator', 'admin')),
    -- at least one namespace, each a queue namespace (a DNS-1123 label). A CHECK cannot
    -- loop over elements, so the label pattern runs on them joined by '/'; that needs no NULL
    -- element (array_to_string skips them) and no '/' in one (['a/b'] would read as a, b).
    CONSTRAINT api_key_namespaces_are_dns_labels
        CHECK (namespaces IS NULL OR (
            cardinality(namespaces) > 0
            AND array_position(namespaces, NULL) IS NULL
            AND strpos(array_to_string(namespaces, ''), '/') = 0
            AND array_to_string(namespaces, '/')
                ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')),
    CONSTRAINT api_key_expires_after_creation CHECK (expires_at > created_at),
    CONSTRAINT api_key_revoked_after_creation CHECK (revoked_at >= created_at)
);
