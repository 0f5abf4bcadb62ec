"""Roles, ClusterRoles and their bindings (pkg/apis/rbac/validation/validation.go)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube.errors import FieldError, field_invalid, field_not_supported, field_required
from tools.fakekube.validation.meta import child, index

RBAC_GROUP = "rbac.authorization.k8s.io"


def _rule(rule: Mapping[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    if not rule.get("verbs"):
        out.append(field_required(child(path, "verbs"), "verbs must contain at least one value"))
    if rule.get("nonResourceURLs"):
        if namespaced:
            out.append(
                field_invalid(
                    child(path, "nonResourceURLs"),
                    rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            out.append(
                field_invalid(
                    child(path, "nonResourceURLs"),
                    rule["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return out
    if not rule.get("apiGroups"):
        out.append(
            field_required(child(path, "apiGroups"), "resource rules must supply at least one api group")
        )
    if not rule.get("resources"):
        out.append(
            field_required(child(path, "resources"), "resource rules must supply at least one resource")
        )
    return out


def role(obj: Mapping[str, Any]) -> list[FieldError]:
    out = []
    for i, rule in enumerate(obj.get("rules") or []):
        out += _rule(rule, True, index("rules", i))
    return out


def cluster_role(obj: Mapping[str, Any]) -> list[FieldError]:
    out = []
    for i, rule in enumerate(obj.get("rules") or []):
        out += _rule(rule, False, index("rules", i))
    return out


def _binding(obj: Mapping[str, Any], *, cluster: bool) -> list[FieldError]:
    out: list[FieldError] = []
    ref = obj.get("roleRef") or {}
    if ref.get("apiGroup") != RBAC_GROUP:
        out.append(field_not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [RBAC_GROUP]))
    kinds = ["ClusterRole"] if cluster else ["ClusterRole", "Role"]
    if ref.get("kind") not in kinds:
        out.append(field_not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    name = ref.get("name") or ""
    if not name:
        out.append(field_required("roleRef.name"))
    else:
        out += [field_invalid("roleRef.name", name, m) for m in fmt.is_path_segment_name(name)]
    for i, subject in enumerate(obj.get("subjects") or []):
        out += _subject(subject, cluster, index("subjects", i))
    return out


def _subject(subject: Mapping[str, Any], cluster: bool, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    name = subject.get("name") or ""
    if not name:
        out.append(field_required(child(path, "name")))
    kind = subject.get("kind")
    group = subject.get("apiGroup") or ""
    if kind == "ServiceAccount":
        if name:
            out += [field_invalid(child(path, "name"), name, m) for m in fmt.name_is_dns_subdomain(name)]
        if group:
            out.append(field_not_supported(child(path, "apiGroup"), group, [""]))
        if cluster and not subject.get("namespace"):
            out.append(field_required(child(path, "namespace")))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            out.append(field_not_supported(child(path, "apiGroup"), group, [RBAC_GROUP]))
    else:
        out.append(field_not_supported(child(path, "kind"), kind or "", ["Group", "ServiceAccount", "User"]))
    return out


def role_binding(obj: Mapping[str, Any]) -> list[FieldError]:
    return _binding(obj, cluster=False)


def cluster_role_binding(obj: Mapping[str, Any]) -> list[FieldError]:
    return _binding(obj, cluster=True)


def binding_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    if new.get("roleRef") != old.get("roleRef"):
        return [field_invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []
