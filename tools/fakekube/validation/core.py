"""Secrets, ConfigMaps, Services, PVCs, Namespaces, quotas and limit ranges, Events, Leases, Nodes.

Ports of ValidateSecret(Update), ValidateConfigMap(Update), ValidateService(Update),
ValidatePersistentVolumeClaim(Update), ValidateResourceQuota(Update), ValidateLimitRange in
pkg/apis/core/validation/validation.go and ValidateLease in pkg/apis/coordination/validation.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube import quantity
from tools.fakekube.errors import (
    FieldError,
    field_duplicate,
    field_forbidden,
    field_immutable,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
)
from tools.fakekube.validation.meta import child, index, key, labels, non_negative
from tools.fakekube.validation.pods import port_num_or_name

MAX_SECRET_SIZE = 1024 * 1024
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _data_keys(data: Any, path: str) -> tuple[list[FieldError], int]:
    out: list[FieldError] = []
    size = 0
    if isinstance(data, Mapping):
        for k, v in data.items():
            out += [field_invalid(key(path, k), k, m) for m in fmt.is_config_map_key(k)]
            size += len(v) if isinstance(v, str) else 0
    return out, size


def secret(obj: Mapping[str, Any]) -> list[FieldError]:
    data = obj.get("data") or {}
    out, _ = _data_keys(data, "data")
    # Values were base64-decoded already (a bad one is a 400 before validation): size from the length.
    size = sum(
        len(v) * 3 // 4 - v.endswith("=") - v.endswith("==") for v in data.values() if isinstance(v, str)
    )
    if size > MAX_SECRET_SIZE:
        out.append(field_too_long("data", MAX_SECRET_SIZE))
    stype = obj.get("type") or "Opaque"
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if stype == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            out.append(field_required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        k = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if k not in data:
            out.append(field_required(key("data", k)))
        else:
            try:
                json.loads(base64.b64decode(data[k]))
            except ValueError as e:
                out.append(field_invalid(key("data", k), "<secret contents redacted>", str(e)))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            out += [field_required("data[username]"), field_required("data[password]")]
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            out.append(field_required("data[ssh-privatekey]"))
    elif stype == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                out.append(field_required(key("data", k)))
    return out


def _immutable_data(
    new: Mapping[str, Any], old: Mapping[str, Any], fields: tuple[str, ...]
) -> list[FieldError]:
    out = []
    if old.get("immutable"):
        if not new.get("immutable"):
            out.append(field_forbidden("immutable", "field is immutable when `immutable` is set"))
        for f in fields:
            if (new.get(f) or {}) != (old.get(f) or {}):
                out.append(field_forbidden(f, "field is immutable when `immutable` is set"))
    return out


def secret_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    out = []
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        out.append(field_immutable("type", new.get("type")))
    return out + _immutable_data(new, old, ("data",))


def configmap(obj: Mapping[str, Any]) -> list[FieldError]:
    out, size = _data_keys(obj.get("data"), "data")
    binary = obj.get("binaryData") or {}
    for k in obj.get("data") or {}:
        if k in binary:
            out.append(field_invalid(key("data", k), k, "duplicate of key present in binaryData"))
    more, bsize = _data_keys(binary, "binaryData")
    out += more
    if size + bsize > MAX_SECRET_SIZE:
        out.append(field_too_long("", MAX_SECRET_SIZE))
    return out


def configmap_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    return _immutable_data(new, old, ("data", "binaryData"))


def service(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    stype = spec.get("type")
    ports = [p for p in spec.get("ports") or [] if isinstance(p, Mapping)]
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless and stype != "ExternalName":
        out.append(field_required("spec.ports"))
    if stype in ("LoadBalancer", "NodePort") and headless:
        out.append(
            field_invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {stype} services")
        )
    if stype == "ExternalName":
        name = (spec.get("externalName") or "").removesuffix(".")
        if not name:
            out.append(field_required("spec.externalName"))
        else:
            out += [field_invalid("spec.externalName", name, m) for m in fmt.is_dns1123_subdomain(name)]
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = index("spec.ports", i)
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            out.append(field_required(child(path, "name")))
        elif name:
            out += [field_invalid(child(path, "name"), name, m) for m in fmt.is_dns1123_label(name)]
            if name in names:
                out.append(field_duplicate(child(path, "name"), name))
            names.add(name)
        out += [
            field_invalid(child(path, "port"), p.get("port"), m) for m in fmt.is_valid_port_num(p.get("port"))
        ]
        protocol = p.get("protocol")
        if not protocol:
            out.append(field_required(child(path, "protocol")))
        elif protocol not in _PROTOCOLS:
            out.append(field_not_supported(child(path, "protocol"), protocol, _PROTOCOLS))
        if p.get("targetPort") is not None:
            out += port_num_or_name(p["targetPort"], child(path, "targetPort"))
        if stype == "ClusterIP" and p.get("nodePort"):
            out.append(field_forbidden(child(path, "nodePort"), "may not be used when `type` is 'ClusterIP'"))
    seen: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        sig = (p.get("protocol"), p.get("port"))
        if sig in seen:
            out.append(field_duplicate(index("spec.ports", i), {"protocol": sig[0], "port": sig[1]}))
        seen.add(sig)
    if spec.get("selector") is not None:
        out += labels(spec["selector"], "spec.selector")
    affinity = spec.get("sessionAffinity")
    if not affinity:
        out.append(field_required("spec.sessionAffinity"))
    elif affinity not in ("ClientIP", "None"):
        out.append(field_not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        out.append(
            field_forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")
        )
    if not stype:
        out.append(field_required("spec.type"))
    elif stype not in _SERVICE_TYPES:
        out.append(field_not_supported("spec.type", stype, _SERVICE_TYPES))
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            out.append(
                field_invalid(
                    "spec.clusterIPs[0]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                )
            )
    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != "LoadBalancer":
        out.append(
            field_forbidden(
                "spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"
            )
        )
    if stype not in ("NodePort", "LoadBalancer") and spec.get("externalTrafficPolicy"):
        out.append(
            field_invalid(
                "spec.externalTrafficPolicy",
                spec["externalTrafficPolicy"],
                "may only be set for externally-accessible services",
            )
        )
    itp = spec.get("internalTrafficPolicy")
    if itp is not None and itp not in ("Cluster", "Local"):
        out.append(field_not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))
    return out


def service_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs: the primary cluster IP may not change once set."""
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return []
    old_ips, new_ips = old_spec.get("clusterIPs") or [], new_spec.get("clusterIPs") or []
    if old_ips and new_ips and old_ips[0] != new_ips[0]:
        return [field_invalid("spec.clusterIPs[0]", new_ips[0], "may not change once set")]
    return []


_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def pvc_spec(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    out: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        out.append(field_required(child(path, "accessModes"), "at least 1 access mode is required"))
    for mode in modes:
        if mode not in _ACCESS_MODES:
            out.append(field_not_supported(child(path, "accessModes"), mode, _ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(set(modes)) > 1:
        out.append(
            field_forbidden(
                child(path, "accessModes"), "may not use ReadWriteOncePod with other access modes"
            )
        )
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    storage_path = key(child(path, "resources"), "storage")
    if storage is None:
        out.append(field_required(storage_path))
    elif quantity.parse(storage).value <= 0:
        out.append(field_invalid(storage_path, storage, "must be greater than zero"))
    sc = spec.get("storageClassName")
    if sc:
        out += [field_invalid(child(path, "storageClassName"), sc, m) for m in fmt.name_is_dns_subdomain(sc)]
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        out.append(field_not_supported(child(path, "volumeMode"), mode, ["Block", "Filesystem"]))
    return out


def pvc(obj: Mapping[str, Any]) -> list[FieldError]:
    return pvc_spec(obj.get("spec") or {}, "spec")


def pvc_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    new_spec = dict(new.get("spec") or {})
    old_spec = dict(old.get("spec") or {})
    out: list[FieldError] = []
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
    bound = (new.get("status") or {}).get("phase") == "Bound"
    new_storage = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
    old_storage = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    if bound:

        def without_storage(s: dict[str, Any]) -> dict[str, Any]:
            s = json.loads(json.dumps(s))
            s.get("resources", {}).get("requests", {}).pop("storage", None)
            return s

        new_cmp, old_cmp = without_storage(new_spec), without_storage(old_spec)
    else:
        new_cmp, old_cmp = new_spec, old_spec
    if new_cmp != old_cmp:
        out.append(
            field_forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            )
        )
    if new_storage and old_storage and quantity.parse(new_storage) < quantity.parse(old_storage):
        out.append(
            field_forbidden("spec.resources.requests.storage", "field can not be less than status.capacity")
        )
    return out


def namespace(obj: Mapping[str, Any]) -> list[FieldError]:
    out = []
    for f in (obj.get("spec") or {}).get("finalizers") or []:
        out += [field_invalid("spec.finalizers", f, m) for m in fmt.is_qualified_name(f)]
        if "/" not in f and f not in ("kubernetes", "orphan", "foregroundDeletion"):
            out.append(
                field_invalid(
                    "spec.finalizers",
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return out


_QUOTA_STANDARD = {
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "cpu", "memory",
    "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage", "requests.ephemeral-storage",
    "limits.cpu", "limits.memory", "limits.ephemeral-storage",
}  # fmt: skip


def _quota_name(name: str, path: str) -> list[FieldError]:
    out = [field_invalid(path, name, m) for m in fmt.is_qualified_name(name)]
    if out:
        return out
    if (
        "/" not in name
        and name not in _QUOTA_STANDARD
        and not name.startswith(("count/", "hugepages-", "requests.hugepages-"))
    ):
        return [field_invalid(path, name, "must be a standard resource for quota")]
    return []


def resource_quota(obj: Mapping[str, Any]) -> list[FieldError]:
    out = []
    for name, value in ((obj.get("spec") or {}).get("hard") or {}).items():
        p = key("spec.hard", name)
        out += _quota_name(name, p)
        q = quantity.parse(value)
        if q.value < 0:
            out.append(field_invalid(p, str(q), "must be greater than or equal to 0"))
    scopes = (obj.get("spec") or {}).get("scopes") or []
    valid = {
        "Terminating",
        "NotTerminating",
        "BestEffort",
        "NotBestEffort",
        "PriorityClass",
        "CrossNamespacePodAffinity",
        "VolumeAttributesClass",
    }
    for scope in scopes:
        if scope not in valid:
            out.append(field_invalid("spec.scopes", scopes, "unsupported scope"))
    if {"BestEffort", "NotBestEffort"} <= set(scopes) or {"Terminating", "NotTerminating"} <= set(scopes):
        out.append(field_invalid("spec.scopes", scopes, "conflicting scopes"))
    return out


def resource_quota_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    new_scopes = set((new.get("spec") or {}).get("scopes") or [])
    if new_scopes != set((old.get("spec") or {}).get("scopes") or []):
        return [field_invalid("spec.scopes", sorted(new_scopes), "field is immutable")]
    return []


def limit_range(obj: Mapping[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
        p = index("spec.limits", i)
        ltype = item.get("type")
        if ltype not in ("Container", "Pod", "PersistentVolumeClaim"):
            out.append(
                field_not_supported(child(p, "type"), ltype, ["Container", "PersistentVolumeClaim", "Pod"])
            )
        if ltype == "Pod" and (item.get("default") or item.get("defaultRequest")):
            out.append(field_forbidden(child(p, "default"), "may not be specified when `type` is 'Pod'"))
        values = {
            f: {k: quantity.parse(v) for k, v in (item.get(f) or {}).items()}
            for f in ("min", "max", "default", "defaultRequest")
        }
        for name in set().union(*(v.keys() for v in values.values())):
            mn, mx = values["min"].get(name), values["max"].get(name)
            d, dr = values["default"].get(name), values["defaultRequest"].get(name)
            if mn and mx and mn > mx:
                out.append(
                    field_invalid(
                        key(child(p, "min"), name), str(mn), f"min value {mn} is greater than max value {mx}"
                    )
                )
            if dr and mn and mn > dr:
                out.append(
                    field_invalid(
                        key(child(p, "defaultRequest"), name),
                        str(dr),
                        f"min value {mn} is greater than default request value {dr}",
                    )
                )
            if dr and mx and dr > mx:
                out.append(
                    field_invalid(
                        key(child(p, "defaultRequest"), name),
                        str(dr),
                        f"default request value {dr} is greater than max value {mx}",
                    )
                )
            if dr and d and dr > d:
                out.append(
                    field_invalid(
                        key(child(p, "defaultRequest"), name),
                        str(dr),
                        f"default request value {dr} is greater than default limit value {d}",
                    )
                )
            if d and mn and mn > d:
                out.append(
                    field_invalid(
                        key(child(p, "default"), name),
                        str(mn),
                        f"min value {mn} is greater than default value {d}",
                    )
                )
            if d and mx and d > mx:
                out.append(
                    field_invalid(
                        key(child(p, "default"), name),
                        str(mx),
                        f"default value {d} is greater than max value {mx}",
                    )
                )
    return out


def event(obj: Mapping[str, Any]) -> list[FieldError]:
    involved = obj.get("involvedObject") or {}
    ns = (obj.get("metadata") or {}).get("namespace")
    if involved.get("namespace") and involved["namespace"] != ns:
        return [
            field_invalid("involvedObject.namespace", involved["namespace"], "does not match event.namespace")
        ]
    return []


def lease(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        out.append(field_invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    out += non_negative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return out


def service_account(obj: Mapping[str, Any]) -> list[FieldError]:
    del obj
    return []
