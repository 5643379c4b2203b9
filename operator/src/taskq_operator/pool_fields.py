"""Where the API server's complaints about a worker Deployment come from in the WorkerPool.

The Deployment is built from the pool (resources.worker_deployment); when the API server
refuses it, the paths it names are the Deployment's (spec.template.spec.containers[0]...),
which the user never wrote. This maps them back to the WorkerPool field they came from."""

from __future__ import annotations

import re

from taskq_operator.api import OPERATOR_SETTINGS

_CONTAINER = "spec.template.spec.containers[0]"
_POD = "spec.template.spec"

# Deployment path prefix -> WorkerPool path prefix, longest first where one extends another.
_PREFIXES = (
    (f"{_CONTAINER}.envFrom", "spec.envFrom"),
    (f"{_CONTAINER}.resources", "spec.resources"),
    (f"{_CONTAINER}.imagePullPolicy", "spec.imagePullPolicy"),
    (f"{_CONTAINER}.image", "spec.image"),
    ("spec.template.metadata.labels", "spec.pod.labels"),
    ("spec.template.metadata.annotations", "spec.pod.annotations"),
    # ObjectMeta's validation names the template's labels without `metadata`
    ("spec.template.labels", "spec.pod.labels"),
    ("spec.template.annotations", "spec.pod.annotations"),
    (f"{_POD}.nodeSelector", "spec.pod.nodeSelector"),
    (f"{_POD}.tolerations", "spec.pod.tolerations"),
    (f"{_POD}.affinity", "spec.pod.affinity"),
    (f"{_POD}.serviceAccountName", "spec.pod.serviceAccountName"),
    (f"{_POD}.imagePullSecrets", "spec.pod.imagePullSecrets"),
    (f"{_POD}.priorityClassName", "spec.pod.priorityClassName"),
    (f"{_POD}.terminationGracePeriodSeconds", "spec.terminationGracePeriodSeconds"),
)
_ENV = re.compile(re.escape(f"{_CONTAINER}.env") + r"\[(\d+)\](.*)")


def pool_field(deployment_field: str) -> str | None:
    """The WorkerPool field (`spec.resources.requests`) a Deployment field path comes from;
    None for a field the operator sets itself."""
    path = deployment_field.lstrip(".")  # server-side apply's type errors start with a dot
    env = _ENV.fullmatch(path)
    if env:
        # the operator's own variables come first (resources._operator_env)
        index = int(env.group(1)) - len(OPERATOR_SETTINGS)
        return f"spec.env[{index}]{env.group(2)}" if index >= 0 else None
    for prefix, field in _PREFIXES:
        if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
            return field + path[len(prefix) :]
    return None
