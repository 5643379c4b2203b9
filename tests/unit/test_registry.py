"""Handler registration, hooks, and loading the user's app named by TASKQ_APP."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq.errors import InvalidArgumentError
from taskq.worker.app import load_registry
from taskq.worker.context import TaskContext
from taskq.worker.registry import Registry, call_hook, default_registry


def test_sync_and_async_handlers_are_told_apart() -> None:
    registry = Registry()

    @registry.task("async_one", timeout=5)
    async def async_one(ctx: TaskContext) -> int:
        return 1

    @registry.task("sync_one")
    def sync_one(ctx: TaskContext) -> int:
        return 2

    assert registry.handlers["async_one"].is_async
    assert registry.handlers["async_one"].timeout == 5
    assert not registry.handlers["sync_one"].is_async
    assert registry.handlers["sync_one"].timeout is None
    # the decorator gives the function back unchanged
    assert registry.handlers["sync_one"].func is sync_one


def test_a_name_registered_twice_is_refused() -> None:
    registry = Registry()
    registry.task("dup")(lambda ctx: None)
    with pytest.raises(InvalidArgumentError, match="registered twice"):
        registry.task("dup")(lambda ctx: None)


@pytest.mark.parametrize("timeout", [0, -1.5])
def test_a_non_positive_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        Registry().task("t", timeout=timeout)
    assert raised.value.field == "timeout"


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_task_name_length(name: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        Registry().task(name)
    assert raised.value.field == "task name"


async def test_hooks_are_registered_in_order_and_may_be_sync_or_async() -> None:
    registry = Registry()
    seen: list[tuple[str, Any]] = []

    @registry.before_task
    def before(ctx: Any) -> None:
        seen.append(("before", ctx))

    @registry.after_task
    async def after(ctx: Any, value: Any) -> None:
        seen.append(("after", value))

    @registry.on_task_error
    def on_error(ctx: Any, error: BaseException) -> None:
        seen.append(("error", str(error)))

    assert (registry.before, registry.after, registry.on_error) == ([before], [after], [on_error])
    await call_hook(before, "ctx")
    await call_hook(after, "ctx", 42)
    await call_hook(on_error, "ctx", ValueError("boom"))
    assert seen == [("before", "ctx"), ("after", 42), ("error", "boom")]


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory on sys.path and a unique module prefix; modules are forgotten afterwards."""
    prefix = f"taskq_test_app_{uuid.uuid4().hex[:8]}"
    sys.path.insert(0, str(tmp_path))
    yield tmp_path, prefix
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]


def _write(directory: Path, module: str, source: str) -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def test_load_registry_by_attribute(app_dir: tuple[Path, str]) -> None:
    directory, prefix = app_dir
    _write(directory, f"{prefix}_attr", """
        from taskq import Registry
        registry = Registry()

        @registry.task("hello")
        def hello(ctx):
            return "hi"
    """)
    registry = load_registry(f"{prefix}_attr:registry")
    assert list(registry.handlers) == ["hello"]


def test_load_registry_by_module_uses_the_default_registry(
    app_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, prefix = app_dir
    monkeypatch.setattr(default_registry, "handlers", {})
    _write(directory, f"{prefix}_default", """
        import taskq

        @taskq.task("via_default")
        async def via_default(ctx):
            return None
    """)
    registry = load_registry(f"{prefix}_default")
    assert registry is default_registry
    assert registry.handlers["via_default"].is_async


def test_load_registry_errors(app_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    directory, prefix = app_dir
    monkeypatch.setattr(default_registry, "handlers", {})
    _write(directory, f"{prefix}_empty", "from taskq import Registry\nregistry = Registry()\n")
    _write(directory, f"{prefix}_other", "registry = 'not a registry'\n")

    with pytest.raises(InvalidArgumentError, match=r"cannot import .*PYTHONPATH") as raised:
        load_registry(f"{prefix}_missing")
    assert raised.value.field == "TASKQ_APP"
    with pytest.raises(InvalidArgumentError, match=r"is not a taskq Registry \(found str\)"):
        load_registry(f"{prefix}_other:registry")
    with pytest.raises(InvalidArgumentError, match="found NoneType"):
        load_registry(f"{prefix}_other:nothing_here")
    with pytest.raises(InvalidArgumentError, match="registers no handlers"):
        load_registry(f"{prefix}_empty:registry")
    with pytest.raises(InvalidArgumentError, match="registers no handlers"):
        load_registry(f"{prefix}_empty")
