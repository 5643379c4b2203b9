-- Run before migrations, under the migration lock: the ledger of applied migrations.
CREATE SCHEMA IF NOT EXISTS taskq;
CREATE TABLE IF NOT EXISTS taskq.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
