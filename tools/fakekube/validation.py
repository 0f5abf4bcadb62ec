"""The API server's semantic validation that a listener can realistically trip over (422 Invalid).

Schema validation is out of scope here; these are the checks a schema cannot express: object names,
label syntax, and a workload selector that must select its own pod template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tools.fakekube.kinds import Kind
from tools.fakekube.selectors import Requirement, labels_match

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names end up in DNS (Service) or in pod hostnames (StatefulSet) must be DNS-1123 labels.
_LABEL_NAMED = ("Service", "Namespace", "StatefulSet")


def validate(kind: Kind, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if kind.kind in _LABEL_NAMED:
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            problems.append(
                ("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 label must be valid")
            )
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        problems.append(
            ("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must be valid")
        )
    problems += _labels("metadata.labels", meta.get("labels"))
    if kind.kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        problems += _workload(obj.get("spec") or {})
    if kind.kind == "Lease":
        problems += _lease(obj.get("spec") or {})
    return problems


# apimachinery pkg/apis/meta/v1/micro_time.go: MicroTime is parsed with time.Parse(RFC3339Micro), layout
# "2006-01-02T15:04:05.000000Z07:00", which demands exactly six fractional digits ("...:40Z" fails).
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


def _lease(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """kubernetes pkg/apis/coordination/validation ValidateLeaseSpec, plus the MicroTime format (the
    real server rejects a malformed MicroTime while decoding, with 400; here it is a 422)."""
    problems = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        problems.append(("spec.leaseDurationSeconds", f"Invalid value: {duration!r}: must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        problems.append(
            ("spec.leaseTransitions", f"Invalid value: {transitions!r}: must be greater than or equal to 0")
        )
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is not None and not (isinstance(value, str) and _MICRO_TIME.match(value)):
            problems.append((f"spec.{field}", f"Invalid value: {value!r}: cannot parse as RFC3339Micro"))
    return problems


def _labels(where: str, labels: Any) -> list[tuple[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [(where, "Invalid value: must be a map of strings")]
    out = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            len(name) > 63
            or not _LABEL_NAME.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
        ):
            out.append((where, f"Invalid value: {key!r}: name part must consist of alphanumeric characters"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            out.append(
                (f"{where}.{key}", f"Invalid value: {value!r}: a valid label must be 63 characters or less")
            )
    return out


def _workload(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        return [("spec.selector", "Required value")]
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    problems = _labels("spec.template.metadata.labels", template_labels)
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(
            expr.get("operator")
        )
        if op is None:
            problems.append(
                ("spec.selector.matchExpressions", f"Unsupported value: {expr.get('operator')!r}")
            )
            continue
        reqs.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))  # type: ignore[arg-type]
    if not labels_match(reqs, template_labels):
        problems.append(
            ("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        problems.append(("spec.template.spec.containers", "Required value"))
    return problems
