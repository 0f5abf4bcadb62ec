"""The API server's semantic validation (422 Invalid), per kind, on create and on update.

Schemas catch types and unknown fields (see ``schema.py``); these are the rules a schema cannot
express, ported from the Kubernetes sources named in each module: object names and metadata, data
keys, resource quantities and requests <= limits, unique names, mount paths and ports, env var names,
key references, Service ports, immutable fields, RBAC rules and bindings.

``validate(kind, obj, old)`` returns the field errors (empty when valid); the store turns them into
``errors.invalid``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube.errors import FieldError
from tools.fakekube.kinds import Kind
from tools.fakekube.validation import core, meta, network, other, pods, rbac, workloads

Check = Callable[[Mapping[str, Any]], list[FieldError]]
UpdateCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], list[FieldError]]

_NAME_FNS: dict[str, meta.NameFn] = {
    "Namespace": fmt.name_is_dns_label,
    "Service": fmt.name_is_dns1035_label,
    "StatefulSet": fmt.name_is_dns_label,
    "Role": fmt.name_is_path_segment,
    "RoleBinding": fmt.name_is_path_segment,
    "ClusterRole": fmt.name_is_path_segment,
    "ClusterRoleBinding": fmt.name_is_path_segment,
}


def _pod(obj: Mapping[str, Any]) -> list[FieldError]:
    return pods.pod_spec(obj.get("spec") or {}, "spec", pod=True)


def _replicaset(obj: Mapping[str, Any]) -> list[FieldError]:
    return workloads.replica_set_spec(obj.get("spec") or {})


_CREATE: dict[str, Check] = {
    "Pod": _pod,
    "Deployment": workloads.deployment,
    "ReplicaSet": _replicaset,
    "StatefulSet": workloads.statefulset,
    "HorizontalPodAutoscaler": workloads.hpa,
    "PodDisruptionBudget": workloads.pdb,
    "Secret": core.secret,
    "ConfigMap": core.configmap,
    "Service": core.service,
    "PersistentVolumeClaim": core.pvc,
    "Namespace": core.namespace,
    "ResourceQuota": core.resource_quota,
    "LimitRange": core.limit_range,
    "Event": core.event,
    "Lease": core.lease,
    "Ingress": network.ingress,
    "NetworkPolicy": network.network_policy,
    "Role": rbac.role,
    "ClusterRole": rbac.cluster_role,
    "RoleBinding": rbac.role_binding,
    "ClusterRoleBinding": rbac.cluster_role_binding,
    "StorageClass": other.storage_class,
    "CustomResourceDefinition": other.crd,
}

_UPDATE: dict[str, UpdateCheck] = {
    "Pod": pods.pod_update,
    "Deployment": workloads.deployment_update,
    "ReplicaSet": workloads.replica_set_update,
    "StatefulSet": workloads.statefulset_update,
    "Secret": core.secret_update,
    "ConfigMap": core.configmap_update,
    "Service": core.service_update,
    "PersistentVolumeClaim": core.pvc_update,
    "ResourceQuota": core.resource_quota_update,
    "RoleBinding": rbac.binding_update,
    "ClusterRoleBinding": rbac.binding_update,
    "StorageClass": other.storage_class_update,
    "CustomResourceDefinition": other.crd_update,
}


def name_fn(kind: Kind) -> meta.NameFn:
    if kind.is_custom:
        return fmt.name_is_dns_subdomain
    return _NAME_FNS.get(kind.kind, fmt.name_is_dns_subdomain)


def validate(kind: Kind, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[FieldError]:
    """All field errors of a create (``old`` None) or an update of ``obj``."""
    m = obj.get("metadata") or {}
    if old is None:
        out = meta.object_meta(m, namespaced=kind.namespaced, name_fn=name_fn(kind))
    else:
        out = meta.object_meta_update(m, old.get("metadata") or {})
    if kind.is_custom:
        return out
    check = _CREATE.get(kind.kind)
    if check is not None:
        out += check(obj)
    if old is not None:
        update = _UPDATE.get(kind.kind)
        if update is not None:
            out += update(obj, old)
    return out


def validate_status(kind: Kind, obj: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """Status writes only revalidate metadata (the strategies' ValidateStatusUpdate)."""
    del kind
    return meta.object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
