"""The admission plugins a default kube-apiserver runs that a workload can run into.

Mutating (before validation): NamespaceLifecycle, LimitRanger defaults, ServiceAccount,
DefaultStorageClass, StorageObjectInUseProtection. Validating (after): LimitRanger bounds, PodSecurity,
ResourceQuota. They run for the fake controllers' writes too, so a ReplicaSet whose pods exceed a
quota gets ``FailedCreate`` exactly like on a real cluster (plugin/pkg/admission/*).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tools.fakekube import auth, errors, podsecurity, quantity
from tools.fakekube.kinds import (
    LIMITRANGE,
    NAMESPACE,
    RESOURCEQUOTA,
    SERVICEACCOUNT,
    STORAGECLASS,
    Kind,
)
from tools.fakekube.store import Admission, Store, WriteOptions

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
_WORKLOADS = {
    "Deployment",
    "StatefulSet",
    "ReplicaSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
}


class KubeAdmission(Admission):
    def mutate(
        self,
        store: Store,
        kind: Kind,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        opts: WriteOptions,  # noqa: ARG002 -- the Admission interface; no mutating plugin needs options
    ) -> None:
        if old is not None:
            return
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName") or ""
        if kind.namespaced:
            _namespace_lifecycle(store, kind, obj["metadata"].get("namespace"), name)
        if kind.kind == "Pod" and not kind.group:
            _limit_ranger_defaults(store, obj)
            _service_account(store, kind, obj, name)
        elif kind.kind == "PersistentVolumeClaim" and not kind.group:
            _default_storage_class(store, obj)
            _add_finalizer(obj, PVC_PROTECTION)
        elif kind.kind == "PersistentVolume" and not kind.group:
            _add_finalizer(obj, PV_PROTECTION)

    def validate(
        self, store: Store, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions
    ) -> None:
        if kind.group == auth.RBAC_GROUP:
            _rbac_escalation(store, kind, obj, opts)
        if old is not None:
            return
        name = obj["metadata"].get("name") or ""
        ns = obj["metadata"].get("namespace")
        if kind.kind == "Pod" and not kind.group:
            _limit_ranger_bounds(store, kind, obj, name)
            _pod_security(store, kind, obj, name)
        elif kind.kind in _WORKLOADS and kind.namespaced:
            _pod_security_warnings(store, obj, opts)
        elif kind.kind == "PersistentVolumeClaim" and not kind.group:
            _limit_ranger_pvc(store, kind, obj, name)
        if ns:
            _resource_quota(store, kind, obj, name, ns)


def _namespace_lifecycle(store: Store, kind: Kind, namespace: str | None, name: str) -> None:
    ns = store.find(NAMESPACE, None, namespace or "")
    if ns is None:
        raise errors.not_found(NAMESPACE, namespace or "")
    if ns["metadata"].get("deletionTimestamp") and kind.kind != "Event":
        raise errors.forbidden(
            kind,
            name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )


def _add_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    meta = obj["metadata"]
    if finalizer not in (meta.get("finalizers") or []):
        meta["finalizers"] = [*(meta.get("finalizers") or []), finalizer]


def _service_account(store: Store, kind: Kind, pod: dict[str, Any], name: str) -> None:
    spec = pod.setdefault("spec", {})
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa
    ns = pod["metadata"]["namespace"]
    if store.find(SERVICEACCOUNT, ns, sa) is None:
        raise errors.forbidden(
            kind, name, f'error looking up service account {ns}/{sa}: serviceaccount "{sa}" not found'
        )


def _container_limits(store: Store, ns: str) -> list[Mapping[str, Any]]:
    items, _ = store.list(LIMITRANGE, ns)
    return [
        item
        for lr in items
        for item in (lr.get("spec") or {}).get("limits") or []
        if item.get("type") == "Container"
    ]


def _limit_ranger_defaults(store: Store, pod: dict[str, Any]) -> None:
    """LimitRanger's mutation: containers without requests/limits get the namespace's defaults."""
    items = _container_limits(store, pod["metadata"]["namespace"])
    if not items:
        return
    for group in ("initContainers", "containers"):
        for c in (pod.get("spec") or {}).get(group) or []:
            res = c.setdefault("resources", {})
            for item in items:
                for field_name, target in (("default", "limits"), ("defaultRequest", "requests")):
                    for r, v in (item.get(field_name) or {}).items():
                        if r not in (res.get(target) or {}):
                            res.setdefault(target, {})[r] = v


def _limit_ranger_bounds(store: Store, kind: Kind, pod: Mapping[str, Any], name: str) -> None:
    items = _container_limits(store, pod["metadata"]["namespace"])
    problems = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for item in items:
            for r, v in (item.get("min") or {}).items():
                got = req.get(r)
                if got is None:
                    problems.append(f"minimum {r} usage per Container is {v}.  No request is specified")
                elif quantity.parse(got) < quantity.parse(v):
                    problems.append(f"minimum {r} usage per Container is {v}, but request is {got}")
            for r, v in (item.get("max") or {}).items():
                got = lim.get(r)
                if got is None:
                    problems.append(f"maximum {r} usage per Container is {v}.  No limit is specified")
                elif quantity.parse(got) > quantity.parse(v):
                    problems.append(f"maximum {r} usage per Container is {v}, but limit is {got}")
    if problems:
        raise errors.forbidden(
            kind, name, problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        )


def _limit_ranger_pvc(store: Store, kind: Kind, pvc: Mapping[str, Any], name: str) -> None:
    items, _ = store.list(LIMITRANGE, pvc["metadata"]["namespace"])
    storage = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        return
    problems = []
    for lr in items:
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type") != "PersistentVolumeClaim":
                continue
            mn, mx = (item.get("min") or {}).get("storage"), (item.get("max") or {}).get("storage")
            if mn and quantity.parse(storage) < quantity.parse(mn):
                problems.append(
                    f"minimum storage usage per PersistentVolumeClaim is {mn}, but request is {storage}"
                )
            if mx and quantity.parse(storage) > quantity.parse(mx):
                problems.append(
                    f"maximum storage usage per PersistentVolumeClaim is {mx}, but request is {storage}"
                )
    if problems:
        raise errors.forbidden(
            kind, name, problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        )


def default_storage_class(store: Store) -> str | None:
    classes, _ = store.list(STORAGECLASS, None)
    defaults = [
        c for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if not defaults:
        return None
    # Since 1.26 the newest default class wins when several are marked default.
    return max(defaults, key=lambda c: (c["metadata"]["creationTimestamp"], c["metadata"]["name"]))[
        "metadata"
    ]["name"]


def _default_storage_class(store: Store, pvc: dict[str, Any]) -> None:
    spec = pvc.setdefault("spec", {})
    if spec.get("storageClassName") is None:
        default = default_storage_class(store)
        if default is not None:
            spec["storageClassName"] = default


def _pod_security(store: Store, kind: Kind, pod: Mapping[str, Any], name: str) -> None:
    ns = store.find(NAMESPACE, None, pod["metadata"]["namespace"])
    profile = podsecurity.level(ns, "enforce")
    found = podsecurity.violations(pod.get("spec") or {}, profile)
    if found:
        raise errors.forbidden(kind, name, "violates " + podsecurity.describe(profile, found))


def _pod_security_warnings(store: Store, workload: Mapping[str, Any], opts: WriteOptions) -> None:
    ns = store.find(NAMESPACE, None, workload["metadata"]["namespace"])
    template_spec = (((workload.get("spec") or {}).get("template") or {}).get("spec")) or {}
    seen = set()
    for mode in ("enforce", "warn"):
        profile = podsecurity.level(ns, mode)
        if profile in seen:
            continue
        seen.add(profile)
        found = podsecurity.violations(template_spec, profile)
        if found:
            opts.warnings.append("would violate " + podsecurity.describe(profile, found))


# ---------------------------------------------------------------- ResourceQuota


def _pod_usage(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return {}
    usage: dict[str, Decimal] = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        for source, prefix in (("requests", "requests."), ("limits", "limits.")):
            for r, v in (res.get(source) or {}).items():
                q = quantity.parse(v).value
                usage[prefix + r] = usage.get(prefix + r, Decimal(0)) + q
                if source == "requests" and r in ("cpu", "memory", "ephemeral-storage"):
                    usage[r] = usage.get(r, Decimal(0)) + q
    return usage


def _object_usage(kind: Kind, obj: Mapping[str, Any]) -> dict[str, Decimal]:
    if kind.kind == "Pod" and not kind.group:
        return _pod_usage(obj)
    usage: dict[str, Decimal] = {}
    count = f"count/{kind.plural}" + (f".{kind.group}" if kind.group else "")
    usage[count] = Decimal(1)
    if not kind.group and kind.plural in (
        "services",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    ):
        usage[kind.plural] = Decimal(1)
    if kind.kind == "Service" and not kind.group:
        stype = (obj.get("spec") or {}).get("type")
        if stype == "LoadBalancer":
            usage["services.loadbalancers"] = Decimal(1)
        if stype in ("LoadBalancer", "NodePort"):
            usage["services.nodeports"] = Decimal(len((obj.get("spec") or {}).get("ports") or []))
    if kind.kind == "PersistentVolumeClaim" and not kind.group:
        storage = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        if storage is not None:
            q = quantity.parse(storage).value
            usage["requests.storage"] = q
            sc = (obj.get("spec") or {}).get("storageClassName")
            if sc:
                usage[f"{sc}.storageclass.storage.k8s.io/requests.storage"] = q
                usage[f"{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
    return usage


def namespace_usage(store: Store, kind: Kind, namespace: str) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    items, _ = store.list(kind, namespace)
    for obj in items:
        if obj["metadata"].get("deletionTimestamp") and kind.kind == "Pod":
            continue
        for r, v in _object_usage(kind, obj).items():
            total[r] = total.get(r, Decimal(0)) + v
    return total


def _fmt(name: str, value: Decimal) -> str:
    fmt_kind = "BinarySI" if name.endswith(("memory", "storage", "ephemeral-storage")) else "DecimalSI"
    return quantity.canonical(quantity.Quantity(value, fmt_kind))  # type: ignore[arg-type]


def _resource_quota(store: Store, kind: Kind, obj: Mapping[str, Any], name: str, ns: str) -> None:
    quotas, _ = store.list(RESOURCEQUOTA, ns)
    if not quotas:
        return
    requested = _object_usage(kind, obj)
    if not requested:
        return
    used = namespace_usage(store, kind, ns)
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        hard = (quota.get("spec") or {}).get("hard") or {}
        qname = quota["metadata"]["name"]
        if kind.kind == "Pod" and not kind.group:
            missing = []
            for r in sorted(hard):
                if r in ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"):
                    source, res = (
                        ("limits", r[7:])
                        if r.startswith("limits.")
                        else ("requests", r.removeprefix("requests."))
                    )
                    lacking = [
                        c["name"]
                        for c in (obj.get("spec") or {}).get("containers") or []
                        if res not in ((c.get("resources") or {}).get(source) or {})
                    ]
                    if lacking:
                        missing.append(f"{r} for: {','.join(lacking)}")
            if missing:
                raise errors.forbidden(
                    kind, name, f"failed quota: {qname}: must specify {'; '.join(missing)}"
                )
        over = [
            r
            for r in sorted(hard)
            if r in requested and used.get(r, Decimal(0)) + requested[r] > quantity.parse(hard[r]).value
        ]
        if over:
            req = ",".join(f"{r}={_fmt(r, requested[r])}" for r in over)
            use = ",".join(f"{r}={_fmt(r, used.get(r, Decimal(0)))}" for r in over)
            lim = ",".join(f"{r}={hard[r]}" for r in over)
            raise errors.forbidden(
                kind, name, f"exceeded quota: {qname}, requested: {req}, used: {use}, limited: {lim}"
            )


# ---------------------------------------------------------------- RBAC escalation prevention


def _rbac_escalation(store: Store, kind: Kind, obj: Mapping[str, Any], opts: WriteOptions) -> None:
    """pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased: a user may
    only grant permissions it holds, unless it may ``escalate`` (roles) or ``bind`` (the role)."""
    user = opts.user
    if user is None or auth.MASTERS in user.groups:
        return
    meta = obj["metadata"]
    ns = meta.get("namespace") or ""
    authorizer = auth.Authorizer(store)

    def may(verb: str, resource: str, name: str) -> bool:
        attrs = auth.Attributes(user, verb, True, "", auth.RBAC_GROUP, "v1", resource, "", ns, name)
        return authorizer.authorize(attrs)[0]

    if kind.kind in ("Role", "ClusterRole"):
        if may("escalate", kind.plural, meta["name"]):
            return
        rules = list(obj.get("rules") or [])
    else:
        ref = obj.get("roleRef") or {}
        role_resource = "roles" if ref.get("kind") == "Role" else "clusterroles"
        if may("bind", role_resource, ref.get("name", "")):
            return
        role = (
            store.role(ns, ref.get("name", ""))
            if ref.get("kind") == "Role"
            else store.cluster_role(ref.get("name", ""))
        )
        if role is None:
            what = "role" if ref.get("kind") == "Role" else "clusterrole"
            raise errors.forbidden(
                kind, meta["name"], f'{what}.rbac.authorization.k8s.io "{ref.get("name")}" not found'
            )
        rules = list(role.get("rules") or [])
    owner_rules, _ = auth.rules_for(store, user, ns)
    missing = auth.covers(owner_rules, rules)
    if missing:
        groups = " ".join(f'"{g}"' for g in user.groups)
        raise errors.forbidden(
            kind,
            meta["name"],
            f'user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n'
            + auth.describe_missing(missing),
        )
