"""Declare a plain Kubernetes manifest (a dict, as `kubectl apply` would read it) as a Pulumi resource.

The in-cluster components render their objects as plain manifests with pure functions, so tests and
the schema validation see exactly what the API server will; this module is the one place that turns
a manifest into the typed `pulumi_kubernetes` resource of its kind (custom resources become
`apiextensions.CustomResource`). Values inside a manifest may be Pulumi Inputs (a secret, the
registered listener id): they are passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_KINDS: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}
"""Built-in kinds the program declares. Anything else must be a custom resource (its CRD installed
by an add-on), so a typo in a built-in kind fails here instead of becoming a bogus custom resource."""

_BUILTIN_GROUPS = frozenset(
    {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
)


def resource_name(manifest: Mapping[str, Any]) -> str:
    """`<kind>/<namespace>/<name>`: how a manifest is named in errors and tests."""
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest['kind']}/{where}{meta['name']}"


def declare(name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Register `manifest` as the Pulumi resource `name` (the object's own name is `metadata.name`)."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    fields = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    cls = _KINDS.get((api_version, kind))
    if cls is not None:
        return cls(name, **_snake(fields), opts=opts)
    if api_version in _BUILTIN_GROUPS:
        raise ValueError(f"{resource_name(manifest)}: {api_version} {kind} is not in components.kubeobjects")
    return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, **fields, opts=opts)


def _snake(fields: Mapping[str, Any]) -> dict[str, Any]:
    # Top-level keyword arguments are snake_case (`roleRef` -> `role_ref`); nested dicts keep the
    # manifest's camelCase, which the SDK passes to the provider as is.
    return {
        "".join("_" + c.lower() if c.isupper() else c for c in key): value for key, value in fields.items()
    }
