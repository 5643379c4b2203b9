"""The schema snapshot (sql/schema.sql) is what the migrations produce, and the live schema
keeps no dead function: each one is called by a named query or by another function, or is
part of the SQL interface of producers in other languages."""

from __future__ import annotations

import difflib
import re

import asyncpg
import pytest
from devenv import schema
from devenv.postgres import LocalPostgres

from taskq.store.sqlfiles import queries
from tests.conftest import fresh_database

# Called by producers in other languages (README.md); every other function has a caller here.
_SQL_INTERFACE = {"enqueue"}
_DIFF_LINES = 80


@pytest.fixture(scope="module")
async def migrated(pg: LocalPostgres) -> str:
    """A database of its own with every migration applied and no queue (whose partitions the
    dump would include)."""
    return await fresh_database(pg, "taskq_schema_snapshot")


def test_the_committed_schema_snapshot_is_current(migrated: str) -> None:
    generated = schema.pg_dump(migrated)
    committed = schema.SNAPSHOT.read_text(encoding="utf-8") if schema.SNAPSHOT.is_file() else ""
    if committed and schema.major_version(committed) != schema.major_version(generated):
        pytest.skip(
            f"{schema.SNAPSHOT.name} was dumped by PostgreSQL {schema.major_version(committed)}, "
            f"whose pg_dump formats differently from this PostgreSQL "
            f"{schema.major_version(generated)}"
        )
    if generated != committed:
        diff = list(
            difflib.unified_diff(
                committed.splitlines(),
                generated.splitlines(),
                "committed",
                "from the migrations",
                lineterm="",
            )
        )
        shown = "\n".join(diff[:_DIFF_LINES]) + ("\n..." if len(diff) > _DIFF_LINES else "")
        pytest.fail(f"{schema.SNAPSHOT} is stale: run `{schema.REGENERATE}`\n{shown}")


async def test_every_function_has_a_caller(migrated: str) -> None:
    conn = await asyncpg.connect(migrated)
    try:
        functions = await conn.fetch(
            "SELECT p.oid, p.proname, p.prosrc FROM pg_proc p"
            " WHERE p.pronamespace = 'taskq'::regnamespace"
        )
        views = await conn.fetch(
            "SELECT pg_get_viewdef(c.oid) AS sql FROM pg_class c"
            " WHERE c.relnamespace = 'taskq'::regnamespace AND c.relkind IN ('v', 'm')"
        )
    finally:
        await conn.close()
    named_queries = "\n".join(queries().values())
    uncalled = []
    for function in functions:
        call = re.compile(rf"\btaskq\.{function['proname']}\s*\(")
        callers = [
            named_queries,
            *(view["sql"] for view in views),
            *(other["prosrc"] for other in functions if other["oid"] != function["oid"]),
        ]
        if function["proname"] not in _SQL_INTERFACE and not any(
            call.search(text) for text in callers
        ):
            uncalled.append(function["proname"])
    assert uncalled == [], (
        "no named query or function calls these: drop them in a new migration, "
        "or list them in _SQL_INTERFACE if producers call them"
    )


async def test_every_named_query_fits_the_schema(migrated: str) -> None:
    """Preparing parses and plans a query: a misnamed column, function or named-notation
    parameter fails here, whether or not a test runs the code that sends it."""
    conn = await asyncpg.connect(migrated)
    try:
        for name, sql in queries().items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as error:
                pytest.fail(f"query {name}: {error}")
    finally:
        await conn.close()


def test_the_snapshot_keeps_only_the_schema() -> None:
    dump = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n"
        "-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n"
        "-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n\n"
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n"
        "--\n-- Name: f(integer); Type: FUNCTION; Schema: taskq; Owner: -\n--\n\n"
        "CREATE FUNCTION taskq.f(p integer) RETURNS integer\n    LANGUAGE sql\n    AS $$\n"
        "--\n    SELECT p -- kept\n$$;\n\n\n\n"
        "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n"
    )
    text = schema.normalise(dump)
    assert schema.major_version(text) == 15
    body = text.split("\n\n", 1)[1]
    assert body == (
        "-- FUNCTION: f(integer)\n\n"
        "CREATE FUNCTION taskq.f(p integer) RETURNS integer\n    LANGUAGE sql\n    AS $$\n"
        "--\n    SELECT p -- kept\n$$;\n"
    )
    assert text.startswith("-- The taskq schema")
    assert "make schema" in text.splitlines()[1]
