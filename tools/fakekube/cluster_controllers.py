"""The cluster-level controllers: garbage collector, namespaces, volumes, HPA, CRDs, tokens, quotas.

``route`` decides, for every committed write, which objects a controller must look at again; the
``reconcile_*`` functions are the controllers (ports of the behaviour, not the code, of
pkg/controller/{garbagecollector,namespace,volume/persistentvolume,volume/pvcprotection,podautoscaler,
serviceaccount,resourcequota} and apiextensions-apiserver's establishing/finalizing controllers).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tools.fakekube import admission, schema
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.jsonutil import clone
from tools.fakekube.kinds import (
    CONFIGMAP,
    CRD,
    DEPLOYMENT,
    HPA,
    NAMESPACE,
    POD,
    PV,
    PVC,
    RESOURCEQUOTA,
    SECRET,
    SERVICEACCOUNT,
    STATEFULSET,
    STORAGECLASS,
    Kind,
    kinds_from_crd,
)
from tools.fakekube.kubelet import claims_of, referenced

if TYPE_CHECKING:
    from tools.fakekube.controller import FakeController

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
FAKE_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nfakekube\n-----END CERTIFICATE-----\n").decode()
_QUOTA_KINDS = {"pods", "services", "secrets", "configmaps", "persistentvolumeclaims"}


def _core(kind: Kind, name: str) -> bool:
    return kind.kind == name and not kind.group and not kind.is_custom


def route(ctl: FakeController, kind: Kind, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Mark what a commit affects (called under the store lock for every create/update/delete)."""
    body = new if new is not None else old
    assert body is not None
    meta = body["metadata"]
    ns, name, uid = meta.get("namespace"), meta["name"], meta["uid"]
    gone = new is None
    # Garbage collection: dependents of a deleted object, objects being deleted, new owner references.
    if gone:
        for _, dep in ctl.store.dependents(uid):
            ctl.mark("gc", None, dep.body["metadata"]["uid"])
        for ref in meta.get("ownerReferences") or []:
            ctl.mark("gc", None, ref.get("uid", ""))
    elif (
        meta.get("deletionTimestamp")
        or (old is None and meta.get("ownerReferences"))
        or (old is not None and old["metadata"].get("ownerReferences") != meta.get("ownerReferences"))
    ):
        ctl.mark("gc", None, uid)
    if ns and gone:
        ns_obj = ctl.store.find(NAMESPACE, None, ns)
        if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp"):
            ctl.mark("namespace", None, ns)
    if kind.is_custom:
        return
    k = (
        kind.kind
        if kind.group in ("", "apps", "autoscaling", "apiextensions.k8s.io", "storage.k8s.io")
        else ""
    )
    if k == "Deployment":
        ctl.mark("deployment", ns, name)
        _mark_hpas(ctl, ns, "Deployment", name)
    elif k == "ReplicaSet":
        ctl.mark("replicaset", ns, name)
        _mark_owner(ctl, body, "deployment")
    elif k == "StatefulSet":
        ctl.mark("statefulset", ns, name)
        _mark_hpas(ctl, ns, "StatefulSet", name)
    elif k == "Pod":
        _route_pod(ctl, ns, name, old, new)
    elif k == "PersistentVolumeClaim":
        ctl.mark("pvc", ns, name)
        for pod in ctl.refs.get((ns, "PersistentVolumeClaim", name), ()):
            ctl.mark("pod", ns, pod)
        if gone or ((new or {}).get("status") or {}).get("phase") == "Bound":
            ctl.pending_claims.discard((ns, name))
        else:
            ctl.pending_claims.add((ns, name))
        if gone:
            _release_volume(ctl, body)
    elif k in ("Secret", "ConfigMap"):
        for pod in ctl.refs.get((ns, k, name), ()):
            ctl.mark("pod", ns, pod)
        if k == "Secret" and body.get("type") == SA_TOKEN_TYPE and not gone:
            ctl.mark("token", ns, name)
    elif k == "ServiceAccount":
        for s in ctl.store.list(SECRET, ns)[0]:
            if (
                s.get("type") == SA_TOKEN_TYPE
                and (s["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name") == name
            ):
                ctl.mark("token", ns, s["metadata"]["name"])
        _unblock(ctl, ns)
    elif k in ("ResourceQuota", "LimitRange"):
        _unblock(ctl, ns)
        if k == "ResourceQuota":
            ctl.mark("quota", ns, "")
    elif k == "StorageClass":
        for claim_ns, claim in list(ctl.pending_claims):
            ctl.mark("pvc", claim_ns, claim)
    elif k == "Node":
        for pod_ns, pod in list(ctl.unscheduled):
            ctl.mark("pod", pod_ns, pod)
    elif k == "Namespace":
        ctl.mark("namespace", None, name)
    elif k == "HorizontalPodAutoscaler":
        ctl.mark("hpa", ns, name)
        ref = (body.get("spec") or {}).get("scaleTargetRef") or {}
        targets = ctl.hpa_targets
        if gone:
            targets.pop((ns, name), None)
        else:
            targets[(ns, name)] = (ref.get("kind"), ref.get("name"))
    elif k == "CustomResourceDefinition":
        ctl.mark("crd", None, name)
        if gone:
            spec = body.get("spec") or {}
            ctl.store.registry.remove_group_resource(
                spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
            )
    if ns and not kind.group and kind.plural in _QUOTA_KINDS and ns in ctl.quota_namespaces:
        ctl.mark("quota", ns, "")


def _mark_owner(ctl: FakeController, body: Mapping[str, Any], queue: str) -> None:
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            ctl.mark(queue, body["metadata"].get("namespace"), ref["name"])


def _mark_hpas(ctl: FakeController, ns: str | None, kind: str, name: str) -> None:
    for (hpa_ns, hpa), target in ctl.hpa_targets.items():
        if hpa_ns == ns and target == (kind, name):
            ctl.mark("hpa", hpa_ns, hpa)


def _unblock(ctl: FakeController, ns: str | None) -> None:
    for queue, name in ctl.blocked.pop(ns or "", set()):
        ctl.mark(queue, ns, name)


def _route_pod(
    ctl: FakeController, ns: str | None, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> None:
    ctl.mark("pod", ns, name)
    body = new if new is not None else old
    assert body is not None
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            ctl.mark("replicaset" if ref.get("kind") == "ReplicaSet" else "statefulset", ns, ref["name"])
    key = (ns, name)
    if old is not None:
        for kind_name, names in (
            ("Secret", referenced(old, "Secret")),
            ("ConfigMap", referenced(old, "ConfigMap")),
            ("PersistentVolumeClaim", claims_of(old)),
        ):
            for n in names:
                pods = ctl.refs.get((ns, kind_name, n))
                if pods is not None:
                    pods.discard(name)
        node = (old.get("spec") or {}).get("nodeName")
        if node:
            ctl.node_pods.get(node, {}).pop(key, None)
    for claim in claims_of(body):
        ctl.mark("pvc", ns, claim)
    if new is None:
        ctl.unscheduled.discard(key)
        return
    for kind_name, names in (
        ("Secret", referenced(new, "Secret")),
        ("ConfigMap", referenced(new, "ConfigMap")),
        ("PersistentVolumeClaim", claims_of(new)),
    ):
        for n in names:
            ctl.refs.setdefault((ns, kind_name, n), set()).add(name)
    node = (new.get("spec") or {}).get("nodeName")
    if node:
        ctl.unscheduled.discard(key)
        if not new["metadata"].get("deletionTimestamp") and (new.get("status") or {}).get("phase") not in (
            "Succeeded",
            "Failed",
        ):
            ctl.node_pods.setdefault(node, {})[key] = new
    else:
        ctl.unscheduled.add(key)


# ---------------------------------------------------------------- garbage collector


def _kind_of(ctl: FakeController, body: Mapping[str, Any]) -> Kind | None:
    return ctl.store.registry.find(body.get("apiVersion", ""), body.get("kind", ""))


def _without_finalizer(body: Mapping[str, Any], finalizer: str) -> dict[str, Any]:
    meta = dict(body["metadata"])
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
    if not meta["finalizers"]:
        del meta["finalizers"]
    return {**body, "metadata": meta}


def remove_finalizer(
    ctl: FakeController,
    kind: Kind,
    body: Mapping[str, Any],
    finalizer: str,
    manager: str = "kube-controller-manager",
) -> None:
    if finalizer in (body["metadata"].get("finalizers") or []):
        ctl.update(kind, _without_finalizer(body, finalizer), manager=manager)


def reconcile_gc(ctl: FakeController, _namespace: str | None, uid: str) -> None:
    store = ctl.store
    stored = store.by_uid(uid)
    if stored is None:
        return
    body = stored.body
    kind = _kind_of(ctl, body)
    if kind is None:
        return
    meta = body["metadata"]
    ns = meta.get("namespace")
    finalizers = meta.get("finalizers") or []
    if meta.get("deletionTimestamp"):
        if "orphan" in finalizers:
            for dep_kind, dep in store.dependents(uid):
                refs = [r for r in dep.body["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                new = {**dep.body, "metadata": {**dep.body["metadata"], "ownerReferences": refs}}
                if not refs:
                    del new["metadata"]["ownerReferences"]
                ctl.update(dep_kind, new, manager="kube-controller-manager")
            remove_finalizer(ctl, kind, store.by_uid(uid).body, "orphan")  # type: ignore[union-attr]
            return
        if "foregroundDeletion" in finalizers:
            blocking = 0
            for dep_kind, dep in store.dependents(uid):
                ref = next(
                    r for r in dep.body["metadata"].get("ownerReferences") or [] if r.get("uid") == uid
                )
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if not dep.body["metadata"].get("deletionTimestamp"):
                    policy = "Foreground" if store.dependents(dep.body["metadata"]["uid"]) else "Background"
                    ctl.delete(
                        dep_kind,
                        dep.body["metadata"].get("namespace"),
                        dep.body["metadata"]["name"],
                        propagation=policy,
                    )
            if blocking == 0:
                current = store.by_uid(uid)
                if current is not None:
                    remove_finalizer(ctl, kind, current.body, "foregroundDeletion")
            return
        return
    refs = meta.get("ownerReferences") or []
    if not refs:
        return
    solid, dangling, waiting = [], [], []
    for ref in refs:
        owner = store.by_uid(ref.get("uid", ""))
        if (
            owner is None
            or owner.body["metadata"]["name"] != ref.get("name")
            or owner.body.get("kind") != ref.get("kind")
        ):
            dangling.append(ref)
        elif owner.body["metadata"].get("deletionTimestamp") and "foregroundDeletion" in (
            owner.body["metadata"].get("finalizers") or []
        ):
            waiting.append(ref)
        else:
            solid.append(ref)
    if not solid and (dangling or waiting):
        policy = "Foreground" if waiting and store.dependents(uid) else "Background"
        ctl.delete(kind, ns, meta["name"], propagation=policy)
    elif dangling:
        keep = [r for r in refs if r not in dangling]
        ctl.update(
            kind, {**body, "metadata": {**meta, "ownerReferences": keep}}, manager="kube-controller-manager"
        )


# ---------------------------------------------------------------- namespaces


def reconcile_namespace(ctl: FakeController, _namespace: str | None, name: str) -> None:
    store = ctl.store
    ns = store.find(NAMESPACE, None, name)
    if ns is None:
        return
    if not ns["metadata"].get("deletionTimestamp"):
        # The ServiceAccount controller and the root CA publisher fill every new namespace.
        for kind, obj_name, body in (
            (SERVICEACCOUNT, "default", {"metadata": {"name": "default"}}),
            (
                CONFIGMAP,
                "kube-root-ca.crt",
                {
                    "metadata": {
                        "name": "kube-root-ca.crt",
                        "annotations": {
                            "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
                        },
                    },
                    "data": {"ca.crt": base64.b64decode(FAKE_CA).decode()},
                },
            ),
        ):
            if store.find(kind, name, obj_name) is None:
                with contextlib.suppress(ApiStatusError):
                    ctl.create(kind, name, body, manager="kube-controller-manager")
        return
    remaining = 0
    for kind in store.registry.kinds:
        if not kind.namespaced or kind.virtual:
            continue
        for obj in store.list(kind, name)[0]:
            remaining += 1
            if not obj["metadata"].get("deletionTimestamp"):
                ctl.delete(kind, name, obj["metadata"]["name"])
    if remaining == 0 or not any(
        store.list(k, name)[0] for k in store.registry.kinds if k.namespaced and not k.virtual
    ):
        current = store.find(NAMESPACE, None, name)
        if current is not None:
            store.finalize(NAMESPACE, None, name)


# ---------------------------------------------------------------- ServiceAccount tokens


def reconcile_token_secret(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    secret = store.find(SECRET, namespace, name)
    if secret is None or secret.get("type") != SA_TOKEN_TYPE or secret["metadata"].get("deletionTimestamp"):
        return
    annotations = secret["metadata"].get("annotations") or {}
    sa_name = annotations.get("kubernetes.io/service-account.name", "")
    sa = store.find(SERVICEACCOUNT, namespace, sa_name)
    if sa is None:
        # The tokens controller deletes token Secrets whose ServiceAccount does not exist.
        ctl.delete(SECRET, namespace, name)
        return
    uid = sa["metadata"]["uid"]
    data = secret.get("data") or {}
    if annotations.get("kubernetes.io/service-account.uid") == uid and data.get("token"):
        return
    token = ctl.tokens.add_service_account(namespace or "", sa_name, uid)
    new = clone(secret)
    new["metadata"].setdefault("annotations", {})["kubernetes.io/service-account.uid"] = uid
    new["data"] = {
        **data,
        "token": base64.b64encode(token.encode()).decode(),
        "namespace": base64.b64encode((namespace or "").encode()).decode(),
        "ca.crt": FAKE_CA,
    }
    ctl.update(SECRET, new, manager="kube-controller-manager")


# ---------------------------------------------------------------- CRDs


def reconcile_crd(ctl: FakeController, _namespace: str | None, name: str) -> None:
    store = ctl.store
    crd = store.find(CRD, None, name)
    if crd is None:
        return
    spec = crd.get("spec") or {}
    group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
    if crd["metadata"].get("deletionTimestamp"):
        remaining = 0
        for kind in [
            k for k in store.registry.kinds if k.group == group and k.plural == plural and k.is_custom
        ][:1]:
            for obj in store.list(kind, None)[0]:
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    ctl.delete(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if remaining == 0:
            remove_finalizer(ctl, CRD, crd, CRD_FINALIZER, manager="kube-apiserver")
        else:
            ctl.mark("crd", None, name)
        return
    if CRD_FINALIZER not in (crd["metadata"].get("finalizers") or []):
        crd = ctl.update(
            CRD,
            {
                **crd,
                "metadata": {
                    **crd["metadata"],
                    "finalizers": [*(crd["metadata"].get("finalizers") or []), CRD_FINALIZER],
                },
            },
            manager="kube-apiserver",
        )
    store.registry.add(kinds_from_crd(crd, schema.crd_json_schema))
    names = spec.get("names") or {}
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    old = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
    from tools.fakekube.workload_controllers import _condition

    status = {
        "conditions": [
            _condition(
                old.get("NamesAccepted"),
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
                update_time=False,
            ),
            _condition(
                old.get("Established"),
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                update_time=False,
            ),
        ],
        "acceptedNames": clone(names),
        "storedVersions": sorted(set((crd.get("status") or {}).get("storedVersions") or []) | set(storage)),
    }
    ctl.write_status(CRD, crd, status, manager="kube-apiserver")


# ---------------------------------------------------------------- volumes


def reconcile_pvc(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    pvc = store.find(PVC, namespace, name)
    if pvc is None:
        return
    if pvc["metadata"].get("deletionTimestamp"):
        in_use = [
            p for p in store.list(POD, namespace)[0]
            if name in claims_of(p) and not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]  # fmt: skip
        if not in_use:
            remove_finalizer(ctl, PVC, pvc, admission.PVC_PROTECTION)
        return
    if (pvc.get("status") or {}).get("phase") == "Bound":
        return
    spec = pvc.get("spec") or {}
    class_name = spec.get("storageClassName")
    if class_name is None:
        # RetroactiveDefaultStorageClass (GA in 1.28): a claim created before any default class
        # existed gets the default class once there is one.
        default = admission.default_storage_class(store)
        if default is not None:
            pvc = ctl.update(
                PVC,
                {**pvc, "spec": {**spec, "storageClassName": default}},
                manager="persistentvolume-controller",
            )
            spec, class_name = pvc["spec"], default
    if not class_name:
        ctl.event(
            pvc,
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
            "persistentvolume-controller",
        )
        return
    sc = store.find(STORAGECLASS, None, class_name)
    if sc is None:
        ctl.event(
            pvc,
            "Warning",
            "ProvisioningFailed",
            f'storageclass.storage.k8s.io "{class_name}" not found',
            "persistentvolume-controller",
        )
        return
    if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not ctl.refs.get(
        (namespace, "PersistentVolumeClaim", name)
    ):
        ctl.event(
            pvc,
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
            "persistentvolume-controller",
        )
        return
    storage = (((spec.get("resources") or {}).get("requests")) or {}).get("storage", "0")
    pv_name = f"pvc-{pvc['metadata']['uid']}"
    if store.find(PV, None, pv_name) is None:
        ctl.create(
            PV,
            None,
            {
                "metadata": {
                    "name": pv_name,
                    "annotations": {"pv.kubernetes.io/provisioned-by": sc.get("provisioner", "")},
                },
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": list(spec.get("accessModes") or []),
                    "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                    "storageClassName": class_name,
                    "volumeMode": spec.get("volumeMode", "Filesystem"),
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": namespace,
                        "name": name,
                        "uid": pvc["metadata"]["uid"],
                    },
                    "csi": {"driver": sc.get("provisioner", ""), "volumeHandle": pv_name},
                },
            },
            manager="persistentvolume-controller",
        )
        pv = store.find(PV, None, pv_name)
        assert pv is not None
        ctl.write_status(PV, pv, {"phase": "Bound"}, manager="persistentvolume-controller")
    annotations = {
        **(pvc["metadata"].get("annotations") or {}),
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.kubernetes.io/storage-provisioner": sc.get("provisioner", ""),
    }
    pvc = ctl.update(
        PVC,
        {
            **pvc,
            "metadata": {**pvc["metadata"], "annotations": annotations},
            "spec": {**spec, "volumeName": pv_name},
        },
        manager="persistentvolume-controller",
    )
    ctl.write_status(
        PVC,
        pvc,
        {
            "phase": "Bound",
            "accessModes": list(spec.get("accessModes") or []),
            "capacity": {"storage": storage},
        },
        manager="persistentvolume-controller",
    )


def _release_volume(ctl: FakeController, pvc: Mapping[str, Any]) -> None:
    pv_name = (pvc.get("spec") or {}).get("volumeName")
    pv = ctl.store.find(PV, None, pv_name) if pv_name else None
    if pv is None:
        return
    if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
        ctl.delete(PV, None, pv_name or "")
        pv = ctl.store.find(PV, None, pv_name or "")
        if pv is not None:
            remove_finalizer(ctl, PV, pv, admission.PV_PROTECTION)
    else:
        ctl.write_status(PV, pv, {"phase": "Released"}, manager="persistentvolume-controller")


# ---------------------------------------------------------------- HorizontalPodAutoscalers


def reconcile_hpa(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    hpa = store.find(HPA, namespace, name)
    if hpa is None or hpa["metadata"].get("deletionTimestamp"):
        return
    spec = hpa.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_r, max_r = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
    target_kind = {"Deployment": DEPLOYMENT, "StatefulSet": STATEFULSET}.get(ref.get("kind", ""))
    if target_kind is None:
        api_version = ref.get("apiVersion", "")
        target_kind = store.registry.find(api_version, ref.get("kind", "")) if api_version else None
    target = (
        store.find(target_kind, namespace, ref.get("name", ""))
        if target_kind is not None and target_kind.scale
        else None
    )
    old = {c["type"]: c for c in (hpa.get("status") or {}).get("conditions") or []}
    from tools.fakekube.workload_controllers import _condition

    if target is None:
        resource = target_kind.resource if target_kind is not None else str(ref.get("kind", "")).lower()
        message = f'the HPA controller was unable to get the target\'s current scale: {resource} "{ref.get("name")}" not found'
        status = {
            **{
                k: v
                for k, v in (hpa.get("status") or {}).items()
                if k in ("currentReplicas", "desiredReplicas", "lastScaleTime")
            },
            "conditions": [
                _condition(
                    old.get("AbleToScale"),
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    message,
                    update_time=False,
                )
            ],
        }
        ctl.write_status(HPA, hpa, status, manager="kube-controller-manager")
        ctl.event(
            hpa,
            "Warning",
            "FailedGetScale",
            f'{target_kind.resource if target_kind else ref.get("kind")} "{ref.get("name")}" not found',
            "horizontal-pod-autoscaler",
        )
        return
    current = int((target.get("spec") or {}).get("replicas", 1))
    recommended = ctl.recommendations.get((namespace or "", name))
    conditions = []
    if current == 0 and min_r != 0:
        desired = 0
        conditions.append(
            _condition(
                old.get("ScalingActive"),
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                update_time=False,
            )
        )
    elif current > max_r:
        desired = max_r
    elif current < min_r:
        desired = min_r
    elif recommended is None:
        desired = current
        conditions.append(_condition(old.get("ScalingActive"), "ScalingActive", "False", "FailedGetResourceMetric",
                                     "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API",
                                     update_time=False))  # fmt: skip
    else:
        desired = max(min_r, min(max_r, recommended))
    if not any(c["type"] == "ScalingActive" for c in conditions):
        conditions.append(
            _condition(
                old.get("ScalingActive"),
                "ScalingActive",
                "True",
                "ValidMetricFound",
                "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
                update_time=False,
            )
        )
    wanted = recommended if recommended is not None else current
    if wanted < min_r:
        limit = ("True", "TooFewReplicas", "the desired replica count is less than the minimum replica count")
    elif wanted > max_r:
        limit = (
            "True",
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    else:
        limit = ("False", "DesiredWithinRange", "the desired count is within the acceptable range")
    conditions.append(_condition(old.get("ScalingLimited"), "ScalingLimited", *limit, update_time=False))
    status = dict(hpa.get("status") or {})
    if desired != current:
        store.replace(
            target_kind,  # type: ignore[arg-type]
            namespace,
            target["metadata"]["name"],
            {**target, "spec": {**target["spec"], "replicas": desired}},
            ctl.opts("kube-controller-manager", "scale"),
        )
        ctl.event(
            hpa,
            "Normal",
            "SuccessfulRescale",
            f"New size: {desired}; reason: {'All metrics below target' if desired < current else 'above target'}",
            "horizontal-pod-autoscaler",
        )
        status["lastScaleTime"] = status.get("lastScaleTime") or hpa["metadata"]["creationTimestamp"]
    conditions.insert(
        0,
        _condition(
            old.get("AbleToScale"),
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size",
            update_time=False,
        ),
    )
    status.update(currentReplicas=current, desiredReplicas=desired, conditions=conditions)
    status.pop("observedGeneration", None)
    status["observedGeneration"] = hpa["metadata"].get("generation", 1)
    ctl.write_status(HPA, hpa, status, manager="kube-controller-manager")


# ---------------------------------------------------------------- quota status


def reconcile_quota(ctl: FakeController, namespace: str | None, _name: str) -> None:
    store = ctl.store
    quotas = store.list(RESOURCEQUOTA, namespace)[0]
    if quotas:
        ctl.quota_namespaces.add(namespace or "")
    else:
        ctl.quota_namespaces.discard(namespace or "")
    usage: dict[str, Any] = {}
    for kind in (POD, SECRET, CONFIGMAP, PVC, store.registry.by_kind("v1", "Service")):
        for r, v in admission.namespace_usage(store, kind, namespace or "").items():
            usage[r] = usage.get(r, 0) + v
    for quota in quotas:
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        used = {r: admission._fmt(r, usage.get(r, 0)) if usage.get(r) else "0" for r in hard}
        ctl.write_status(
            RESOURCEQUOTA, quota, {"hard": hard, "used": used}, manager="resourcequota-controller"
        )
