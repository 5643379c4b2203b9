"""docs/worker.md's environment table says what WorkerSettings reads: every setting, no other,
each with its default."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import TypeAdapter

from taskq.worker.settings import WorkerSettings, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "worker.md"
_ROW = re.compile(r"^\| `(?P<name>TASKQ_\w+)` \| (?P<default>[^|]*) \|", re.MULTILINE)


def documented() -> dict[str, str]:
    """Variable -> its default column, from the table under "## Environment contract"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Environment contract", 1)[1].split("\n## ", 1)[0]
    return {row["name"]: row["default"].strip() for row in _ROW.finditer(section)}


def test_the_table_lists_every_setting_and_no_other() -> None:
    expected = {env_name(setting) for setting in WorkerSettings.model_fields}
    table = set(documented())
    assert sorted(expected - table) == [], "settings missing from docs/worker.md's table"
    assert sorted(table - expected) == [], "docs/worker.md documents variables nothing reads"


def test_the_table_gives_each_default() -> None:
    table = documented()
    for setting, field in WorkerSettings.model_fields.items():
        said = table[env_name(setting)]
        if field.is_required():
            assert said == "(required)", setting
        elif field.default is None:
            # computed or absent; the table says how, in words
            assert said and said != "(required)", setting
        else:
            # the documented default, read as the variable would be, is the field's default
            assert field.annotation is not None, setting
            value = TypeAdapter(field.annotation).validate_python(said.strip("`"))
            assert value == field.default, f"{setting}: docs say {said}, not {field.default}"
