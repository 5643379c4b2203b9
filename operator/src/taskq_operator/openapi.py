"""Pydantic JSON Schema -> the structural OpenAPI v3 schema a CustomResourceDefinition needs.

The API server accepts only structural schemas: every node has a type, no $ref, and no
anyOf/oneOf except the int-or-string form. Pydantic writes Optional[X] as anyOf [X, null];
in Kubernetes an optional field is simply one that is not required, so the null branch goes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

# Key order of every node in the generated YAML, so a diff of the CRDs reads like the models.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "properties",
    "required",
    "items",
    "additionalProperties",
)
_RULE_ORDER = ("rule", "message", "fieldPath", "reason")
_DROPPED = {"title"}


class UnsupportedSchemaError(ValueError):
    """The model uses a construct a structural schema cannot express."""


def structural_schema(model: type[BaseModel], *, defaults: bool = True) -> Schema:
    """The model's schema with every $ref inlined, Optional as not-required and
    OpenAPI v3.0 keywords. Without `defaults`, no default is emitted (for status, which
    records observations: a default would invent one)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, defaults=defaults)


def _convert(node: Schema, definitions: dict[str, Schema], *, defaults: bool) -> Schema:
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        # Siblings of a $ref (description, default) describe the use and win over the target.
        node = {**definitions[ref.rsplit("/", 1)[-1]], **node}
    branches = node.pop("anyOf", None)
    if branches is not None:
        present = [b for b in branches if b != {"type": "null"}]
        if len(present) != 1:
            raise UnsupportedSchemaError(f"a union other than Optional[X]: {branches}")
        node = {**present[0], **node}
        if node.get("default", ...) is None:
            del node["default"]
        return _convert(node, definitions, defaults=defaults)
    for keyword in ("oneOf", "allOf", "not", "const"):
        if keyword in node:
            raise UnsupportedSchemaError(f"{keyword} is not structural: {node}")

    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 gives the bound; OpenAPI v3.0 a flag next to it.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {
                name: _convert(sub, definitions, defaults=defaults) for name, sub in value.items()
            }
        elif key == "description":
            # Docstrings wrap at the source's line length; kubectl explain wraps on its own.
            out[key] = " ".join(value.split())
        elif key == "x-kubernetes-validations":
            out[key] = [_ordered(rule, _RULE_ORDER) for rule in value]
        elif key == "items":
            out[key] = _convert(value, definitions, defaults=defaults)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _convert(value, definitions, defaults=defaults)
            elif value is True:
                raise UnsupportedSchemaError("a free-form map: annotate it as api.base.FreeForm")
            # False: unknown fields are pruned by the API server anyway.
        else:
            out[key] = value
    untyped = out.get("x-kubernetes-int-or-string") or out.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in out and not untyped:
        raise UnsupportedSchemaError(f"a node without a type: {node}")
    _settle_default(out, defaults=defaults)
    return _ordered(out, _KEY_ORDER)


def _settle_default(node: Schema, *, defaults: bool) -> None:
    """Keep defaults that change what is stored. An object's default is written out in full
    (not as `{}`): the API server checks a default against the object's CEL rules without
    filling in the defaults nested in it. Unset fields, empty lists and empty maps are left
    out: absent already means that."""
    if "default" not in node:
        return
    value = without_empty(node["default"])
    if defaults and value not in (None, [], {}):
        node["default"] = value
    else:
        del node["default"]


def without_empty(value: Any) -> Any:
    """`value` without unset fields, empty lists and empty maps, at any depth."""
    if isinstance(value, dict):
        kept = {key: without_empty(sub) for key, sub in value.items()}
        return {key: sub for key, sub in kept.items() if sub not in (None, [], {})}
    return value


def _ordered(mapping: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """`mapping` with the keys of `order` first, in that order, then the rest sorted."""

    def rank(key: str) -> tuple[int, str]:
        return (order.index(key), "") if key in order else (len(order), key)

    return {key: mapping[key] for key in sorted(mapping, key=rank)}
