"""The SQL shipped as package data: named queries and numbered migrations."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskq.store.sqlfiles import bootstrap_sql, migrations, queries, query

_REPO = Path(__file__).resolve().parents[2]
# The code whose queries ship; tests may run queries of their own without making them used.
_SOURCES = ("worker_runtime/src", "operator/src", "api/src")


@dataclass(frozen=True)
class _Use:
    """A `query(...)` call in the sources, and how many arguments the call that runs it passes
    after the query (None: not countable, e.g. `*args`, or the query text is kept for later)."""

    where: str
    name: str | None  # None: not a string literal
    arguments: int | None


def _query_call(node: ast.expr) -> ast.Call | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    named_query = (isinstance(func, ast.Name) and func.id == "query") or (
        isinstance(func, ast.Attribute)
        and func.attr == "query"
        and isinstance(func.value, ast.Name)
        and func.value.id == "sqlfiles"
    )
    return node if named_query else None


def _literal(call: ast.Call) -> str | None:
    if len(call.args) == 1 and not call.keywords:
        arg = call.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _uses() -> list[_Use]:
    """Every query the sources ask for, found by reading them, so no list is kept by hand."""
    found = []
    for root in _SOURCES:
        for path in sorted((_REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            # the statement running a query passes it first, then its parameters
            runs: dict[int, int | None] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and node.args and _query_call(node.args[0]):
                    rest = node.args[1:]
                    countable = not node.keywords and not any(
                        isinstance(a, ast.Starred) for a in rest
                    )
                    runs[id(node.args[0])] = len(rest) if countable else None
            for node in ast.walk(tree):
                call = _query_call(node) if isinstance(node, ast.expr) else None
                if call is not None:
                    where = f"{path.relative_to(_REPO)}:{call.lineno}"
                    found.append(_Use(where, _literal(call), runs.get(id(call))))
    return found


def _used_names() -> set[str]:
    return {use.name for use in _uses() if use.name is not None}


def _statement(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def _parameters(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", _statement(sql))}


def test_the_sources_are_found() -> None:
    assert len(_uses()) >= 20
    assert any(use.name == "claim" and use.arguments == 8 for use in _uses())


def test_every_named_query_loads() -> None:
    named = queries()
    assert set(named) >= _used_names()
    for name, sql in named.items():
        assert sql, name
        assert "-- name:" not in sql, name
        statement = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
        # (CALL: a procedure, which may commit as it goes; migration 0021)
        assert re.match(r"^\s*(SELECT|UPDATE|INSERT|DELETE|WITH|CALL)\b", statement), name


def test_unknown_query_raises_key_error() -> None:
    with pytest.raises(KeyError):
        query("no_such_query")


def test_queries_take_positional_parameters_only() -> None:
    for name, sql in queries().items():
        assert "%s" not in sql, name
        assert "{" not in sql, name


def test_queries_are_named_by_literals() -> None:
    """A name computed at run time would hide its query from the checks below."""
    assert [use.where for use in _uses() if use.name is None] == []


def test_every_query_is_used_and_every_used_query_exists() -> None:
    used = _used_names()
    assert sorted(set(queries()) - used) == [], "unused queries: delete them from queries.sql"
    assert sorted(used - set(queries())) == [], "queries missing from queries.sql"


def test_parameters_are_numbered_without_gaps() -> None:
    for name, sql in queries().items():
        found = _parameters(sql)
        assert found == set(range(1, len(found) + 1)), name


def test_every_parameter_is_named_where_it_is_used() -> None:
    """Named notation (`p_queue_id => $1`), a column (`namespace = $1`), or a `-- $1 ...` line:
    a reader never has to count parameters."""
    unnamed = []
    for name, sql in queries().items():
        statement = _statement(sql)
        comments = "\n".join(line for line in sql.splitlines() if line.strip().startswith("--"))
        for n in sorted(_parameters(sql)):
            if not (
                re.search(rf"\w\s*(=>|=)\s*\${n}(?!\d)", statement)
                or re.search(rf"\${n}(?!\d)", comments)
            ):
                unnamed.append(f"{name}: ${n}")
    assert unnamed == [], (
        "call the function in named notation (p_x => $n), or say what $n is in a '-- $n' line"
    )


def test_every_call_passes_each_parameter() -> None:
    for use in _uses():
        if use.name is not None and use.arguments is not None:
            expected = len(_parameters(query(use.name)))
            assert use.arguments == expected, f"{use.where}: {use.name} takes {expected}"


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert [m.name for m in found[:2]] == ["schema", "functions"]
    assert len({m.checksum for m in found}) == len(found)
    for migration in found:
        assert re.fullmatch(r"[0-9a-f]{64}", migration.checksum)
        assert migration.sql.strip()


def test_bootstrap_creates_the_ledger() -> None:
    assert "taskq.schema_migrations" in bootstrap_sql()


_PARTITIONED = re.compile(r"\btaskq\.(tasks|attempts|task_details|attempt_history)\b")


def test_no_named_query_reads_the_partitioned_tables_itself() -> None:
    """A statement over taskq.tasks or taskq.attempts sent as it is gets a generic plan on its
    sixth run on a connection, which locks every queue's partition and each of its indexes
    (docs/design.md, "Lookups by task id"): they are read only inside functions planned with
    their values (force_custom_plan)."""
    readers = []
    for name, text in queries().items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        if _PARTITIONED.search(code):
            readers.append(name)
    assert readers == [], f"put these in a function with force_custom_plan: {readers}"
