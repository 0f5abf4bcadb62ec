"""Strict Kubernetes schema validation of the objects the program declares, for a given cluster version.

Built-in kinds use kubernetes-validate's bundled `v<version>-local-strict` schemas (unknown fields are
errors, as `kubectl apply --validate=strict` would report them). Custom resources the program declares
get hand-written strict schemas of the fields it uses, from the projects' published CRDs:
Gateway API v1.4 (`gateway.networking.k8s.io_gateways.yaml`, `..._gatewayclasses.yaml`) and
Envoy Gateway v1.7 (`gateway.envoyproxy.io_envoyproxies.yaml`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import kubernetes_validate.utils as kvu
from referencing import Registry, Resource

from tools.harness import PlanResult, sanitize

NOT_OBJECTS = frozenset({"kubernetes:helm.sh/v3:Release"})
"""Registrations that are not one Kubernetes object (a Helm release is rendered by Helm, not here)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN.pattern}
_HOSTNAME = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _metadata(namespaced: bool) -> dict[str, Any]:
    props = {"name": _NAME, "labels": _STR_MAP, "annotations": _STR_MAP}
    if namespaced:
        props["namespace"] = {"type": "string", "pattern": _DNS_LABEL.pattern, "maxLength": 63}
    return _strict(props, ("name", "namespace") if namespaced else ("name",))


_LABEL_SELECTOR = _strict(
    {
        "matchLabels": _STR_MAP,
        "matchExpressions": {
            "type": "array",
            "items": _strict(
                {
                    "key": _STR,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array"},
                },
                ("key", "operator"),
            ),
        },
    }
)

GATEWAY_CLASS = _strict(
    {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "GatewayClass"},
        "metadata": _metadata(namespaced=False),
        "spec": _strict(
            {
                # `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]...)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$`
                "controllerName": {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": r"^[a-z0-9.-]+/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$",
                },
                "description": {"type": "string", "maxLength": 64},
                "parametersRef": _strict(
                    {"group": _STR, "kind": _STR, "name": _NAME, "namespace": _STR}, ("group", "kind", "name")
                ),
            },
            ("controllerName",),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

_GATEWAY_LISTENER = _strict(
    {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN.pattern},
        "hostname": _HOSTNAME,
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "protocol": {
            "type": "string",
            "pattern": r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$",
        },
        "tls": _strict(
            {
                "mode": {"enum": ["Terminate", "Passthrough"]},
                "certificateRefs": {
                    "type": "array",
                    "maxItems": 64,
                    "items": _strict(
                        {"group": _STR, "kind": _STR, "name": _NAME, "namespace": _STR}, ("name",)
                    ),
                },
            }
        ),
        "allowedRoutes": _strict(
            {
                "namespaces": _strict(
                    {"from": {"enum": ["All", "Same", "Selector", "None"]}, "selector": _LABEL_SELECTOR}
                ),
                "kinds": {
                    "type": "array",
                    "maxItems": 8,
                    "items": _strict({"group": _STR, "kind": _STR}, ("kind",)),
                },
            }
        ),
    },
    ("name", "port", "protocol"),
)

GATEWAY = _strict(
    {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "Gateway"},
        "metadata": _metadata(namespaced=True),
        "spec": _strict(
            {
                "gatewayClassName": _NAME,
                "listeners": {"type": "array", "minItems": 1, "maxItems": 64, "items": _GATEWAY_LISTENER},
            },
            ("gatewayClassName", "listeners"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

ENVOY_PROXY = _strict(
    {
        "apiVersion": {"const": "gateway.envoyproxy.io/v1alpha1"},
        "kind": {"const": "EnvoyProxy"},
        "metadata": _metadata(namespaced=True),
        "spec": _strict(
            {
                "provider": _strict(
                    {
                        "type": {"enum": ["Kubernetes", "Custom"]},
                        "kubernetes": _strict(
                            {
                                "envoyDeployment": _strict({"replicas": {"type": "integer", "minimum": 0}}),
                                "envoyService": _strict(
                                    {
                                        "type": {"enum": ["ClusterIP", "LoadBalancer", "NodePort"]},
                                        "annotations": _STR_MAP,
                                    }
                                ),
                            }
                        ),
                    },
                    ("type",),
                )
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

CUSTOM_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "GatewayClass"): GATEWAY_CLASS,
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): ENVOY_PROXY,
}


@functools.cache
def _validator(kind: str, api_version: str, kubernetes_version: str) -> jsonschema.protocols.Validator:
    if (api_version, kind) in CUSTOM_SCHEMAS:
        return jsonschema.validators.Draft202012Validator(CUSTOM_SCHEMAS[(api_version, kind)])
    # kubernetes-validate's bundled layout (listener-engineering.md Appendix B), hence its exact pin.
    version = f"{kubernetes_version}.0"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kvu.schema_contents(f"{folder}/{kind.lower()}-{api}.json", version)
    definitions = kvu.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _keys_and_values(where: str, mapping: Mapping[str, str], *, values: bool) -> Iterator[str]:
    # apimachinery's IsQualifiedName for keys (optional DNS-subdomain prefix), IsValidLabelValue for values.
    for key, value in mapping.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            yield f"{where}: bad key prefix {key!r}"
        if len(name) > 63 or not _QUALIFIED_NAME.match(name):
            yield f"{where}: bad key {key!r}"
        if values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            yield f"{where}: bad label value {key}={value!r}"


def semantic_errors(obj: Mapping[str, Any]) -> list[str]:
    """What the API server refuses but the schemas accept (names, label and annotation syntax)."""
    meta = obj["metadata"]
    where = f"{obj['kind']}/{meta.get('name')}"
    errors = list(_keys_and_values(f"{where} labels", meta.get("labels") or {}, values=True))
    errors += _keys_and_values(f"{where} annotations", meta.get("annotations") or {}, values=False)
    name = meta.get("name", "")
    if obj["kind"] == "Namespace" and not (len(name) <= 63 and _DNS_LABEL.match(name)):
        errors.append(f"{where}: a namespace name is a DNS-1123 label")
    template = (obj.get("spec") or {}).get("template")
    if template:
        labels = (template.get("metadata") or {}).get("labels") or {}
        errors += _keys_and_values(f"{where} template labels", labels, values=True)
        selector = obj["spec"]["selector"]["matchLabels"]
        errors += [
            f"{where}: selector {k}={v} not in the template's labels"
            for k, v in selector.items()
            if labels.get(k) != v
        ]
    return errors


def validation_errors(obj: Mapping[str, Any], kubernetes_version: str) -> list[str]:
    validator = _validator(obj["kind"], obj["apiVersion"], kubernetes_version)
    schema = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return schema + semantic_errors(obj)


_SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _revealed(value: Any) -> Any:
    """The object's shape as the provider sends it: a secret's envelope replaced by what it wraps (a
    map of Secret data is one secret as a whole), leaf secret values masked."""
    if isinstance(value, Mapping):
        if _SECRET_SIG in value:
            inner = value.get("value")
            return _revealed(inner) if isinstance(inner, Mapping | list) else "<masked>"
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revealed(v) for v in value]
    return value


def declared_objects(result: PlanResult) -> list[dict[str, Any]]:
    """Every Kubernetes object the program declares, as the manifest the provider would send."""
    return [
        sanitize(_revealed(dict(r.inputs)))
        for r in result.resources
        if r.custom and r.type.startswith("kubernetes:") and r.type not in NOT_OBJECTS
    ]
