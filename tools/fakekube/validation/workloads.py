"""Deployments, ReplicaSets, StatefulSets (pkg/apis/apps/validation), HPAs (pkg/apis/autoscaling/
validation) and PodDisruptionBudgets (pkg/apis/policy/validation).

Note what a real server does *not* validate: a StatefulSet's pod template spec (only its labels,
annotations, restartPolicy and activeDeadlineSeconds: "TODO: Add validation for PodSpec" in
ValidatePodTemplateSpecForStatefulSet). Broken pod specs there surface when the StatefulSet
controller creates the pods, which is where fakekube's controller reports them too.
"""

from __future__ import annotations

import copy
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
)
from tools.fakekube.validation.meta import (
    annotations,
    child,
    label_selector,
    labels,
    non_negative,
    selector_empty,
    selector_matches,
)
from tools.fakekube.validation.pods import pod_template


def _selector(spec: Mapping[str, Any], what: str) -> list[FieldError]:
    selector = spec.get("selector")
    if selector is None:
        return [field_required("spec.selector")]
    out = label_selector(selector, "spec.selector")
    if selector_empty(selector):
        out.append(field_invalid("spec.selector", selector, f"empty selector is invalid for {what}"))
    return out


def _template_matches(spec: Mapping[str, Any]) -> list[FieldError]:
    selector = spec.get("selector")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if (
        isinstance(selector, Mapping)
        and not selector_empty(selector)
        and not selector_matches(selector, template_labels)
    ):
        return [
            field_invalid(
                "spec.template.metadata.labels",
                template_labels,
                "`selector` does not match template `labels`",
            )
        ]
    return []


def _template_restart(spec: Mapping[str, Any], what: str) -> list[FieldError]:
    tspec = (spec.get("template") or {}).get("spec") or {}
    out = []
    if tspec.get("restartPolicy", "Always") != "Always":
        out.append(
            field_not_supported("spec.template.spec.restartPolicy", tspec.get("restartPolicy"), ["Always"])
        )
    if tspec.get("activeDeadlineSeconds") is not None:
        out.append(
            field_forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                f"activeDeadlineSeconds in {what} is not Supported",
            )
        )
    return out


def _int_or_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return [field_invalid(path, value, m) for m in fmt.is_valid_percent(value)]
    return non_negative(value, path)


def _value(value: Any) -> int:
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return value if isinstance(value, int) else 0


def _over_100(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) > 100:
        return [field_invalid(path, value, "must not be greater than 100%")]
    return []


def replica_set_spec(spec: Mapping[str, Any]) -> list[FieldError]:
    out = non_negative(spec.get("replicas"), "spec.replicas")
    out += non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    out += _selector(spec, "deployment")
    out += _template_matches(spec)
    out += pod_template(spec.get("template"), "spec.template")
    out += _template_restart(spec, "ReplicaSet")
    return out


def deployment(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out = non_negative(spec.get("replicas"), "spec.replicas")
    out += _selector(spec, "deployment")
    out += _template_matches(spec)
    out += pod_template(spec.get("template"), "spec.template")
    out += _template_restart(spec, "ReplicaSet")
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            out.append(
                field_forbidden(
                    "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            out.append(
                field_required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")
            )
        else:
            path = "spec.strategy.rollingUpdate"
            out += _int_or_percent(ru.get("maxUnavailable"), child(path, "maxUnavailable"))
            out += _int_or_percent(ru.get("maxSurge"), child(path, "maxSurge"))
            if _value(ru.get("maxUnavailable")) == 0 and _value(ru.get("maxSurge")) == 0:
                out.append(
                    field_invalid(
                        child(path, "maxUnavailable"),
                        ru.get("maxUnavailable"),
                        "may not be 0 when `maxSurge` is 0",
                    )
                )
            out += _over_100(ru.get("maxUnavailable"), child(path, "maxUnavailable"))
    else:
        out.append(field_not_supported("spec.strategy", strategy, ["Recreate", "RollingUpdate"]))
    out += non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    out += non_negative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        out += non_negative(deadline, "spec.progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
            out.append(
                field_invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return out


def deployment_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """deploymentStrategy.ValidateUpdate: apps/v1 selectors are immutable."""
    new_sel, old_sel = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if new_sel != old_sel:
        return [field_immutable("spec.selector", new_sel)]
    return []


replica_set_update = deployment_update


def statefulset(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    policy = spec.get("podManagementPolicy")
    if not policy:
        out.append(field_required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        out.append(field_invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    stype = strategy.get("type")
    if not stype:
        out.append(field_required("spec.updateStrategy"))
    elif stype == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            out.append(
                field_invalid(
                    "spec.updateStrategy.rollingUpdate",
                    strategy["rollingUpdate"],
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        out += non_negative(ru.get("partition"), "spec.updateStrategy.rollingUpdate.partition")
        if ru.get("maxUnavailable") is not None:
            p = "spec.updateStrategy.rollingUpdate.maxUnavailable"
            out += _int_or_percent(ru["maxUnavailable"], p)
            if _value(ru["maxUnavailable"]) == 0:
                out.append(field_invalid(p, ru["maxUnavailable"], "cannot be 0"))
            out += _over_100(ru["maxUnavailable"], p)
    else:
        out.append(field_invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, Mapping):
        for f in ("whenDeleted", "whenScaled"):
            if retention.get(f) not in ("Retain", "Delete"):
                out.append(
                    field_not_supported(
                        f"spec.persistentVolumeClaimRetentionPolicy.{f}",
                        retention.get(f),
                        ["Retain", "Delete"],
                    )
                )
    out += non_negative(spec.get("replicas"), "spec.replicas")
    out += non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, Mapping):
        out += non_negative(ordinals.get("start"), "spec.ordinals.start")
    out += _selector(spec, "statefulset")
    out += _template_matches(spec)
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    out += labels(tmeta.get("labels"), "spec.template.labels")
    out += annotations(tmeta.get("annotations"), "spec.template.annotations")
    tspec = template.get("spec") or {}
    if tspec.get("restartPolicy", "Always") != "Always":
        out.append(
            field_not_supported("spec.template.spec.restartPolicy", tspec.get("restartPolicy"), ["Always"])
        )
    if tspec.get("activeDeadlineSeconds") is not None:
        out.append(
            field_forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in StatefulSet is not Supported",
            )
        )
    return out


# ValidateStatefulSetUpdate (pkg/apis/apps/validation/validation.go, current release).
_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def statefulset_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    new_spec = copy.copy(new.get("spec") or {})
    old_spec = old.get("spec") or {}
    for f in _STS_MUTABLE:
        new_spec.pop(f, None)
    old_rest = {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE}
    if new_spec != old_rest:
        return [
            field_forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                "'minReadySeconds' are forbidden",
            )
        ]
    return []


_METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]


def hpa(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    ref = spec.get("scaleTargetRef") or {}
    for f in ("kind", "name"):
        value = ref.get(f) or ""
        if not value:
            out.append(field_required(f"spec.scaleTargetRef.{f}"))
        else:
            out += [
                field_invalid(f"spec.scaleTargetRef.{f}", value, m) for m in fmt.is_path_segment_name(value)
            ]
    min_r = spec.get("minReplicas")
    if isinstance(min_r, int) and min_r < 1:
        out.append(field_invalid("spec.minReplicas", min_r, "must be greater than or equal to 1"))
    max_r = spec.get("maxReplicas")
    if not isinstance(max_r, int) or max_r < 1:
        out.append(field_invalid("spec.maxReplicas", max_r, "must be greater than 0"))
    elif isinstance(min_r, int) and max_r < min_r:
        out.append(field_invalid("spec.maxReplicas", max_r, "must be greater than or equal to `minReplicas`"))
    for i, metric in enumerate(spec.get("metrics") or []):
        p = f"spec.metrics[{i}]"
        mtype = (metric or {}).get("type")
        if not mtype:
            out.append(field_required(f"{p}.type", "must specify a metric source type"))
        elif mtype not in _METRIC_TYPES:
            out.append(field_not_supported(f"{p}.type", mtype, _METRIC_TYPES))
        elif mtype == "Resource":
            res = metric.get("resource") or {}
            if not res.get("name"):
                out.append(field_required(f"{p}.resource.name", "must specify a resource name"))
            target = res.get("target") or {}
            ttype = target.get("type")
            if ttype not in ("Utilization", "Value", "AverageValue"):
                out.append(
                    field_not_supported(
                        f"{p}.resource.target.type", ttype, ["AverageValue", "Utilization", "Value"]
                    )
                )
            util = target.get("averageUtilization")
            if util is not None and util <= 0:
                out.append(
                    field_invalid(f"{p}.resource.target.averageUtilization", util, "must be greater than 0")
                )
    behavior = spec.get("behavior")
    if isinstance(behavior, Mapping):
        for direction in ("scaleUp", "scaleDown"):
            rules = behavior.get(direction)
            if not isinstance(rules, Mapping):
                continue
            p = f"spec.behavior.{direction}"
            window = rules.get("stabilizationWindowSeconds")
            if isinstance(window, int) and not 0 <= window <= 3600:
                out.append(
                    field_invalid(
                        f"{p}.stabilizationWindowSeconds", window, "must be less than or equal to 3600"
                    )
                )
            for j, policy in enumerate(rules.get("policies") or []):
                pp = f"{p}.policies[{j}]"
                period = policy.get("periodSeconds")
                if not isinstance(period, int) or period <= 0:
                    out.append(field_invalid(f"{pp}.periodSeconds", period, "must be greater than zero"))
                elif period > 1800:
                    out.append(
                        field_invalid(f"{pp}.periodSeconds", period, "must be less than or equal to 1800")
                    )
                value = policy.get("value")
                if not isinstance(value, int) or value <= 0:
                    out.append(field_invalid(f"{pp}.value", value, "must be greater than zero"))
    return out


def pdb(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        out.append(field_invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for f in ("minAvailable", "maxUnavailable"):
        if spec.get(f) is not None:
            out += _int_or_percent(spec[f], f"spec.{f}")
            out += _over_100(spec[f], f"spec.{f}")
    out += label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        out.append(
            field_not_supported("spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"])
        )
    return out
