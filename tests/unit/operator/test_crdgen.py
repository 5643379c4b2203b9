"""The CRDs: generated from the models, committed, structural, and what kubectl shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from taskq_operator import crdgen
from taskq_operator.api import TaskqApiKeySpec, TaskQueueSpec, WorkerPoolSpec
from taskq_operator.openapi import UnsupportedSchemaError, structural_schema, without_empty

CRDS = {
    "TaskQueue": crdgen.task_queue_crd(),
    "WorkerPool": crdgen.worker_pool_crd(),
    "TaskqApiKey": crdgen.api_key_crd(),
    "TaskSchedule": crdgen.task_schedule_crd(),
}
SHORT_NAMES = {"TaskQueue": "tq", "WorkerPool": "wp", "TaskqApiKey": "tqkey", "TaskSchedule": "ts"}


def version(kind: str) -> dict[str, Any]:
    [only] = CRDS[kind]["spec"]["versions"]
    assert isinstance(only, dict)
    return only


def root(kind: str) -> dict[str, Any]:
    schema = version(kind)["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, as the API server walks them."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for name in json_path.lstrip(".").split("."):
        node = node["properties"][name]
    return node


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: a missing field with a default gets
    it, then defaulting continues inside it."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    out = dict(value)
    for name, sub in schema["properties"].items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = apply_defaults(sub, out[name])
    return out


@pytest.mark.parametrize("directory", crdgen.CRD_DIRS, ids=["crds", "chart"])
def test_the_committed_crds_are_what_the_models_generate(directory: Path) -> None:
    assert crdgen.stale(directory) == [], "run: python -m taskq_operator.crdgen"


def test_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1
    assert "taskq.dev_taskqueues.yaml is stale" in capsys.readouterr().err
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "taskq.dev_taskqapikeys.yaml",
        "taskq.dev_taskqueues.yaml",
        "taskq.dev_taskschedules.yaml",
        "taskq.dev_workerpools.yaml",
    ]
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "taskq.dev_workerpools.yaml").write_text("# edited\n")
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1


def test_the_files_parse_as_the_generated_documents() -> None:
    for name, text in crdgen.rendered().items():
        document = yaml.safe_load(text)
        assert name == f"taskq.dev_{document['spec']['names']['plural']}.yaml"
        assert document == CRDS[document["spec"]["names"]["kind"]]


@pytest.mark.parametrize("kind", CRDS)
def test_schemas_are_structural(kind: str) -> None:
    for path, node in nodes(root(kind)):
        for keyword in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "nullable"):
            assert keyword not in node, f"{kind}{path} has {keyword}"
        untyped = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or untyped, f"{kind}{path}"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{kind}{path}: OpenAPI v3.0 wants a flag"


@pytest.mark.parametrize("kind", CRDS)
def test_crd_identity(kind: str) -> None:
    crd = CRDS[kind]
    plural = kind.lower() + "s"
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.taskq.dev"
    assert crd["spec"]["group"] == "taskq.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [SHORT_NAMES[kind]],
        "categories": ["taskq"],
    }
    assert version(kind)["name"] == "v1alpha1"
    assert version(kind)["served"] is True
    assert version(kind)["storage"] is True


def test_subresources() -> None:
    assert version("TaskQueue")["subresources"] == {"status": {}}
    assert version("TaskqApiKey")["subresources"] == {"status": {}}
    scale = version("WorkerPool")["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    schema = root("WorkerPool")
    assert at(schema, ".spec.replicas")["type"] == "integer"
    assert at(schema, ".status.replicas")["type"] == "integer"
    assert at(schema, ".status.selector")["type"] == "string"


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("TaskQueue", ["Ready", "Pending", "Running", "Dead", "Capped", "Oldest", "Age"]),
        ("WorkerPool", ["Queues", "Desired", "Ready", "Min", "Max", "Age"]),
        ("TaskqApiKey", ["Role", "Namespaces", "Prefix", "Ready", "Last Used", "Age"]),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    defined = version(kind)["additionalPrinterColumns"]
    assert [c["name"] for c in defined if "priority" not in c] == columns
    for column in defined:
        path = column["jsonPath"]
        if "[?" in path or path.startswith(".metadata"):
            continue
        node = at(root(kind), path)
        if column["type"] == "date":
            assert node["format"] == "date-time", path
        elif column["type"] != "string" or node["type"] != "array":
            assert node["type"] == column["type"], path


def test_the_ready_column_reads_the_ready_condition() -> None:
    [ready] = [c for c in version("TaskQueue")["additionalPrinterColumns"] if c["name"] == "Ready"]
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_the_oldest_column_is_an_age() -> None:
    [oldest] = [
        c for c in version("TaskQueue")["additionalPrinterColumns"] if c["name"] == "Oldest"
    ]
    assert (oldest["type"], oldest["jsonPath"]) == ("date", ".status.oldestReadyTime")


@pytest.mark.parametrize(
    ("kind", "model", "minimal"),
    [
        ("TaskQueue", TaskQueueSpec, {}),
        ("WorkerPool", WorkerPoolSpec, {"queues": ["q"], "image": "app:1", "app": "app.tasks"}),
        ("TaskqApiKey", TaskqApiKeySpec, {"role": "viewer"}),
    ],
)
def test_the_api_server_fills_in_the_models_defaults(
    kind: str,
    model: type[TaskQueueSpec | WorkerPoolSpec | TaskqApiKeySpec],
    minimal: dict[str, Any],
) -> None:
    defaulted = apply_defaults(at(root(kind), ".spec"), minimal)
    assert without_empty(defaulted) == without_empty(model.model_validate(minimal).to_k8s())


def test_an_omitted_task_queue_spec_is_defaulted() -> None:
    defaulted = apply_defaults(root("TaskQueue"), {"metadata": {"name": "emails"}})
    assert defaulted["spec"] == TaskQueueSpec().to_k8s()


@pytest.mark.parametrize("kind", CRDS)
def test_object_defaults_are_written_out_in_full(kind: str) -> None:
    """The API server checks an object's default against the object's CEL rules without
    filling in nested defaults first: `default: {}` would fail `self.minReplicas <= ...`."""
    for path, node in nodes(root(kind)):
        if isinstance(node.get("default"), dict):
            assert node["default"] == without_empty(apply_defaults(node, {})), f"{kind}{path}"


def test_status_has_no_defaults() -> None:
    for kind in CRDS:
        for path, node in nodes(at(root(kind), ".status")):
            assert "default" not in node, f"{kind}.status{path}"


def test_spec_is_required_only_where_fields_are() -> None:
    assert "required" not in root("TaskQueue")
    assert root("TaskQueue")["properties"]["spec"]["default"]["timeoutSeconds"] == 300
    assert root("WorkerPool")["required"] == ["spec"]
    assert at(root("WorkerPool"), ".spec")["required"] == ["queues", "image", "app"]
    assert root("TaskqApiKey")["required"] == ["spec"]
    assert at(root("TaskqApiKey"), ".spec")["required"] == ["role"]


@pytest.mark.parametrize("kind", CRDS)
def test_names_must_be_dns_labels(kind: str) -> None:
    name = at(root(kind), ".metadata.name")
    assert name == {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}


def rules(kind: str, path: str) -> list[dict[str, str]]:
    found = at(root(kind), path)["x-kubernetes-validations"]
    assert isinstance(found, list)
    return found


def test_the_database_of_a_queue_cannot_change() -> None:
    [rule] = rules("TaskQueue", ".spec")
    assert "oldSelf.database" in rule["rule"]
    assert rule["message"].startswith("spec.database is immutable")
    assert "create a new TaskQueue" in rule["message"]
    assert rule["fieldPath"] == ".database"


def test_a_keys_database_and_secret_cannot_change_and_its_reach_is_one_or_the_other() -> None:
    reach, database, secret = rules("TaskqApiKey", ".spec")
    assert "self.allNamespaces" in reach["rule"] and "has(self.namespaces)" in reach["rule"]
    assert reach["message"].startswith("spec.namespaces and spec.allNamespaces exclude")
    for rule, field in ((database, "database"), (secret, "secretName")):
        assert f"oldSelf.{field}" in rule["rule"]
        assert rule["message"].startswith(f"spec.{field} is immutable")
        assert rule["fieldPath"] == f".{field}"
    assert at(root("TaskqApiKey"), ".spec.namespaces")["x-kubernetes-list-type"] == "set"
    assert at(root("TaskqApiKey"), ".spec.expiresAt")["format"] == "date-time"


def test_cross_field_rules() -> None:
    [backoff] = rules("TaskQueue", ".spec.retry.backoff")
    assert backoff["rule"] == "self.baseSeconds <= self.maxSeconds"
    [bounds] = rules("WorkerPool", ".spec.autoscaling")
    assert bounds["rule"] == "self.minReplicas <= self.maxReplicas"
    [replicas, pooled_env] = rules("WorkerPool", ".spec")
    assert "External" in replicas["rule"]
    assert replicas["fieldPath"] == ".replicas"
    assert "'TASKQ_DB_POOL_MODE', 'TASKQ_LISTEN'" in pooled_env["rule"]
    assert pooled_env["rule"].startswith("!has(self.pooler)")
    assert pooled_env["fieldPath"] == ".env"
    # per entry: the API server names the entry (spec.env[1]) and the variable set
    [one_value, reserved] = at(root("WorkerPool"), ".spec.env")["items"][
        "x-kubernetes-validations"
    ]
    assert one_value["rule"] == "!has(self.value) || !has(self.valueFrom)"
    assert "'TASKQ_DSN'" in reserved["rule"]
    assert reserved["messageExpression"].startswith("'env must not set ' + self.name")
    [one_source] = at(root("WorkerPool"), ".spec.envFrom")["items"]["x-kubernetes-validations"]
    assert one_source["rule"] == "has(self.configMapRef) != has(self.secretRef)"


def test_rules_only_touch_bounded_values() -> None:
    """CEL cost estimates need a bound on every list and string a rule iterates."""
    env = at(root("WorkerPool"), ".spec.env")
    assert env["maxItems"] == 128
    assert env["items"]["properties"]["name"]["maxLength"] == 256


def test_conditions_are_a_map_keyed_by_type() -> None:
    for kind in CRDS:
        conditions = at(root(kind), ".status.conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_pass_through_kubernetes_objects_keep_unknown_fields() -> None:
    pool = at(root("WorkerPool"), ".spec")
    assert at(pool, ".pod.affinity") == {
        "description": "A core/v1 Affinity, as in a Pod spec.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    quantity = at(pool, ".resources.limits")["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert "type" not in quantity


def test_exclusive_bounds_become_openapi_flags() -> None:
    per_second = at(root("TaskQueue"), ".spec.rateLimit.perSecond")
    assert (per_second["minimum"], per_second["exclusiveMinimum"]) == (0, True)


def test_descriptions_come_from_docstrings_on_one_line() -> None:
    timeout = at(root("TaskQueue"), ".spec.timeoutSeconds")
    assert timeout["description"] == "How long one attempt may run before it is timed out."
    for kind in CRDS:
        for path, node in nodes(root(kind)):
            assert "\n" not in node.get("description", ""), f"{kind}{path}"


class _Union(BaseModel):
    value: int | str


class _Free(BaseModel):
    value: dict[str, Any]


@pytest.mark.parametrize(("model", "words"), [(_Union, "union"), (_Free, "free-form")])
def test_unstructural_models_are_refused(model: type[BaseModel], words: str) -> None:
    with pytest.raises(UnsupportedSchemaError, match=words):
        structural_schema(model)
