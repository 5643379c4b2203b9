"""Loads SQL shipped as package data: named queries and numbered migrations."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_NAME_MARKER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def _sql_dir() -> resources.abc.Traversable:
    return resources.files("taskq") / "sql"


@functools.cache
def queries() -> dict[str, str]:
    """All named queries: `-- name: X` starts query X, which runs to the next marker."""
    text = (_sql_dir() / "queries.sql").read_text(encoding="utf-8")
    parts = _NAME_MARKER.split(text)
    named = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(named) != len(parts[1::2]):
        raise RuntimeError("queries.sql names a query twice")
    return named


def query(name: str) -> str:
    return queries()[name]


def bootstrap_sql() -> str:
    return (_sql_dir() / "bootstrap.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@functools.cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for entry in (_sql_dir() / "migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)
