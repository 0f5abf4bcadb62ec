"""CustomResourceDefinitions fakekube can install: Gateway API HTTPRoute and KEDA ScaledObject.

These are fakekube's own structural schemas of the documented fields of each API (Gateway API v1
standard channel, KEDA 2.x), written for this project, not the upstream manifests: they type-check
and prune like the real CRDs but do not carry the upstream CEL rules (``x-kubernetes-validations``),
which fakekube does not evaluate anyway. For full fidelity install the real CRD manifest with
``FakeKube.install_crd`` (or create it through the API), as a cluster operator would.
"""

from __future__ import annotations

from typing import Any

from tools.fakekube.jsonutil import clone

S: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer", "format": "int32"}
B: dict[str, Any] = {"type": "boolean"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def arr(items: dict[str, Any], max_items: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


_CONDITION = obj(
    {
        "type": {"type": "string", "maxLength": 316},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "reason": {"type": "string", "maxLength": 1024, "minLength": 1},
        "message": {"type": "string", "maxLength": 32768},
    },
    ("type", "status", "lastTransitionTime", "reason", "message"),
)

_GROUP = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_KIND = {
    "type": "string",
    "maxLength": 63,
    "minLength": 1,
    "pattern": "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
}
_OBJECT_NAME = {"type": "string", "maxLength": 253, "minLength": 1}
_NAMESPACE = {"type": "string", "maxLength": 63, "minLength": 1, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_SECTION = {
    "type": "string",
    "maxLength": 253,
    "minLength": 1,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_PORT = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535}
_HOSTNAME = {
    "type": "string",
    "maxLength": 253,
    "minLength": 1,
    "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_HEADER_NAME = {
    "type": "string",
    "maxLength": 256,
    "minLength": 1,
    "pattern": "^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$",
}

_PARENT_REF = obj(
    {
        "group": {**_GROUP, "default": "gateway.networking.k8s.io"},
        "kind": {**_KIND, "default": "Gateway"},
        "namespace": _NAMESPACE,
        "name": _OBJECT_NAME,
        "sectionName": _SECTION,
        "port": _PORT,
    },
    ("name",),
)
_HEADER_MODIFIER = obj(
    {
        "set": arr(
            obj(
                {"name": _HEADER_NAME, "value": {"type": "string", "maxLength": 4096, "minLength": 1}},
                ("name", "value"),
            ),
            16,
        ),
        "add": arr(
            obj(
                {"name": _HEADER_NAME, "value": {"type": "string", "maxLength": 4096, "minLength": 1}},
                ("name", "value"),
            ),
            16,
        ),
        "remove": arr({"type": "string"}, 16),
    }
)
_BACKEND_OBJECT_REF = obj(
    {
        "group": {**_GROUP, "default": ""},
        "kind": {**_KIND, "default": "Service"},
        "name": _OBJECT_NAME,
        "namespace": _NAMESPACE,
        "port": _PORT,
    },
    ("name",),
)
_PATH_MODIFIER = obj(
    {
        "type": {"type": "string", "enum": ["ReplaceFullPath", "ReplacePrefixMatch"]},
        "replaceFullPath": {"type": "string", "maxLength": 1024},
        "replacePrefixMatch": {"type": "string", "maxLength": 1024},
    },
    ("type",),
)
_FILTER = obj(
    {
        "type": {
            "type": "string",
            "enum": [
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestMirror",
                "RequestRedirect",
                "URLRewrite",
                "ExtensionRef",
            ],
        },
        "requestHeaderModifier": _HEADER_MODIFIER,
        "responseHeaderModifier": _HEADER_MODIFIER,
        "requestMirror": obj(
            {
                "backendRef": _BACKEND_OBJECT_REF,
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "fraction": obj(
                    {
                        "numerator": {"type": "integer", "minimum": 0},
                        "denominator": {"type": "integer", "minimum": 1, "default": 100},
                    },
                    ("numerator",),
                ),
            },
            ("backendRef",),
        ),
        "requestRedirect": obj(
            {
                "scheme": {"type": "string", "enum": ["http", "https"]},
                "hostname": _HOSTNAME,
                "path": _PATH_MODIFIER,
                "port": _PORT,
                "statusCode": {"type": "integer", "enum": [301, 302], "default": 302},
            }
        ),
        "urlRewrite": obj({"hostname": _HOSTNAME, "path": _PATH_MODIFIER}),
        "extensionRef": obj(
            {"group": _GROUP, "kind": _KIND, "name": _OBJECT_NAME}, ("group", "kind", "name")
        ),
    },
    ("type",),
)
_MATCH = obj(
    {
        "path": {
            **obj(
                {
                    "type": {
                        "type": "string",
                        "enum": ["Exact", "PathPrefix", "RegularExpression"],
                        "default": "PathPrefix",
                    },
                    "value": {"type": "string", "maxLength": 1024, "default": "/"},
                }
            ),
            "default": {"type": "PathPrefix", "value": "/"},
        },
        "headers": arr(
            obj(
                {
                    "type": {"type": "string", "enum": ["Exact", "RegularExpression"], "default": "Exact"},
                    "name": _HEADER_NAME,
                    "value": {"type": "string", "maxLength": 4096, "minLength": 1},
                },
                ("name", "value"),
            ),
            16,
        ),
        "queryParams": arr(
            obj(
                {
                    "type": {"type": "string", "enum": ["Exact", "RegularExpression"], "default": "Exact"},
                    "name": {"type": "string", "maxLength": 256, "minLength": 1},
                    "value": {"type": "string", "maxLength": 1024, "minLength": 1},
                },
                ("name", "value"),
            ),
            16,
        ),
        "method": {
            "type": "string",
            "enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"],
        },
    }
)
_BACKEND_REF = obj(
    {
        "group": {**_GROUP, "default": ""},
        "kind": {**_KIND, "default": "Service"},
        "name": _OBJECT_NAME,
        "namespace": _NAMESPACE,
        "port": _PORT,
        "weight": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 1000000, "default": 1},
        "filters": arr(_FILTER, 16),
    },
    ("name",),
)
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_RULE = obj(
    {
        "name": _SECTION,
        "matches": {**arr(_MATCH, 64), "default": [{"path": {"type": "PathPrefix", "value": "/"}}]},
        "filters": arr(_FILTER, 16),
        "backendRefs": arr(_BACKEND_REF, 16),
        "timeouts": obj({"request": _DURATION, "backendRequest": _DURATION}),
    }
)

HTTPROUTE_SCHEMA: dict[str, Any] = obj(
    {
        "apiVersion": S,
        "kind": S,
        "metadata": {"type": "object"},
        "spec": obj(
            {
                "parentRefs": arr(_PARENT_REF, 32),
                "hostnames": arr(_HOSTNAME, 16),
                "rules": {
                    **arr(_RULE, 16),
                    "default": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
                },
            }
        ),
        "status": obj(
            {
                "parents": arr(
                    obj(
                        {
                            "parentRef": _PARENT_REF,
                            "controllerName": {"type": "string", "maxLength": 253, "minLength": 1},
                            "conditions": arr(_CONDITION, 8),
                        },
                        ("parentRef", "controllerName"),
                    ),
                    32,
                )
            },
            ("parents",),
        ),
    },
    ("spec",),
)

_HPA_POLICY = obj({"type": S, "value": INT, "periodSeconds": INT}, ("type", "value", "periodSeconds"))
_HPA_RULES = obj(
    {
        "stabilizationWindowSeconds": INT,
        "selectPolicy": S,
        "policies": arr(_HPA_POLICY),
        "tolerance": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
    }
)

SCALEDOBJECT_SCHEMA: dict[str, Any] = obj(
    {
        "apiVersion": S,
        "kind": S,
        "metadata": {"type": "object"},
        "spec": obj(
            {
                "scaleTargetRef": obj(
                    {"apiVersion": S, "kind": S, "name": S, "envSourceContainerName": S}, ("name",)
                ),
                "pollingInterval": INT,
                "cooldownPeriod": INT,
                "initialCooldownPeriod": INT,
                "idleReplicaCount": INT,
                "minReplicaCount": INT,
                "maxReplicaCount": INT,
                "fallback": obj(
                    {
                        "failureThreshold": INT,
                        "replicas": INT,
                        "behavior": {
                            "type": "string",
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                            ],
                            "default": "static",
                        },
                    },
                    ("failureThreshold", "replicas"),
                ),
                "advanced": obj(
                    {
                        "restoreToOriginalReplicaCount": B,
                        "horizontalPodAutoscalerConfig": obj(
                            {"name": S, "behavior": obj({"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES})}
                        ),
                        "scalingModifiers": obj(
                            {"formula": S, "target": S, "activationTarget": S, "metricType": S}
                        ),
                    }
                ),
                "triggers": arr(
                    obj(
                        {
                            "type": S,
                            "name": S,
                            "useCachedMetrics": B,
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": obj({"name": S, "kind": S}, ("name",)),
                            "metricType": S,
                        },
                        ("type", "metadata"),
                    )
                ),
            },
            ("scaleTargetRef", "triggers"),
        ),
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
)


def _crd(
    group: str,
    kind: str,
    plural: str,
    short: list[str],
    versions: list[tuple[str, dict[str, Any], bool]],
    scale: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/managed-by": "fakekube"}},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": name,
                    "served": True,
                    "storage": storage,
                    "schema": {"openAPIV3Schema": clone(schema)},
                    "subresources": {
                        "status": {},
                        **(
                            {
                                "scale": {
                                    "specReplicasPath": ".spec.replicas",
                                    "statusReplicasPath": ".status.replicas",
                                }
                            }
                            if scale
                            else {}
                        ),
                    },
                }
                for name, schema, storage in versions
            ],
        },
    }


BUNDLED: dict[str, list[dict[str, Any]]] = {
    "gateway-api": [
        _crd(
            "gateway.networking.k8s.io",
            "HTTPRoute",
            "httproutes",
            [],
            [("v1", HTTPROUTE_SCHEMA, True), ("v1beta1", HTTPROUTE_SCHEMA, False)],
        ),
    ],
    "keda": [
        _crd("keda.sh", "ScaledObject", "scaledobjects", ["so"], [("v1alpha1", SCALEDOBJECT_SCHEMA, True)])
    ],
}


def bundled(name: str) -> list[dict[str, Any]]:
    if name not in BUNDLED:
        raise KeyError(f"no bundled CRDs named {name!r}; available: {', '.join(sorted(BUNDLED))}")
    return clone(BUNDLED[name])
