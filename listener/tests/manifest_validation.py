"""Strict Kubernetes schema validation for rendered objects, plus the semantic checks schemas miss.

Built-in kinds are checked against kubernetes-validate's bundled 1.37 *strict* schemas (unknown
fields are errors) through a cached validator (listener-engineering.md Appendix B). It knows no CRDs,
so KEDA ScaledObject and Gateway API HTTPRoute get hand-written strict schemas for the fields we emit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate.utils as kvu
from referencing import Registry, Resource

K8S_VERSION = "1.37.0"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti)?$")

_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_METADATA = _strict(
    {"name": _STR, "namespace": _STR, "labels": _STR_MAP, "annotations": _STR_MAP}, ("name", "namespace")
)

# Gateway API v1 HTTPRoute (standard channel), only the fields the renderer uses.
HTTPROUTE_SCHEMA = _strict(
    {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": _METADATA,
        "spec": _strict(
            {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": _strict(
                        {
                            "group": {"const": "gateway.networking.k8s.io"},
                            "kind": {"const": "Gateway"},
                            "name": {"type": "string", "minLength": 1, "maxLength": 253},
                            "namespace": {"type": "string", "maxLength": 63},
                        },
                        ("name",),
                    ),
                },
                "hostnames": {"type": "array", "items": {"type": "string", "maxLength": 253}},
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": _strict(
                        {
                            "matches": {
                                "type": "array",
                                "items": _strict(
                                    {
                                        "path": _strict(
                                            {
                                                "type": {
                                                    "enum": ["Exact", "PathPrefix", "RegularExpression"]
                                                },
                                                "value": {
                                                    "type": "string",
                                                    "pattern": "^/",
                                                    "maxLength": 1024,
                                                },
                                            },
                                            ("type", "value"),
                                        )
                                    }
                                ),
                            },
                            "filters": {
                                "type": "array",
                                "items": _strict(
                                    {
                                        "type": {"const": "URLRewrite"},
                                        "urlRewrite": _strict(
                                            {
                                                "path": _strict(
                                                    {
                                                        "type": {"const": "ReplacePrefixMatch"},
                                                        "replacePrefixMatch": {
                                                            "type": "string",
                                                            "pattern": "^/",
                                                        },
                                                    },
                                                    ("type", "replacePrefixMatch"),
                                                )
                                            }
                                        ),
                                    },
                                    ("type", "urlRewrite"),
                                ),
                            },
                            "backendRefs": {
                                "type": "array",
                                "items": _strict(
                                    {
                                        "name": _STR,
                                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                    },
                                    ("name", "port"),
                                ),
                            },
                        }
                    ),
                },
            },
            ("parentRefs", "rules"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

# KEDA 2.x ScaledObject, only the fields the renderer uses; trigger metadata values are strings.
SCALEDOBJECT_SCHEMA = _strict(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": _strict(
            {
                "scaleTargetRef": _strict({"name": _STR, "kind": _STR, "apiVersion": _STR}, ("name",)),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": _strict(
                    {"horizontalPodAutoscalerConfig": _strict({"behavior": {"type": "object"}, "name": _STR})}
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _strict(
                        {
                            "type": {"const": "postgresql"},
                            "metadata": _strict(
                                {"connectionFromEnv": _STR, "query": _STR, "targetQueryValue": _STR},
                                ("query", "targetQueryValue"),
                            ),
                        },
                        ("type", "metadata"),
                    ),
                },
            },
            ("scaleTargetRef", "triggers"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

_CRD_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTPROUTE_SCHEMA,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALEDOBJECT_SCHEMA,
}


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    if (api_version, kind) in _CRD_SCHEMAS:
        return jsonschema.validators.Draft202012Validator(_CRD_SCHEMAS[(api_version, kind)])
    # Appendix B: relies on kubernetes-validate's bundled layout, hence the exact pin.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = kvu.schema_contents(f"{folder}/{kind.lower()}-{api}.json", K8S_VERSION)
    defs = kvu.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    v = _validator(obj["kind"], obj["apiVersion"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def _labels_ok(where: str, labels: dict[str, str]) -> Iterator[str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            yield f"{where}: bad label prefix {key!r}"
        if len(name) > 63 or not _LABEL_NAME.match(name):
            yield f"{where}: bad label name {key!r}"
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            yield f"{where}: bad label value {key}={value!r}"


def _pod_spec_errors(
    where: str, pod: dict[str, Any], selector: dict[str, str], claims: set[str]
) -> Iterator[str]:
    labels = pod["metadata"]["labels"]
    yield from _labels_ok(f"{where}.template", labels)
    for k, v in selector.items():
        if labels.get(k) != v:
            yield f"{where}: selector {k}={v} not in template labels"
    containers = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
    names = [c["name"] for c in containers]
    if len(names) != len(set(names)):
        yield f"{where}: duplicate container names {names}"
    volumes = {v["name"] for v in pod["spec"].get("volumes", [])} | claims
    for c in containers:
        env = [e["name"] for e in c.get("env", [])]
        if len(env) != len(set(env)):
            yield f"{where}: container {c['name']} has duplicate env names"
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                yield f"{where}: mount of unknown volume {m['name']}"
        for kind, req in (c.get("resources") or {}).items():
            if "cpu" in req and not _CPU.match(req["cpu"]):
                yield f"{where}: bad cpu {kind} {req['cpu']!r}"
            if "memory" in req and not _MEMORY.match(req["memory"]):
                yield f"{where}: bad memory {kind} {req['memory']!r}"


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """What a real apiserver would reject but the schemas accept."""
    meta = obj["metadata"]
    where = f"{obj['kind']}/{meta.get('name')}"
    errors: list[str] = []
    name = meta.get("name", "")
    limit = 63 if obj["kind"] == "Service" else 253
    if not (len(name) <= limit and _DNS_LABEL.match(name)):
        errors.append(f"{where}: name is not a DNS label")
    if not meta.get("namespace"):
        errors.append(f"{where}: no namespace")
    errors += _labels_ok(where, meta.get("labels", {}))
    spec = obj.get("spec") or {}
    if "template" in spec:
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        errors += _pod_spec_errors(where, spec["template"], spec["selector"]["matchLabels"], claims)
    return errors


def validate_object(obj: dict[str, Any]) -> list[str]:
    return schema_errors(obj) + semantic_errors(obj)
