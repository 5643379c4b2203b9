"""Finds the user's handlers: TASKQ_APP names a module (its @task decorators fill the default
registry) or `module:attribute` naming a Registry."""

from __future__ import annotations

import importlib

from taskq.errors import InvalidArgumentError
from taskq.worker.registry import Registry, default_registry


def load_registry(app: str) -> Registry:
    module_name, _, attribute = app.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidArgumentError(
            "TASKQ_APP", f"cannot import {module_name!r}: {error} (is it on PYTHONPATH?)"
        ) from None
    if not attribute:
        registry = default_registry
    else:
        found = getattr(module, attribute, None)
        if not isinstance(found, Registry):
            raise InvalidArgumentError(
                "TASKQ_APP", f"{app!r} is not a taskq Registry (found {type(found).__name__})"
            )
        registry = found
    if not registry.handlers:
        raise InvalidArgumentError(
            "TASKQ_APP", f'{app!r} registers no handlers: decorate functions with @task("name")'
        )
    return registry
