"""Runs one attempt of a task: hooks, the handler under its timeout, and the outcome record."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import json
import logging
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from taskq import jsonutil, tracing
from taskq.correlation import current_correlation_id
from taskq.errors import InvalidArgumentError
from taskq.store.execution import ClaimedTask, Completion, Outcome
from taskq.worker.context import FatalTaskError, TaskCanceledError, TaskContext, current_task
from taskq.worker.registry import Registry, call_hook

log = logging.getLogger("taskq.worker")

_MAX_TRACEBACK = 8_000


class StopReason(enum.Enum):
    CANCELED = "canceled"  # the user canceled the task
    TIMEOUT = "timed_out"  # ran past its deadline
    LEASE_LOST = "lease_lost"  # another worker may hold it now: drop without recording
    SHUTDOWN = "shutdown"  # grace period over: give the task back


@dataclass(slots=True)
class Attempt:
    claimed: ClaimedTask
    ctx: TaskContext
    started: float
    deadline: float  # monotonic; the worker's watchdog stops the attempt past it
    timeout: float
    task: asyncio.Task[Completion | None] | None = None
    stop_reason: StopReason | None = field(default=None)
    renewed: float = 0.0  # monotonic: when its lease was last granted (claim or renewal)

    def stop(self, reason: StopReason) -> None:
        """Ask the attempt to stop: sync handlers see ctx.cancel_requested, async ones a
        CancelledError at their next await."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.ctx.request_cancel()
        if self.task is not None:
            self.task.cancel()


def error_json(error: BaseException, *, with_traceback: bool = True) -> str:
    entry: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if with_traceback:
        entry["traceback"] = "".join(traceback.format_exception(error))[-_MAX_TRACEBACK:]
    return json.dumps(entry)


async def run_attempt(attempt: Attempt, registry: Registry, threads: Executor) -> Completion | None:
    """The completion to record, or None when the attempt must not be recorded by us
    (lease lost, or given back at shutdown)."""
    claimed, ctx = attempt.claimed, attempt.ctx
    with tracing.process_span(
        claimed.queue,
        claimed.task_name,
        claimed.id,
        claimed.attempt,
        ctx.worker_id,
        claimed.traceparent,
        claimed.correlation_id,
    ) as span:
        completion = await _attempt(attempt, registry, threads)
        tracing.outcome(
            span,
            completion.outcome if completion else "released",
            completion.error_json if completion else None,
        )
        return completion


async def _attempt(attempt: Attempt, registry: Registry, threads: Executor) -> Completion | None:
    claimed, ctx = attempt.claimed, attempt.ctx
    token = current_task.set(ctx)
    # runs in this attempt's own asyncio task, so the context change stays with it
    current_correlation_id.set(ctx.correlation_id)
    try:
        outcome, result, error = await _run(claimed, ctx, registry, threads, attempt)
    except asyncio.CancelledError:
        reason = attempt.stop_reason
        if reason is None:
            raise  # not ours: the worker itself is being torn down
        if reason is StopReason.TIMEOUT:
            log.warning("task timed out after %ss", attempt.timeout)
            timeout_error = TimeoutError(
                f"handler ran longer than its timeout of {attempt.timeout}s"
            )
            await _error_hooks(registry, ctx, timeout_error)
            outcome, result, error = (
                "timed_out",
                None,
                error_json(timeout_error, with_traceback=False),
            )
        elif reason is StopReason.CANCELED:
            outcome, result, error = "canceled", None, None
        else:
            return None
    finally:
        current_task.reset(token)
    if attempt.stop_reason is StopReason.LEASE_LOST or attempt.stop_reason is StopReason.SHUTDOWN:
        return None
    return Completion(claimed.queue_id, claimed.id, claimed.attempt_id, outcome, result, error)


async def _run(
    claimed: ClaimedTask,
    ctx: TaskContext,
    registry: Registry,
    threads: Executor,
    attempt: Attempt,
) -> tuple[Outcome, str | None, str | None]:
    handler = registry.handlers.get(claimed.task_name)
    if handler is None:
        # Retrying would not help this worker; the task goes to the dead letters, from where
        # it can be replayed once a worker knows the task.
        known = ", ".join(sorted(registry.handlers)) or "none"
        return (
            "fatal",
            None,
            json.dumps(
                {
                    "type": "UnknownTask",
                    "message": f"no handler registered for task {claimed.task_name!r} "
                    f"on worker {ctx.worker_id} (registered: {known})",
                }
            ),
        )
    try:
        for hook in registry.before:
            await call_hook(hook, ctx)
        if handler.is_async:
            value = await handler.func(ctx)
        else:
            # The timeout counts from when a thread takes the handler: a timed-out handler that
            # ignores ctx.cancel_requested keeps its thread, and waiting for one is not run time.
            attempt.deadline = float("inf")

            def in_thread() -> Any:
                attempt.deadline = time.monotonic() + attempt.timeout
                return handler.func(ctx)

            call = contextvars.copy_context().run
            value = await asyncio.get_running_loop().run_in_executor(threads, call, in_thread)
        result = None if value is None else jsonutil.dumps(value, "result")
        for after in registry.after:
            await call_hook(after, ctx, value)
    except TaskCanceledError:
        return "canceled", None, None
    except FatalTaskError as error:
        log.warning("task failed for good: %s", error)
        await _error_hooks(registry, ctx, error)
        return "fatal", None, error_json(error, with_traceback=False)
    except InvalidArgumentError as error:  # the handler returned something that is not JSON
        await _error_hooks(registry, ctx, error)
        return "failed", None, error_json(error, with_traceback=False)
    except Exception as error:
        log.warning("task failed: %s: %s", type(error).__name__, error)
        await _error_hooks(registry, ctx, error)
        return "failed", None, error_json(error)
    return "succeeded", result, None


async def _error_hooks(registry: Registry, ctx: TaskContext, error: BaseException) -> None:
    for hook in registry.on_error:
        try:
            await call_hook(hook, ctx, error)
        except Exception:
            log.exception("on_task_error hook failed")
