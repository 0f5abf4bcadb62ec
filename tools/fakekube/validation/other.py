"""StorageClasses (pkg/apis/storage/validation) and CustomResourceDefinitions
(apiextensions-apiserver/pkg/apis/apiextensions/validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube.errors import (
    FieldError,
    field_forbidden,
    field_immutable,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
)
from tools.fakekube.validation.meta import index

_MAX_PARAMETERS = 512
_MAX_PARAMETERS_SIZE = 256 * 1024


def storage_class(obj: Mapping[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    provisioner = obj.get("provisioner") or ""
    if not provisioner:
        out.append(field_required("provisioner"))
    else:
        if len(provisioner) > 63:
            out.append(field_too_long("provisioner", 63))
        out += [
            field_invalid("provisioner", provisioner, m) for m in fmt.is_qualified_name(provisioner.lower())
        ]
    params = obj.get("parameters") or {}
    if len(params) > _MAX_PARAMETERS:
        out.append(field_invalid("parameters", len(params), "must have at most 512 parameters"))
    if sum(len(k) + len(v) for k, v in params.items()) > _MAX_PARAMETERS_SIZE:
        out.append(field_too_long("parameters", _MAX_PARAMETERS_SIZE))
    for k in params:
        if not k:
            out.append(field_invalid("parameters", k, "key must be non-empty"))
    reclaim = obj.get("reclaimPolicy")
    if reclaim not in ("Delete", "Retain"):
        out.append(field_not_supported("reclaimPolicy", reclaim, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode not in ("Immediate", "WaitForFirstConsumer"):
        out.append(field_not_supported("volumeBindingMode", mode, ["Immediate", "WaitForFirstConsumer"]))
    return out


def storage_class_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    out = []
    if (new.get("parameters") or {}) != (old.get("parameters") or {}):
        out.append(field_forbidden("parameters", "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        out.append(field_forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        out.append(field_forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        out.append(field_immutable("volumeBindingMode", new.get("volumeBindingMode")))
    return out


def crd(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    out: list[FieldError] = []
    name = (obj.get("metadata") or {}).get("name") or ""
    plural = names.get("plural") or ""
    if name != f"{plural}.{group}":
        out.append(field_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        out.append(field_required("spec.group"))
    else:
        out += [field_invalid("spec.group", group, m) for m in fmt.is_dns1123_subdomain(group)]
        if "." not in group:
            out.append(field_invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        out.append(field_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    for f in ("plural", "singular", "listKind"):
        value = names.get(f) or ""
        if f == "plural" and not value:
            out.append(field_required("spec.names.plural"))
        elif value:
            out += (
                [field_invalid(f"spec.names.{f}", value, m) for m in fmt.is_dns1035_label(value.lower())]
                if f != "listKind"
                else []
            )
    if not names.get("kind"):
        out.append(field_required("spec.names.kind"))
    versions = spec.get("versions") or []
    if not versions:
        out.append(
            field_invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        out.append(
            field_invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    seen: set[str] = set()
    for i, v in enumerate(versions):
        vname = v.get("name") or ""
        p = index("spec.versions", i)
        if vname in seen:
            out.append(field_invalid(f"{p}.name", vname, "must be unique"))
        seen.add(vname)
        out += [field_invalid(f"{p}.name", vname, m) for m in fmt.is_dns1035_label(vname)]
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            out.append(field_required(f"{p}.schema.openAPIV3Schema", "schemas are required"))
        elif schema.get("type") != "object":
            out.append(
                field_invalid(
                    f"{p}.schema.openAPIV3Schema.type", schema.get("type"), "must be object at the root"
                )
            )
    return out


def crd_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    out = []
    for f in ("group", "scope"):
        if (new.get("spec") or {}).get(f) != (old.get("spec") or {}).get(f):
            out.append(field_immutable(f"spec.{f}", (new.get("spec") or {}).get(f)))
    return out
