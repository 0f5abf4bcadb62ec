"""ObjectMeta, labels, annotations and label selectors.

Ports of k8s.io/apimachinery/pkg/api/validation/objectmeta.go, pkg/apis/meta/v1/validation and the
finalizer checks of pkg/apis/core/validation/validation.go.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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

NameFn = Callable[[str, bool], list[str]]
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def labels(values: Any, path: str) -> list[FieldError]:
    """ValidateLabels: both problems are reported on the map's path itself."""
    if not isinstance(values, Mapping):
        return []
    out = []
    for k, v in values.items():
        out += label_name(k, path)
        for msg in fmt.is_valid_label_value(v if isinstance(v, str) else str(v)):
            out.append(field_invalid(path, v, msg))
    return out


def label_name(name: str, path: str) -> list[FieldError]:
    return [field_invalid(path, name, msg) for msg in fmt.is_qualified_name(name)]


def annotations(values: Any, path: str) -> list[FieldError]:
    if not isinstance(values, Mapping):
        return []
    out = []
    for k in values:
        # "The rule is QualifiedName except that case doesn't matter."
        out += [field_invalid(path, k, msg) for msg in fmt.is_qualified_name(k.lower())]
    size = sum(len(k) + len(v if isinstance(v, str) else "") for k, v in values.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        out.append(field_too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return out


def finalizers(values: Any, path: str, *, kube_names: bool = True) -> list[FieldError]:
    if not isinstance(values, list):
        return []
    out = []
    for i, f in enumerate(values):
        out += [field_invalid(path, f, msg) for msg in fmt.is_qualified_name(f)]
        if kube_names and "/" not in f and f not in STANDARD_FINALIZERS:
            out.append(
                field_invalid(
                    index(path, i), f, "name is neither a standard finalizer name nor is it fully qualified"
                )
            )
    if "orphan" in values and "foregroundDeletion" in values:
        out.append(field_invalid(path, values, "finalizer orphan and foregroundDeletion cannot be both set"))
    return out


def owner_references(refs: Any, path: str) -> list[FieldError]:
    if not isinstance(refs, list):
        return []
    out = []
    controller = ""
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        api_version = ref.get("apiVersion") or ""
        version = api_version.rpartition("/")[2]
        if not version:
            out.append(field_invalid(child(path, "apiVersion"), api_version, "version must not be empty"))
        for f in ("kind", "name", "uid"):
            if not ref.get(f):
                out.append(field_invalid(child(path, f), ref.get(f) or "", "must not be empty"))
        if ref.get("controller"):
            current = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                out.append(
                    field_invalid(
                        path,
                        refs,
                        'Only one reference can have Controller set to true. Found "true" in references for '
                        f"{controller} and {current}",
                    )
                )
            else:
                controller = current
    return out


def object_meta(
    meta: Mapping[str, Any], *, namespaced: bool, name_fn: NameFn, path: str = "metadata"
) -> list[FieldError]:
    """ValidateObjectMeta on create."""
    out = []
    generate = meta.get("generateName") or ""
    if generate:
        out += [field_invalid(child(path, "generateName"), generate, m) for m in name_fn(generate, True)]
    name = meta.get("name") or ""
    if not name:
        out.append(field_required(child(path, "name"), "name or generateName is required"))
    else:
        out += [field_invalid(child(path, "name"), name, m) for m in name_fn(name, False)]
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            out.append(field_required(child(path, "namespace")))
        else:
            out += [
                field_invalid(child(path, "namespace"), namespace, m)
                for m in fmt.name_is_dns_label(namespace)
            ]
    elif namespace:
        out.append(field_forbidden(child(path, "namespace"), "not allowed on this type"))
    out += labels(meta.get("labels"), child(path, "labels"))
    out += annotations(meta.get("annotations"), child(path, "annotations"))
    out += owner_references(meta.get("ownerReferences"), child(path, "ownerReferences"))
    out += finalizers(meta.get("finalizers"), child(path, "finalizers"))
    return out


def object_meta_update(
    new: Mapping[str, Any], old: Mapping[str, Any], path: str = "metadata"
) -> list[FieldError]:
    """ValidateObjectMetaUpdate (the immutable system fields are restored by the store beforehand)."""
    out = []
    if old.get("deletionTimestamp"):
        extra = sorted(set(new.get("finalizers") or ()) - set(old.get("finalizers") or ()))
        if extra:
            out.append(
                field_forbidden(
                    child(path, "finalizers"),
                    "no new finalizers can be added if the object is being deleted, found new finalizers "
                    "[]string{" + ", ".join(json.dumps(f) for f in extra) + "}",
                )
            )
    for f in ("name", "namespace"):
        if (new.get(f) or "") != (old.get(f) or ""):
            out.append(field_immutable(child(path, f), new.get(f) or ""))
    out += labels(new.get("labels"), child(path, "labels"))
    out += annotations(new.get("annotations"), child(path, "annotations"))
    out += owner_references(new.get("ownerReferences"), child(path, "ownerReferences"))
    out += finalizers(new.get("finalizers"), child(path, "finalizers"))
    return out


_SELECTOR_OPS = ["DoesNotExist", "Exists", "In", "NotIn"]


def label_selector(selector: Any, path: str) -> list[FieldError]:
    """metav1 ValidateLabelSelector (strict label values, as workloads use it)."""
    if not isinstance(selector, Mapping):
        return []
    out = labels(selector.get("matchLabels"), child(path, "matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        p = index(child(path, "matchExpressions"), i)
        if not isinstance(expr, Mapping):
            continue
        op = expr.get("operator")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                out.append(
                    field_required(child(p, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                out.append(
                    field_forbidden(
                        child(p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            out.append(field_not_supported(child(p, "operator"), op, _SELECTOR_OPS))
        out += label_name(expr.get("key") or "", child(p, "key"))
        for j, v in enumerate(values):
            out += [
                field_invalid(index(child(p, "values"), j), v, m) for m in fmt.is_valid_label_value(str(v))
            ]
    return out


def selector_matches(selector: Mapping[str, Any], target: Mapping[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(...).Matches(target)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if target.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = k in target
        if op == "In" and not (present and target[k] in values):
            return False
        if op == "NotIn" and present and target[k] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def selector_empty(selector: Any) -> bool:
    return not isinstance(selector, Mapping) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    )


def non_negative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [field_invalid(path, value, "must be greater than or equal to 0")]
    return []
