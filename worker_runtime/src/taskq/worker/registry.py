"""Handlers registered by task name, and hooks around them.

    from taskq import task

    @task("send_email", timeout=30)
    async def send_email(ctx):
        await mailer.send(**ctx.payload)

Sync handlers run in a thread pool; async handlers on the worker's event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from taskq.errors import InvalidArgumentError
from taskq.models import MAX_TASK_NAME

if TYPE_CHECKING:
    from taskq.worker.context import TaskContext

Handler = Callable[["TaskContext"], Any]
BeforeHook = Callable[["TaskContext"], Any]
AfterHook = Callable[["TaskContext", Any], Any]
ErrorHook = Callable[["TaskContext", BaseException], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskHandler:
    name: str
    func: Handler
    is_async: bool
    timeout: float | None  # None: the task's (or queue's) timeout


@dataclass
class Registry:
    handlers: dict[str, TaskHandler] = field(default_factory=dict)
    before: list[BeforeHook] = field(default_factory=list)
    after: list[AfterHook] = field(default_factory=list)
    on_error: list[ErrorHook] = field(default_factory=list)

    def task(self, name: str, *, timeout: float | None = None) -> Callable[[F], F]:
        if not 1 <= len(name) <= MAX_TASK_NAME:
            raise InvalidArgumentError(
                "task name", f"{name!r} must be 1..{MAX_TASK_NAME} characters"
            )
        if timeout is not None and timeout <= 0:
            raise InvalidArgumentError("timeout", f"{timeout!r} must be > 0 seconds")

        def register(func: F) -> F:
            if name in self.handlers:
                raise InvalidArgumentError(
                    "task name", f"{name!r} is registered twice ({self.handlers[name].func!r})"
                )
            self.handlers[name] = TaskHandler(
                name, func, inspect.iscoroutinefunction(func), timeout
            )
            return func

        return register

    def before_task(self, hook: BeforeHook) -> BeforeHook:
        self.before.append(hook)
        return hook

    def after_task(self, hook: AfterHook) -> AfterHook:
        self.after.append(hook)
        return hook

    def on_task_error(self, hook: ErrorHook) -> ErrorHook:
        self.on_error.append(hook)
        return hook


async def call_hook(hook: Callable[..., Any], *args: Any) -> None:
    outcome = hook(*args)
    if isinstance(outcome, Awaitable):
        await outcome


default_registry = Registry()
task = default_registry.task
before_task = default_registry.before_task
after_task = default_registry.after_task
on_task_error = default_registry.on_task_error
