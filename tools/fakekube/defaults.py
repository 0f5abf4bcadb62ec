"""Defaulting, as the API server's decoder applies it (pkg/apis/*/v1/defaults.go), plus decode checks.

Run on every object before it is validated and stored, so a client reads back what a real cluster
would return: ``strategy``/``revisionHistoryLimit``/``progressDeadlineSeconds`` on Deployments,
``imagePullPolicy``/``terminationMessagePath``/``protocol`` on containers, ``type``/``sessionAffinity``/
``targetPort`` on Services, ``type: Opaque`` on Secrets, and every resource quantity in canonical form.

``decode()`` raises the 400 a real decoder raises for values that cannot be represented at all
(a malformed quantity, Secret data that is not base64).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, MutableMapping
from typing import Any

from tools.fakekube import errors, images, quantity, schema
from tools.fakekube.jsonutil import clone
from tools.fakekube.kinds import Kind

Obj = MutableMapping[str, Any]


def decode(kind: Kind, obj: Obj) -> None:
    """Canonicalise quantities and check base64 the way the JSON decoder does; raises 400."""

    def fail(detail: str) -> errors.ApiStatusError:
        return errors.bad_request(
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {detail}'
        )

    def canon(mapping: Any) -> None:
        if not isinstance(mapping, dict):
            return
        for key, value in list(mapping.items()):
            if value is None:
                continue
            try:
                mapping[key] = quantity.canonicalize(value)
            except quantity.QuantityError as e:
                raise fail(str(e)) from None

    for holder in _quantity_maps(kind, obj):
        canon(holder)
    for value in _micro_times(kind, obj):
        problem = micro_time_error(value)
        if problem:
            raise fail(problem)
    if kind.kind == "Secret" and isinstance(obj.get("data"), dict):
        for key, value in obj["data"].items():
            if not isinstance(value, str):
                continue
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise fail(f"illegal base64 data at input byte {_bad_byte(value)}") from None
            del key


# apimachinery pkg/apis/meta/v1/micro_time.go: MicroTime.UnmarshalJSON is time.Parse(RFC3339Micro), whose
# ".000000" demands exactly six fractional digits ("...:40Z" fails); the error ends the decode (400).
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def micro_time_error(value: Any) -> str | None:
    """time.Parse's error for a MicroTime string, or None when it parses."""
    if not isinstance(value, str) or _MICRO_TIME.match(value):
        return None
    head = _SECONDS.match(value)
    if head is None:
        detail = f'cannot parse "{value}" as "2006"'
    else:
        rest = value[head.end() :]
        digits = re.match(r"^\.\d{6}", rest)
        detail = f'cannot parse "{rest[7:] if digits else rest}" as "{"Z07:00" if digits else ".000000"}"'
    return f'parsing time "{value}" as "{RFC3339_MICRO}": {detail}'


def _micro_times(kind: Kind, obj: Obj) -> list[Any]:
    """The MicroTime fields of the kinds that have them."""
    if kind.kind == "Lease" and kind.group == "coordination.k8s.io":
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        return [spec[f] for f in ("acquireTime", "renewTime") if spec.get(f) is not None]
    if kind.kind == "Event" and not kind.group and obj.get("eventTime") is not None:
        return [obj["eventTime"]]
    return []


def _bad_byte(value: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for i, c in enumerate(value):
        if c not in alphabet:
            return i
    return len(value) - len(value) % 4


def _quantity_maps(kind: Kind, obj: Obj) -> list[Any]:
    """Every ResourceList (name -> Quantity map) in the object."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    out: list[Any] = []
    k = kind.kind
    if k in ("Deployment", "StatefulSet", "ReplicaSet"):
        out += _pod_quantity_maps(((spec.get("template") or {}).get("spec")) or {})
        for claim in spec.get("volumeClaimTemplates") or []:
            if isinstance(claim, dict):
                res = (claim.get("spec") or {}).get("resources") or {}
                out += [res.get("requests"), res.get("limits")]
    elif k == "Pod":
        out += _pod_quantity_maps(spec)
    elif k == "PersistentVolumeClaim":
        res = spec.get("resources") or {}
        out += [res.get("requests"), res.get("limits"), (obj.get("status") or {}).get("capacity")]
    elif k == "PersistentVolume":
        out.append(spec.get("capacity"))
    elif k == "ResourceQuota":
        out += [
            spec.get("hard"),
            (obj.get("status") or {}).get("hard"),
            (obj.get("status") or {}).get("used"),
        ]
    elif k == "LimitRange":
        for item in spec.get("limits") or []:
            if isinstance(item, dict):
                out += [
                    item.get(f) for f in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
                ]
    elif k == "Node":
        status = obj.get("status") or {}
        out += [status.get("capacity"), status.get("allocatable")]
    return [m for m in out if isinstance(m, dict)]


def _pod_quantity_maps(pod_spec: Any) -> list[Any]:
    if not isinstance(pod_spec, dict):
        return []
    out = []
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for c in pod_spec.get(group) or []:
            if isinstance(c, dict) and isinstance(c.get("resources"), dict):
                out += [c["resources"].get("requests"), c["resources"].get("limits")]
    if isinstance(pod_spec.get("overhead"), dict):
        out.append(pod_spec["overhead"])
    for v in pod_spec.get("volumes") or []:
        if isinstance(v, dict) and isinstance(v.get("emptyDir"), dict) and "sizeLimit" in v["emptyDir"]:
            out.append(_Only(v["emptyDir"], "sizeLimit"))
    return out


class _Only(dict):  # type: ignore[type-arg]
    """A view of one quantity-valued key of a mapping that also holds other fields (emptyDir)."""

    def __init__(self, target: dict[str, Any], key: str) -> None:
        super().__init__({key: target[key]})
        self.target = target

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.target[key] = value


# ---------------------------------------------------------------- defaulting


def apply(kind: Kind, obj: Obj) -> Obj:
    """Fill the defaults of ``kind`` into ``obj`` (in place) and return it."""
    if kind.crd_schema is not None:
        schema.crd_defaults(kind.crd_schema, obj)
        return obj
    fn = _DEFAULTERS.get(kind.kind)
    if fn is not None:
        fn(obj)
    return obj


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec and the container, probe and volume defaulters beneath it."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if isinstance(c, dict):
                _container(c)
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        for source in ("secret", "configMap", "projected", "downwardAPI"):
            if isinstance(v.get(source), dict):
                v[source].setdefault("defaultMode", 420)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")


def _container(c: dict[str, Any]) -> None:
    if isinstance(c.get("image"), str) and "imagePullPolicy" not in c:
        c["imagePullPolicy"] = images.default_pull_policy(c["image"])
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("fieldRef") if isinstance(e, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            p.setdefault("timeoutSeconds", 1)
            p.setdefault("periodSeconds", 10)
            p.setdefault("successThreshold", 1)
            p.setdefault("failureThreshold", 3)
            if isinstance(p.get("httpGet"), dict):
                p["httpGet"].setdefault("path", "/")
                p["httpGet"].setdefault("scheme", "HTTP")


def pod(obj: Obj) -> None:
    """SetDefaults_Pod: pods (not templates) also get requests defaulted to their limits."""
    spec = _spec(obj)
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    for c in spec.get("containers") or []:
        res = c.get("resources") if isinstance(c, dict) else None
        if isinstance(res, dict) and isinstance(res.get("limits"), dict):
            requests = res.setdefault("requests", {})
            for name, value in res["limits"].items():
                requests.setdefault(name, value)


def _template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec(template.setdefault("spec", {}))


def deployment(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec)


def statefulset(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {"phase": "Pending"})
    _template(spec)


def replicaset(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    _template(spec)


def service(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        p.setdefault("protocol", "TCP")
        if p.get("targetPort") in (None, 0, "") and spec["type"] != "ExternalName":
            p["targetPort"] = p.get("port")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        cfg.setdefault("timeoutSeconds", 10800)


def secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def pvc(obj: Obj) -> None:
    _spec(obj).setdefault("volumeMode", "Filesystem")


def pv(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")


def namespace(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("finalizers", ["kubernetes"])
    # NamespaceDefaultLabelName, GA in 1.22: the server keeps this label equal to the name.
    meta = obj.setdefault("metadata", {})
    if meta.get("name"):
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        meta["labels"] = {**labels, "kubernetes.io/metadata.name": meta["name"]}


def hpa(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        up = behavior.setdefault("scaleUp", {})
        up.setdefault("stabilizationWindowSeconds", 0)
        up.setdefault("selectPolicy", "Max")
        up.setdefault(
            "policies",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        down = behavior.setdefault("scaleDown", {})
        down.setdefault("stabilizationWindowSeconds", 300)
        down.setdefault("selectPolicy", "Max")
        down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def network_policy(obj: Obj) -> None:
    spec = _spec(obj)
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for rules in ("ingress", "egress"):
        for rule in spec.get(rules) or []:
            for port in (rule.get("ports") or []) if isinstance(rule, dict) else []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def role_binding(obj: Obj) -> None:
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and "apiGroup" not in s:
            s["apiGroup"] = "rbac.authorization.k8s.io" if s.get("kind") in ("User", "Group") else ""


def storage_class(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def limit_range(obj: Obj) -> None:
    """SetDefaults_LimitRangeItem: a Container default falls back to max, defaultRequest to default/min."""
    for item in _spec(obj).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        request = item.setdefault("defaultRequest", {})
        for name, value in default.items():
            request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            request.setdefault(name, value)
        if not default:
            del item["default"]
        if not request:
            del item["defaultRequest"]


def crd(obj: Obj) -> None:
    spec = _spec(obj)
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": pod,
    "Deployment": deployment,
    "StatefulSet": statefulset,
    "ReplicaSet": replicaset,
    "Service": service,
    "Secret": secret,
    "PersistentVolumeClaim": pvc,
    "PersistentVolume": pv,
    "Namespace": namespace,
    "HorizontalPodAutoscaler": hpa,
    "NetworkPolicy": network_policy,
    "RoleBinding": role_binding,
    "ClusterRoleBinding": role_binding,
    "StorageClass": storage_class,
    "LimitRange": limit_range,
    "CustomResourceDefinition": crd,
}


def defaulted_copy(kind: Kind, obj: Obj) -> Obj:
    return apply(kind, clone(obj))
