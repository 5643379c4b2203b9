"""TaskqApiKey: a key of the taskq API is in the object's Secret, with the spec's grants, until
the object goes.

The key is made here, never supplied: the database keeps its digest, the Secret (owned by the
object) its only copy. When the Secret no longer holds the key the database knows (deleted,
emptied, overwritten, or the key revoked with `taskq keys revoke`), the key cannot be read back,
so a new one is issued and the old one revoked with it: deleting the Secret rotates the key.
Grants change in place. A TaskqApiKey reaches its own namespace only, and is never an admin
key, unless it lives in the operator's keys namespace (TASKQ_OPERATOR_KEYS_NAMESPACE): whoever
may create one in a namespace must not gain more than that namespace.
"""

from __future__ import annotations

from datetime import UTC, datetime

from taskq.auth import ApiKey, Grants, Role
from taskq.errors import ApiKeyConflictError, InvalidArgumentError, TaskqError
from taskq.store.keys import MAX_LIFETIME, DeclaredKey
from taskq.store.migrations import MigrationChecksumError
from taskq_operator.api import TaskqApiKeySpec, TaskqApiKeyStatus, set_condition
from taskq_operator.k8s import NotFoundError, SecretState
from taskq_operator.reconcile.context import ApiKeyContext, not_ready
from taskq_operator.reconcile.ports import KeyDatabase, NoDatabaseError, Ports
from taskq_operator.reconcile.runtime import KeyMemory
from taskq_operator.resources import API_KEY_DATA_KEY, ObjectRef, api_key_secret

KIND = "TaskqApiKey"
# Ready=False reasons that only the user can change: checking again before the next period,
# or a spec change, finds the same.
SETTLED_REASONS = frozenset({"KeyReady", "Expired", "InvalidSpec", "SecretConflict"})


class KeyProblem(Exception):
    """Something the user must fix; reason is a CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def declared_by(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _database(spec: TaskqApiKeySpec) -> tuple[str, str] | None:
    ref = spec.database.secret_key_ref if spec.database else None
    return (ref.name, ref.key) if ref else None


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(grants: Grants) -> str:
    """One line for Events and conditions: role, namespaces, payloads, expiry."""
    reach = "every namespace" if grants.namespaces is None else ", ".join(grants.namespaces)
    sees = grants.reads_payloads or grants.role >= Role.OPERATOR
    until = "never" if grants.expires_at is None else _when(grants.expires_at)
    return (
        f"role {grants.role.label}, namespaces {reach}, "
        f"payloads {'shown' if sees else 'hidden'}, expires {until}"
    )


def wanted_grants(ctx: ApiKeyContext) -> Grants:
    """The spec as grants; KeyProblem InvalidSpec, naming the field, when this namespace may
    not declare them."""
    spec, here = ctx.spec, ctx.namespace
    namespaces = None if spec.all_namespaces else tuple(sorted(set(spec.namespaces or [here])))
    keys_namespace = ctx.ports.settings.keys_namespace
    if here != keys_namespace:
        elsewhere = (
            f"declare it in the operator's keys namespace {keys_namespace} "
            "(TASKQ_OPERATOR_KEYS_NAMESPACE)"
            if keys_namespace
            else "this operator lets no namespace declare one (TASKQ_OPERATOR_KEYS_NAMESPACE is "
            "not set): make it with `taskq keys create`"
        )
        if namespaces is None:
            raise KeyProblem(
                "InvalidSpec",
                f"spec.allNamespaces: a TaskqApiKey in namespace {here} reaches only {here}: "
                f"leave allNamespaces out, or, for a key of every namespace, {elsewhere}",
            )
        others = [n for n in namespaces if n != here]
        if others:
            raise KeyProblem(
                "InvalidSpec",
                f"spec.namespaces: a TaskqApiKey in namespace {here} reaches only {here}, not "
                f"{', '.join(others)}: list only {here} (or leave namespaces out), or, for a key "
                f"of other namespaces, {elsewhere}",
            )
        if spec.role == "admin":
            raise KeyProblem(
                "InvalidSpec",
                f"spec.role: a TaskqApiKey in namespace {here} may be viewer or operator, not "
                "admin (admin keys manage the keys of every namespace): choose one, or, for an "
                f"admin key, {elsewhere}",
            )
    if spec.expires_at is not None and spec.expires_at > ctx.now + MAX_LIFETIME:
        raise KeyProblem(
            "InvalidSpec",
            f"spec.expiresAt: {_when(spec.expires_at)} is more than {MAX_LIFETIME.days} days "
            "ahead: set an earlier time, or leave expiresAt out for a key that never expires",
        )
    role = Role.parse(spec.role, "spec.role")
    return Grants(role, namespaces, spec.reads_payloads, spec.expires_at)


async def reconcile_api_key(ctx: ApiKeyContext) -> TaskqApiKeyStatus:
    """The key in its Secret with the spec's grants; the status says which key, and Ready=False
    with a reason and the fix when that cannot be. Nothing once the key was revoked for the
    object's deletion."""
    async with ctx.memory.lock:
        if ctx.memory.revoked:
            return ctx.status
        return await _reconcile(ctx)


async def _reconcile(ctx: ApiKeyContext) -> TaskqApiKeyStatus:
    secret_name = ctx.spec.secret_name or ctx.name
    try:
        wanted = wanted_grants(ctx)
        db = await ctx.ports.databases.keys(
            await ctx.ports.dsn(ctx.namespace, _database(ctx.spec))
        )
        key = await _key_in_secret(ctx, db, wanted, secret_name)
    except KeyProblem as problem:
        return not_ready(ctx, KIND, problem.reason, str(problem))
    except MigrationChecksumError as error:
        return not_ready(ctx, KIND, "SchemaConflict", str(error))
    except NotFoundError as error:
        return not_ready(ctx, KIND, "SecretNotFound", str(error))
    except NoDatabaseError as error:
        return not_ready(ctx, KIND, "NoDatabase", str(error))
    except InvalidArgumentError as error:  # what the database refused of the spec
        return not_ready(ctx, KIND, "InvalidSpec", str(error))
    except ApiKeyConflictError as error:  # changed under the operator: the next pass sees how
        return not_ready(ctx, KIND, "KeyConflict", str(error))
    except TaskqError as error:
        return not_ready(ctx, KIND, "DatabaseUnavailable", str(error))
    status = ctx.status.model_copy(
        update={
            "observed_generation": ctx.generation,
            "prefix": key.prefix,
            "key_name": key.name,
            "secret_name": secret_name,
            "issued_at": key.created_at,
            "last_used_at": key.last_used_at,
            "role": key.role.label,
            "namespaces": ["*"] if key.namespaces is None else list(key.namespaces),
        }
    )
    if key.expires_at is not None and key.expires_at <= ctx.now:
        return not_ready(
            ctx,
            KIND,
            "Expired",
            f"key {key.prefix} expired at {_when(key.expires_at)} (spec.expiresAt): set a later "
            "spec.expiresAt to use it again, or delete this TaskqApiKey",
            status=status,
        )
    conditions = set_condition(
        status.conditions,
        type="Ready",
        status="True",
        reason="KeyReady",
        message=f"key {key.prefix} is in Secret {secret_name} (data key {API_KEY_DATA_KEY!r}): "
        + describe(key.grants),
        now=ctx.now,
        observed_generation=ctx.generation,
    )
    return status.model_copy(update={"conditions": conditions})


async def _key_in_secret(
    ctx: ApiKeyContext, db: KeyDatabase, wanted: Grants, secret_name: str
) -> ApiKey:
    """The object's key with `wanted` grants, in its Secret: as it was, changed in place, or
    new (the one before it revoked)."""
    by = declared_by(ctx.namespace, ctx.name)
    current = await db.declared_key(by)
    secret = await ctx.ports.k8s.read_secret(ctx.namespace, secret_name)
    if secret is not None and secret.controller_uid != ctx.uid:
        raise KeyProblem(
            "SecretConflict",
            f"Secret {ctx.namespace}/{secret_name} exists and is not owned by this TaskqApiKey, "
            "so the operator leaves it alone: delete that Secret, or re-create this TaskqApiKey "
            "with another spec.secretName",
        )
    held = secret.data.get(API_KEY_DATA_KEY) if secret else None
    if current is not None and held is not None and current.opened_by(held):
        key = current.key
        if key.grants != wanted:
            if wanted.expires_at is not None and wanted.expires_at <= key.created_at:
                raise KeyProblem(
                    "InvalidSpec",
                    f"spec.expiresAt: {_when(wanted.expires_at)} is before key {key.prefix} "
                    f"was issued ({_when(key.created_at)}): set a later time",
                )
            key = await db.set_grants(key, wanted)
            ctx.emit("Normal", "Configured", f"key {key.prefix} now: {describe(key.grants)}")
        return key
    why = _why_new(ctx, current, secret, secret_name)
    if wanted.expires_at is not None and wanted.expires_at <= ctx.now:
        raise KeyProblem(
            "InvalidSpec",
            f"spec.expiresAt: {_when(wanted.expires_at)} has passed, and a new key is needed "
            f"({why}): set a later time",
        )
    key, made = await db.declare_key(by, wanted)
    owner = ObjectRef(name=ctx.name, namespace=ctx.namespace, uid=ctx.uid)
    await ctx.ports.k8s.apply(api_key_secret(owner, secret_name, made))
    issued = f"issued key {key.prefix} ({describe(key.grants)}) into Secret {secret_name}"
    if current is None and ctx.status.prefix is None:
        ctx.emit("Normal", "Issued", issued)
    elif current is None:
        ctx.emit("Normal", "Rotated", f"{why}: {issued}")
    else:
        ctx.emit("Normal", "Rotated", f"{why}: revoked key {current.key.prefix}, {issued}")
    return key


def _why_new(
    ctx: ApiKeyContext, current: DeclaredKey | None, secret: SecretState | None, secret_name: str
) -> str:
    """Why the object needs a new key."""
    if current is None:
        if ctx.status.prefix is None:
            return "no key was issued yet"
        return f"key {ctx.status.prefix} was revoked outside the operator (taskq keys revoke)"
    if secret is None:
        return f"Secret {secret_name} was deleted"
    if API_KEY_DATA_KEY not in secret.data:
        return f"Secret {secret_name} lost its data key {API_KEY_DATA_KEY!r}"
    return f"Secret {secret_name} holds a key other than {current.key.prefix}"


async def delete_api_key(
    ports: Ports, namespace: str, name: str, spec: TaskqApiKeySpec, memory: KeyMemory
) -> ApiKey | None:
    """Revoke the key the object declares, after any pass in progress, and let no later pass
    issue one (its Secret goes with the object, as an owned object); None when it declared
    none. Raises TaskqError (the caller retries) when the database cannot be reached: a key is
    never left behind usable."""
    async with memory.lock:
        db = await ports.databases.keys(await ports.dsn(namespace, _database(spec)))
        revoked = await db.revoke_declared(declared_by(namespace, name))
        memory.revoked = True
        return revoked
