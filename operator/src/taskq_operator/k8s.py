"""The only module that calls the Kubernetes API (the official client, run in threads).

Objects the operator owns are written with server-side apply under one field manager: a
create-or-update that never duplicates and never fights users over fields it does not set.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from taskq_operator.api import GROUP, VERSION

FIELD_MANAGER = "taskq-operator"
Manifest = dict[str, Any]


class NotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class FieldError:
    """One thing the API server found wrong with an object: a field path as it names it
    (spec.template.spec.containers[0].image; empty when it names none) and what is wrong."""

    field: str
    message: str


class InvalidObjectError(ValueError):
    """The API server refused an object for its content: input to fix, not a fault to retry."""

    def __init__(self, kind: str, name: str, errors: tuple[FieldError, ...]) -> None:
        super().__init__(
            f"{kind} {name} refused: " + "; ".join(f"{e.field}: {e.message}" for e in errors)
        )
        self.kind = kind
        self.errors = errors


# Server-side apply refuses a field of the wrong type or shape before validation, as an
# internal error (500) whose message holds the paths: ".spec.x.y: field not declared in schema".
_TYPED_PATCH = re.compile(r"failed to create typed patch object \([^)]*\): (.*)", re.DOTALL)
_TYPED_PATCH_ERROR = re.compile(r"(\.\S+): (.*)")


def _refusal(error: ApiException, kind: str, name: str) -> InvalidObjectError | None:
    """The error as an InvalidObjectError when the object's content is at fault."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    message = str(body.get("message", ""))
    if error.status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        errors = tuple(
            FieldError(str(c.get("field", "")), str(c.get("message", ""))) for c in causes
        )
        return InvalidObjectError(kind, name, errors or (FieldError("", message),))
    typed = _TYPED_PATCH.search(message) if error.status == 500 else None
    if typed is None:
        return None
    found = []
    for line in typed.group(1).splitlines():
        field = _TYPED_PATCH_ERROR.fullmatch(line.strip())
        if field:
            found.append(FieldError(field.group(1).lstrip("."), field.group(2)))
    return InvalidObjectError(kind, name, tuple(found) or (FieldError("", typed.group(1)),))


@dataclass(frozen=True)
class DeploymentState:
    spec_replicas: int
    replicas: int
    ready_replicas: int


@dataclass(frozen=True)
class SecretState:
    """A Secret as the operator reads one it may own."""

    data: dict[str, str]  # decoded; a value that is not UTF-8 has its bad bytes replaced
    controller_uid: str | None  # the uid of its controlling owner, if it has one


class KubernetesPort:
    def __init__(self, api: k8s_client.ApiClient) -> None:
        self._core = k8s_client.CoreV1Api(api)
        self._apps = k8s_client.AppsV1Api(api)
        self._custom = k8s_client.CustomObjectsApi(api)

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise NotFoundError(f"Secret {namespace}/{name} not found") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    async def read_secret(self, namespace: str, name: str) -> SecretState | None:
        """The Secret; None when it does not exist."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        owners = (secret.metadata.owner_references if secret.metadata else None) or []
        return SecretState(
            data={
                key: base64.b64decode(value).decode(errors="replace")
                for key, value in (secret.data or {}).items()
            },
            controller_uid=next((o.uid for o in owners if o.controller), None),
        )

    async def apply(self, manifest: Manifest) -> None:
        """Server-side apply of a namespaced Deployment or Secret; InvalidObjectError when
        the API server refuses its content."""
        meta = manifest["metadata"]
        kind = manifest["kind"]
        call = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "Secret": self._core.patch_namespaced_secret,
        }[kind]
        try:
            await asyncio.to_thread(
                call,
                meta["name"],
                meta["namespace"],
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as error:
            refusal = _refusal(error, kind, f"{meta['namespace']}/{meta['name']}")
            if refusal is None:
                raise
            raise refusal from None

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas alone (its scale subresource), leaving its template."""
        await asyncio.to_thread(
            self._apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
        )

    async def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        try:
            deployment = await asyncio.to_thread(
                self._apps.read_namespaced_deployment, name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        status = deployment.status
        return DeploymentState(
            spec_replicas=(deployment.spec.replicas if deployment.spec else None) or 0,
            replicas=(status.replicas if status else None) or 0,
            ready_replicas=(status.ready_replicas if status else None) or 0,
        )

    async def task_queue(self, namespace: str, name: str) -> Manifest | None:
        return await self._custom_object("taskqueues", namespace, name)

    async def _custom_object(self, plural: str, namespace: str, name: str) -> Manifest | None:
        """One of our custom objects; None when it does not exist."""
        try:
            found = await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(Manifest, found)

    async def patch_status(self, plural: str, namespace: str, name: str, status: Manifest) -> bool:
        """Patch a custom object's status; True when the object is being deleted."""
        patched = await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
        )
        return bool(cast(Manifest, patched).get("metadata", {}).get("deletionTimestamp"))

    async def deletion_requested(self, plural: str, namespace: str, name: str) -> bool:
        """True when the custom object is marked for deletion (or already gone)."""
        found = await self._custom_object(plural, namespace, name)
        return found is None or bool(found["metadata"].get("deletionTimestamp"))

    async def remove_finalizer(
        self, plural: str, namespace: str, name: str, finalizer: str
    ) -> None:
        """Drop `finalizer` from a custom object (guarded by its resourceVersion, so other
        finalizers added meanwhile are kept); an object already gone is fine."""
        found = await self._custom_object(plural, namespace, name)
        if found is None:
            return
        meta = found["metadata"]
        kept = [f for f in meta.get("finalizers", []) if f != finalizer]
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"metadata": {"finalizers": kept, "resourceVersion": meta["resourceVersion"]}},
            )
        except ApiException as error:
            if error.status != 404:
                raise
