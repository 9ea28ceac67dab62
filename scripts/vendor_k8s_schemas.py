"""Vendor the JSON Schemas kubeconform needs to validate the Helm chart, without the network.

kubeconform normally downloads schemas from GitHub; here they are generated from sources the
Go module proxy serves and committed under tests/data/k8s-schemas/:

- Kubernetes kinds: from api/openapi-spec/swagger.json of the k8s.io/kubernetes module,
  converted the way kubeconform's own schemas are made (openapi2jsonschema with
  --expanded --kubernetes --stand-alone --strict): $refs inlined, additionalProperties:
  false, optional fields nullable, int-or-string and Quantity widened.
- prometheus-operator CRDs: the openAPIV3Schema of each CRD, nested objects strict
  (kubeconform's scripts/openapi2jsonschema.py).

Only the kinds the chart renders are written. To refresh (pin versions in KUBERNETES and
OPERATOR below and in tests/deploy/test_helm.py):

    go mod download -json k8s.io/kubernetes@v1.34.3                        # note "Dir"
    go mod download -json github.com/prometheus-operator/prometheus-operator@v0.85.0
    python scripts/vendor_k8s_schemas.py K8S_DIR OPERATOR_DIR
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

KUBERNETES = "1.34.3"
OPERATOR = "v0.85.0"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "k8s-schemas"

# swagger definition name -> kubeconform file name ({kind}[-{group}]-{version}.json)
KINDS = {
    "io.k8s.api.core.v1.ConfigMap": "configmap-v1.json",
    "io.k8s.api.core.v1.Service": "service-v1.json",
    "io.k8s.api.core.v1.ServiceAccount": "serviceaccount-v1.json",
    "io.k8s.api.apps.v1.Deployment": "deployment-apps-v1.json",
    "io.k8s.api.policy.v1.PodDisruptionBudget": "poddisruptionbudget-policy-v1.json",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler": (
        "horizontalpodautoscaler-autoscaling-v2.json"
    ),
}
CRDS = {
    "monitoring.coreos.com_servicemonitors.yaml": "servicemonitor-monitoring-v1.json",
    "monitoring.coreos.com_podmonitors.yaml": "podmonitor-monitoring-v1.json",
    "monitoring.coreos.com_prometheusrules.yaml": "prometheusrule-monitoring-v1.json",
}


def _strict(node: Any) -> Any:
    """additionalProperties: false on every object that lists its properties (as kubectl)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/definitions/")
        if name in seen:  # recursive types (JSONSchemaProps) are not used by the chart
            return {}
        target = _inline(copy.deepcopy(defs[name]), defs, (*seen, name))
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **extra}
    return {k: _inline(v, defs, seen) for k, v in node.items()}


def _nullable(data: Any, parent: Any = None, grand_parent: Any = None) -> Any:
    """kubeconform's allow_null_optional_fields: a type not under a `required` list may be null."""
    if isinstance(data, list):
        return [_nullable(v, data, parent) for v in data]
    if not isinstance(data, dict):
        return data
    new: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict | list):
            new[key] = _nullable(value, data, parent)
        elif key == "type" and isinstance(value, str) and value != "null":
            required = isinstance(grand_parent, dict) and "required" in grand_parent
            new[key] = value if required else [value, "null"]
        else:
            new[key] = value
    return new


def kubernetes_schema(defs: dict[str, Any], name: str) -> dict[str, Any]:
    defs = copy.deepcopy(defs)
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    }
    # Not valid for the API, but every tool accepts a number (cpu: 1).
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    }
    spec = defs[name]
    spec.setdefault("type", "object")
    for gvk in spec.get("x-kubernetes-group-version-kind", []):
        api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
        spec["properties"]["apiVersion"].setdefault("enum", []).append(api_version)
        spec["properties"]["kind"].setdefault("enum", []).append(gvk["kind"])
    _strict(defs)
    schema = _nullable(_inline(spec, defs))
    schema["$schema"] = "http://json-schema.org/schema#"
    return schema


def crd_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    for value in schema.get("properties", {}).values():  # the root stays open, as upstream
        _strict(value)
    return schema


def main(k8s_dir: str, operator_dir: str) -> None:
    swagger = json.loads((Path(k8s_dir) / "api/openapi-spec/swagger.json").read_text())
    k8s_out = OUT / f"v{KUBERNETES}-standalone-strict"
    crd_out = OUT / f"prometheus-operator-{OPERATOR}"
    k8s_out.mkdir(parents=True, exist_ok=True)
    crd_out.mkdir(parents=True, exist_ok=True)
    for name, filename in KINDS.items():
        schema = kubernetes_schema(swagger["definitions"], name)
        (k8s_out / filename).write_text(json.dumps(schema, sort_keys=True, indent=1) + "\n")
    crd_dir = Path(operator_dir) / "example" / "prometheus-operator-crd"
    for source, filename in CRDS.items():
        schema = crd_schema(crd_dir / source)
        (crd_out / filename).write_text(json.dumps(schema, sort_keys=True, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
