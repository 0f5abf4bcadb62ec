"""Deployment, ReplicaSet and StatefulSet controllers, and the scheduler+kubelet loop over pods.

Ports the parts of pkg/controller/{deployment,replicaset,statefulset} that a rollout's observable
state depends on: ReplicaSets per template hash with ``deployment.kubernetes.io/revision``, rolling
updates bounded by ``maxSurge``/``maxUnavailable`` (Recreate scales down first), pods created through
the API server's own validation and admission (so a pod the template cannot produce becomes a
``FailedCreate`` event and a ``ReplicaFailure`` condition), ``observedGeneration``, the Available and
Progressing conditions, OrderedReady StatefulSets with claims from ``volumeClaimTemplates``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tools.fakekube import kubelet
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.jsonutil import clone
from tools.fakekube.kinds import CONFIGMAP, DEPLOYMENT, NODE, POD, PVC, REPLICASET, SECRET, STATEFULSET
from tools.fakekube.kubelet import PodBehaviour, PodState, is_ready
from tools.fakekube.store import now

if TYPE_CHECKING:
    from tools.fakekube.controller import FakeController

REVISION = "deployment.kubernetes.io/revision"


def owner_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _owned(ctl: FakeController, kind: Any, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    return [
        o for o in ctl.store.owned_by(kind, owner["metadata"]["namespace"], uid) if controller_uid(o) == uid
    ]


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def _condition(
    old: Mapping[str, Any] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    update_time: bool = True,
) -> dict[str, Any]:
    """A condition whose timestamps move only when it changes, so an unchanged reconcile writes nothing."""
    stamp = now()
    transition = old["lastTransitionTime"] if old and old.get("status") == status else stamp
    c: dict[str, Any] = {"type": type_, "status": status}
    if update_time:
        c["lastUpdateTime"] = (
            old.get("lastUpdateTime", stamp)
            if old and old.get("reason") == reason and old.get("message") == message
            else stamp
        )
    c.update(lastTransitionTime=transition, reason=reason, message=message)
    return c


def _nonzero(status: dict[str, Any], keep: tuple[str, ...] = ("observedGeneration",)) -> dict[str, Any]:
    """Go's omitempty: zero counts are not serialised."""
    return {k: v for k, v in status.items() if v not in (0, None, []) or k in keep}


# ---------------------------------------------------------------- Deployments


def reconcile_deployment(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    dep = store.find(DEPLOYMENT, namespace, name)
    if dep is None or dep["metadata"].get("deletionTimestamp"):
        return
    ns = dep["metadata"]["namespace"]
    spec = dep.get("spec") or {}
    generation = dep["metadata"].get("generation", 1)
    if ctl.deadlines.get((ns, name), generation) != generation:
        del ctl.deadlines[(ns, name)]  # a new spec restarts progress, as in the real controller
    desired = int(spec.get("replicas", 1))
    template = spec.get("template") or {}
    from tools.fakekube.controller import template_hash

    revision_hash = template_hash(template)
    replica_sets = [rs for rs in _owned(ctl, REPLICASET, dep) if not rs["metadata"].get("deletionTimestamp")]
    new_rs = next(
        (rs for rs in replica_sets if rs["metadata"]["labels"].get("pod-template-hash") == revision_hash),
        None,
    )
    old_rss = [rs for rs in replica_sets if rs is not new_rs]
    strategy = spec.get("strategy") or {}
    ru = strategy.get("rollingUpdate") or {}
    max_surge = _resolve(ru.get("maxSurge", "25%"), desired, round_up=True)
    max_unavailable = _resolve(ru.get("maxUnavailable", "25%"), desired, round_up=False)
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    if strategy.get("type") == "Recreate":
        max_surge, max_unavailable = 0, desired
    if not spec.get("paused"):
        if new_rs is None:
            if strategy.get("type") == "Recreate":
                start = desired if not any(_rs_replicas(rs) or _rs_pods(ctl, rs) for rs in old_rss) else 0
            else:
                total = sum(_rs_replicas(rs) for rs in old_rss)
                start = max(0, min(desired, desired + max_surge - total))
            new_rs = _create_replica_set(ctl, dep, revision_hash, old_rss, start)
            if new_rs is None:
                return
        _scale(
            ctl, dep, new_rs, old_rss, desired, max_surge, max_unavailable, strategy.get("type") == "Recreate"
        )
    _write_deployment_status(ctl, dep, new_rs, desired, generation, max_unavailable)


def _rs_replicas(rs: Mapping[str, Any]) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _rs_pods(ctl: FakeController, rs: Mapping[str, Any]) -> int:
    return len(_owned(ctl, POD, rs))


def _available(rs: Mapping[str, Any]) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0))


def _set_rs_replicas(
    ctl: FakeController, dep: Mapping[str, Any], rs: dict[str, Any], replicas: int
) -> dict[str, Any]:
    current = _rs_replicas(rs)
    if current == replicas:
        return rs
    annotations = {
        **(rs["metadata"].get("annotations") or {}),
        "deployment.kubernetes.io/desired-replicas": str(dep["spec"].get("replicas", 1)),
    }
    body = {
        **rs,
        "metadata": {**rs["metadata"], "annotations": annotations},
        "spec": {**rs["spec"], "replicas": replicas},
    }
    updated = ctl.update(REPLICASET, body)
    verb = "up" if replicas > current else "down"
    ctl.event(
        dep,
        "Normal",
        "ScalingReplicaSet",
        f"Scaled {verb} replica set {rs['metadata']['name']} from {current} to {replicas}",
        "deployment-controller",
    )
    return updated


def _scale(ctl: FakeController, dep: Mapping[str, Any], new_rs: dict[str, Any], old_rss: list[dict[str, Any]], desired: int,
           max_surge: int, max_unavailable: int, recreate: bool) -> None:  # fmt: skip
    if recreate:
        for rs in old_rss:
            _set_rs_replicas(ctl, dep, rs, 0)
        if any(_rs_pods(ctl, rs) for rs in old_rss):
            return
        _set_rs_replicas(ctl, dep, new_rs, desired)
        return
    # Scale the new ReplicaSet up within maxSurge (or down to the desired count).
    total = _rs_replicas(new_rs) + sum(_rs_replicas(rs) for rs in old_rss)
    target = _rs_replicas(new_rs)
    if target < desired:
        target = min(desired, target + max(0, desired + max_surge - total))
    elif target > desired:
        target = desired
    new_rs = _set_rs_replicas(ctl, dep, new_rs, target)
    # Scale old ReplicaSets down while keeping desired - maxUnavailable pods available.
    all_pods = _rs_replicas(new_rs) + sum(_rs_replicas(rs) for rs in old_rss)
    min_available = desired - max_unavailable
    new_unavailable = _rs_replicas(new_rs) - _available(new_rs)
    budget = all_pods - min_available - new_unavailable
    for rs in sorted(old_rss, key=lambda r: int((r["metadata"].get("annotations") or {}).get(REVISION, "0"))):
        if budget <= 0:
            break
        replicas = _rs_replicas(rs)
        if replicas == 0:
            continue
        # Unavailable old pods go first and do not count against availability.
        reduce = min(replicas, budget)
        _set_rs_replicas(ctl, dep, rs, replicas - reduce)
        budget -= reduce


def _create_replica_set(ctl: FakeController, dep: Mapping[str, Any], revision_hash: str, old_rss: list[dict[str, Any]],
                        replicas: int) -> dict[str, Any] | None:  # fmt: skip
    meta, spec = dep["metadata"], dep["spec"]
    template = clone(spec.get("template") or {})
    labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": revision_hash}
    template.setdefault("metadata", {})["labels"] = labels
    selector = clone(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), "pod-template-hash": revision_hash}
    revision = 1 + max(
        (int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in old_rss), default=0
    )
    annotations = {
        **{
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        },
        REVISION: str(revision),
        "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
        "deployment.kubernetes.io/max-replicas": str(
            spec.get("replicas", 1)
            + _resolve(
                ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"),
                spec.get("replicas", 1),
                round_up=True,
            )
        ),
    }
    rs_name = f"{meta['name']}-{revision_hash}"
    try:
        rs = ctl.create(
            REPLICASET,
            meta["namespace"],
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [owner_ref(dep)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                    "selector": selector,
                    "template": template,
                },
            },
        )
    except ApiStatusError as e:
        ctl.event(
            dep,
            "Warning",
            "FailedCreate",
            f"Failed to create new replica set {rs_name!r}: {e.message}",
            "deployment-controller",
        )
        return None
    ctl.event(
        dep,
        "Normal",
        "ScalingReplicaSet",
        f"Scaled up replica set {rs_name} from 0 to {replicas}",
        "deployment-controller",
    )
    return rs


def _write_deployment_status(ctl: FakeController, dep: dict[str, Any], new_rs: Mapping[str, Any] | None, desired: int,
                             generation: int, max_unavailable: int) -> None:  # fmt: skip
    meta, spec = dep["metadata"], dep.get("spec") or {}
    ns, name = meta["namespace"], meta["name"]
    rss = list(_owned(ctl, REPLICASET, dep))
    status_of = [rs.get("status") or {} for rs in rss]
    new_status = (new_rs or {}).get("status") or {}
    available = sum(int(s.get("availableReplicas", 0)) for s in status_of)
    total_spec = sum(_rs_replicas(rs) for rs in rss)
    replicas = sum(int(s.get("replicas", 0)) for s in status_of)
    updated = int(new_status.get("replicas", 0)) if new_rs else 0
    ready = sum(int(s.get("readyReplicas", 0)) for s in status_of)
    rs_name = new_rs["metadata"]["name"] if new_rs else name
    complete = (
        new_rs is not None
        and updated == desired
        and replicas == desired
        and int(new_status.get("availableReplicas", 0)) == desired
        and new_status.get("observedGeneration", 0) >= new_rs["metadata"].get("generation", 1)
    )
    old = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
    if available >= desired - max_unavailable:
        avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    if spec.get("paused"):
        progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
    elif ctl.deadlines.get((ns, name)) == generation:
        progressing = (
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{rs_name}" has timed out progressing.',
        )
    elif complete:
        progressing = (
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
        )
    else:
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
    conditions = [
        _condition(old.get("Available"), "Available", *avail),
        _condition(old.get("Progressing"), "Progressing", *progressing),
    ]
    failure = next(
        (
            c
            for rs in rss
            for c in (rs.get("status") or {}).get("conditions") or []
            if c["type"] == "ReplicaFailure" and c["status"] == "True"
        ),
        None,
    )
    if failure is not None:
        conditions.append(
            _condition(
                old.get("ReplicaFailure"), "ReplicaFailure", "True", failure["reason"], failure["message"]
            )
        )
    status = _nonzero(
        {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, total_spec - available)
            if total_spec
            else max(0, desired - available),
        }
    )
    status["conditions"] = conditions
    ctl.write_status(DEPLOYMENT, dep, status)


# ---------------------------------------------------------------- ReplicaSets


def reconcile_replicaset(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    rs = store.find(REPLICASET, namespace, name)
    if rs is None or rs["metadata"].get("deletionTimestamp"):
        return
    ns = rs["metadata"]["namespace"]
    desired = _rs_replicas(rs)
    pods = [p for p in _owned(ctl, POD, rs) if not p["metadata"].get("deletionTimestamp")]
    active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    failure: str | None = None
    if len(active) < desired:
        template = (rs.get("spec") or {}).get("template") or {}
        serial = 0
        for _ in range(desired - len(active)):
            # Deterministic names (the real controller uses generateName): a failing creation is
            # retried under the same name, so its FailedCreate event and condition are stable.
            while True:
                serial += 1
                pod_name = f"{rs['metadata']['name']}-{_suffix(rs['metadata']['uid'], serial)}"
                if store.find(POD, ns, pod_name) is None:
                    break
            try:
                pod = _create_pod(ctl, rs, template, name=pod_name)
            except ApiStatusError as e:
                failure = e.message
                ctl.event(
                    rs, "Warning", "FailedCreate", f"Error creating: {e.message}", "replicaset-controller"
                )
                ctl.blocked.setdefault(ns, set()).add(("replicaset", rs["metadata"]["name"]))
                break
            active.append(pod)
            ctl.event(
                rs,
                "Normal",
                "SuccessfulCreate",
                f"Created pod: {pod['metadata']['name']}",
                "replicaset-controller",
            )
    elif len(active) > desired:
        for pod in sorted(active, key=_deletion_rank)[: len(active) - desired]:
            ctl.delete(POD, ns, pod["metadata"]["name"])
            ctl.event(
                rs,
                "Normal",
                "SuccessfulDelete",
                f"Deleted pod: {pod['metadata']['name']}",
                "replicaset-controller",
            )
        active = [p for p in _owned(ctl, POD, rs) if not p["metadata"].get("deletionTimestamp")]
    ready = sum(is_ready(p) for p in active)
    old_conditions = {c["type"]: c for c in (rs.get("status") or {}).get("conditions") or []}
    status: dict[str, Any] = _nonzero(
        {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        },
        keep=("observedGeneration", "replicas"),
    )
    if failure is not None:
        status["conditions"] = [
            _condition(
                old_conditions.get("ReplicaFailure"),
                "ReplicaFailure",
                "True",
                "FailedCreate",
                failure,
                update_time=False,
            )
        ]
    elif "ReplicaFailure" in old_conditions and len(active) < desired:
        status["conditions"] = [old_conditions["ReplicaFailure"]]
    ctl.write_status(REPLICASET, rs, status)


def _suffix(seed: str, serial: int) -> str:
    digest = hashlib.sha256(f"{seed}/{serial}".encode()).hexdigest()
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in digest[:5])


def _deletion_rank(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """controller.ActivePods ordering: unscheduled, pending, not ready first; newer before older."""
    status = pod.get("status") or {}
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0),
        is_ready(pod),
        "".join(chr(255 - ord(c)) for c in pod["metadata"]["creationTimestamp"] + pod["metadata"]["name"]),
    )


def _create_pod(ctl: FakeController, owner: Mapping[str, Any], template: Mapping[str, Any], *, generate: str | None = None,
                name: str | None = None, extra_labels: Mapping[str, str] | None = None,
                extra_spec: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {
        "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
        "ownerReferences": [owner_ref(owner)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = clone(tmeta["annotations"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate
    spec = clone(template.get("spec") or {})
    spec.update(clone(dict(extra_spec or {})))
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    from tools.fakekube import defaults

    defaults.pod(body)
    return ctl.create(POD, owner["metadata"]["namespace"], body)


# ---------------------------------------------------------------- StatefulSets


def reconcile_statefulset(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    sts = store.find(STATEFULSET, namespace, name)
    if sts is None or sts["metadata"].get("deletionTimestamp"):
        return
    ns = sts["metadata"]["namespace"]
    spec = sts.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    template = spec.get("template") or {}
    from tools.fakekube.controller import template_hash

    update_revision = f"{name}-{template_hash(template)}"
    current_revision = (sts.get("status") or {}).get("currentRevision") or update_revision
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    pods = {p["metadata"]["name"]: p for p in _owned(ctl, POD, sts)}

    def ordinal(pod_name: str) -> int:
        return int(pod_name.rsplit("-", 1)[1])

    def revision_of(p: Mapping[str, Any]) -> str:
        return p["metadata"]["labels"].get("controller-revision-hash", "")

    # Scale down: the highest ordinal first, one at a time (OrderedReady).
    for pod_name in sorted((n for n in pods if ordinal(n) >= desired), key=ordinal, reverse=True):
        if not pods[pod_name]["metadata"].get("deletionTimestamp"):
            ctl.delete(POD, ns, pod_name)
        if ordered:
            break
    # Create missing ordinals in order, each only once the previous one is Running and Ready.
    for i in range(desired):
        pod_name = f"{name}-{i}"
        pod = pods.get(pod_name)
        if pod is None:
            if not _ensure_claims(ctl, sts, pod_name):
                break
            try:
                pods[pod_name] = _create_statefulset_pod(
                    ctl, sts, pod_name, i, update_revision if i >= _partition(spec) else current_revision
                )
            except ApiStatusError as e:
                ctl.event(
                    sts,
                    "Warning",
                    "FailedCreate",
                    f"create Pod {pod_name} in StatefulSet {name} failed error: {e.message}",
                    "statefulset-controller",
                )
                ctl.blocked.setdefault(ns, set()).add(("statefulset", name))
                break
            ctl.event(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Pod {pod_name} in StatefulSet {name} successful",
                "statefulset-controller",
            )
            if ordered:
                break
        elif ordered and (pod["metadata"].get("deletionTimestamp") or not is_ready(pod)):
            break
    # RollingUpdate: highest ordinal first, one at a time, only while every pod is ready.
    live = [p for n, p in pods.items() if ordinal(n) < desired]
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if (
        strategy == "RollingUpdate"
        and len(live) == desired
        and all(is_ready(p) and not p["metadata"].get("deletionTimestamp") for p in live)
    ):
        for i in reversed(range(_partition(spec), desired)):
            pod = pods[f"{name}-{i}"]
            if revision_of(pod) != update_revision:
                ctl.delete(POD, ns, pod["metadata"]["name"])
                break
    pods = {p["metadata"]["name"]: p for p in _owned(ctl, POD, sts)}
    counted = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
    ready = sum(is_ready(p) for p in counted)
    updated = sum(1 for p in counted if revision_of(p) == update_revision)
    if updated == desired and ready == desired:
        current_revision = update_revision
    status = _nonzero(
        {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(counted),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(1 for p in counted if revision_of(p) == current_revision),
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        },
        keep=("observedGeneration", "replicas", "availableReplicas", "collisionCount"),
    )
    ctl.write_status(STATEFULSET, sts, status)


def _partition(spec: Mapping[str, Any]) -> int:
    return int((((spec.get("updateStrategy") or {}).get("rollingUpdate")) or {}).get("partition", 0))


def _create_statefulset_pod(
    ctl: FakeController, sts: Mapping[str, Any], pod_name: str, ordinal: int, revision: str
) -> dict[str, Any]:
    spec = sts["spec"]
    template = clone(spec.get("template") or {})
    volumes = list((template.get("spec") or {}).get("volumes") or [])
    names = {v.get("name") for v in volumes}
    for tpl in spec.get("volumeClaimTemplates") or []:
        claim = (tpl.get("metadata") or {}).get("name") or ""  # unnamed: its claim creation fails first
        if claim not in names:
            volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{pod_name}"}})
    extra_spec: dict[str, Any] = {"hostname": pod_name}
    if spec.get("serviceName"):
        extra_spec["subdomain"] = spec["serviceName"]
    if volumes:
        extra_spec["volumes"] = volumes
    labels = {
        "controller-revision-hash": revision,
        "statefulset.kubernetes.io/pod-name": pod_name,
        "apps.kubernetes.io/pod-index": str(ordinal),
    }
    return _create_pod(ctl, sts, template, name=pod_name, extra_labels=labels, extra_spec=extra_spec)


def _ensure_claims(ctl: FakeController, sts: Mapping[str, Any], pod_name: str) -> bool:
    ns = sts["metadata"]["namespace"]
    spec = sts["spec"]
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for tpl in spec.get("volumeClaimTemplates") or []:
        # The API server does not check template names; an unnamed one gives an invalid claim name
        # ("-db-0") and the controller's create fails like a real one (FailedCreate).
        claim = f"{(tpl.get('metadata') or {}).get('name') or ''}-{pod_name}"
        if ctl.store.find(PVC, ns, claim) is not None:
            continue
        # Like the StatefulSet controller: the template's labels plus the set's selector.
        meta: dict[str, Any] = {
            "name": claim,
            "labels": {
                **((tpl.get("metadata") or {}).get("labels") or {}),
                **((spec.get("selector") or {}).get("matchLabels") or {}),
            },
        }
        if (tpl.get("metadata") or {}).get("annotations"):
            meta["annotations"] = clone(tpl["metadata"]["annotations"])
        if policy.get("whenDeleted") == "Delete":
            meta["ownerReferences"] = [{**owner_ref(sts), "controller": True, "blockOwnerDeletion": True}]
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": clone(tpl.get("spec") or {}),
        }
        try:
            from tools.fakekube import validation

            problems = validation.validate(PVC, {**body, "metadata": {**meta, "namespace": ns}})
            if problems:
                from tools.fakekube import errors

                raise errors.invalid(PVC, claim, problems)
            ctl.create(PVC, ns, body)
        except ApiStatusError as e:
            ctl.event(sts, "Warning", "FailedCreate",
                      f"create Claim {claim} for Pod {pod_name} in StatefulSet {sts['metadata']['name']} failed error: {e.message}",
                      "statefulset-controller")  # fmt: skip
            ctl.blocked.setdefault(ns, set()).add(("statefulset", sts["metadata"]["name"]))
            return False
        ctl.event(sts, "Normal", "SuccessfulCreate",
                  f"create Claim {claim} Pod {pod_name} in StatefulSet {sts['metadata']['name']} success", "statefulset-controller")  # fmt: skip
    return True


# ---------------------------------------------------------------- scheduler and kubelet


def _workload_of(ctl: FakeController, pod: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
    """The workload name behaviours are keyed by, and the ReplicaSet/StatefulSet that owns the pod."""
    owner_uid = controller_uid(pod)
    owner = ctl.store.by_uid(owner_uid) if owner_uid else None
    if owner is None:
        return pod["metadata"]["name"], None
    body = owner.body
    if body.get("kind") == "ReplicaSet":
        dep_uid = controller_uid(body)
        dep = ctl.store.by_uid(dep_uid) if dep_uid else None
        return (dep.body["metadata"]["name"] if dep else body["metadata"]["name"]), body
    return body["metadata"]["name"], body


def reconcile_pod(ctl: FakeController, namespace: str | None, name: str) -> None:
    store = ctl.store
    pod = store.find(POD, namespace, name)
    if pod is None:
        return
    ns = pod["metadata"]["namespace"]
    if pod["metadata"].get("deletionTimestamp"):
        # The kubelet stops the containers and confirms the deletion (grace period elapsed).
        if not pod["metadata"].get("finalizers"):
            store.finalize(POD, ns, name)
        return
    workload, owner = _workload_of(ctl, pod)
    template = (owner or {}).get("spec", {}).get("template") or {"spec": pod.get("spec")}
    behaviour = ctl.behaviour_for(ns, workload, template)
    if not (pod.get("spec") or {}).get("nodeName"):
        node, message = _schedule(ctl, pod, behaviour)
        if node is None:
            status = kubelet.unschedulable_status(pod, message)
            if (pod.get("status") or {}).get("conditions") != status["conditions"]:
                pod = ctl.write_status(POD, pod, status, manager="kube-scheduler")
                ctl.event(pod, "Warning", "FailedScheduling", message, "default-scheduler")
            return
        pod = ctl.update(POD, {**pod, "spec": {**pod["spec"], "nodeName": node}}, manager="kube-scheduler")
        ctl.event(
            pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}", "default-scheduler"
        )
    secrets = {n: store.find(SECRET, ns, n) for n in kubelet.referenced(pod, "Secret")}
    configmaps = {n: store.find(CONFIGMAP, ns, n) for n in kubelet.referenced(pod, "ConfigMap")}
    env_problem, volume_problem = kubelet.config_problems(
        pod,
        {k: v for k, v in secrets.items() if v is not None},
        {k: v for k, v in configmaps.items() if v is not None},
    )
    waiting = (
        kubelet.image_problem(pod, ctl.image_users, ctl.default_image_user) or env_problem or volume_problem
    )
    effective = behaviour
    hold = ctl.hold_for(ns, workload)
    if waiting is None and hold is not None and behaviour.state is PodState.READY and not is_ready(pod):
        # A held rollout: at most `hold` pods of the newest revision pass their readiness probe.
        # Pods that are already ready stay ready, and older revisions are not held.
        newest = owner is None or owner.get("kind") != "ReplicaSet" or _is_newest_rs(ctl, owner)
        owner_uid = (owner or {}).get("metadata", {}).get("uid", "")
        siblings = [p for p in store.owned_by(POD, ns, owner_uid) if p["metadata"]["name"] != name]
        if owner is not None and owner.get("kind") == "StatefulSet":
            revision = pod["metadata"]["labels"].get("controller-revision-hash")
            siblings = [
                p for p in siblings if p["metadata"]["labels"].get("controller-revision-hash") == revision
            ]
        if newest and sum(is_ready(p) for p in siblings) >= hold:
            effective = PodBehaviour(PodState.UNREADY)
    probe_error = (
        kubelet.probe_problem(pod) if waiting is None and effective.state is PodState.READY else None
    )
    if probe_error is not None:
        effective = PodBehaviour(PodState.UNREADY, probe_error)
    status = kubelet.pod_status(pod, effective, waiting)
    if pod.get("status") == status:
        return
    pod = ctl.write_status(POD, pod, status, manager="kubelet")
    _pod_event(ctl, pod, effective, waiting)
    if probe_error is not None:
        ctl.event(pod, "Warning", "Unhealthy", probe_error, "kubelet")


def _is_newest_rs(ctl: FakeController, rs: Mapping[str, Any]) -> bool:
    dep_uid = controller_uid(rs)
    if not dep_uid:
        return True
    siblings = ctl.store.owned_by(REPLICASET, rs["metadata"]["namespace"], dep_uid)
    revision = int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    return all(int((s["metadata"].get("annotations") or {}).get(REVISION, "0")) <= revision for s in siblings)


def _schedule(ctl: FakeController, pod: Mapping[str, Any], behaviour: PodBehaviour) -> tuple[str | None, str]:
    if behaviour.state is PodState.UNSCHEDULABLE:
        return None, behaviour.message or (
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
            "3 No preemption victims found for incoming pod."
        )
    nodes = ctl.store.list(NODE, None)[0]
    ns = pod["metadata"]["namespace"]
    for claim in kubelet.claims_of(pod):
        pvc = ctl.store.find(PVC, ns, claim)
        if pvc is None:
            return None, f'persistentvolumeclaim "{claim}" not found'
        if (pvc.get("status") or {}).get("phase") != "Bound":
            ctl.mark("pvc", ns, claim)
            n = len(nodes)
            return None, (
                f"0/{n} nodes are available: pod has unbound immediate PersistentVolumeClaims. "
                f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
            )
    return kubelet.schedule(pod, nodes, ctl.pods_by_node())


def _pod_event(
    ctl: FakeController, pod: Mapping[str, Any], behaviour: PodBehaviour, waiting: kubelet.Waiting | None
) -> None:
    images = ", ".join(c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or [])
    if waiting is not None:
        if waiting.reason == "ContainerCreating":
            ctl.event(pod, "Warning", "FailedMount", waiting.event_reason, "kubelet")
        else:
            ctl.event(pod, "Warning", waiting.event_reason, waiting.message, "kubelet")
        return
    state = behaviour.state
    if state is PodState.CRASH_LOOP:
        ctl.event(
            pod, "Warning", "BackOff", behaviour.message or "Back-off restarting failed container", "kubelet"
        )
    elif state in (PodState.ERR_IMAGE_PULL, PodState.IMAGE_PULL_BACKOFF):
        ctl.event(
            pod, "Warning", "Failed", behaviour.message or f'Failed to pull image "{images}"', "kubelet"
        )
    elif state in (PodState.READY, PodState.UNREADY):
        ctl.event(
            pod,
            "Normal",
            "Started",
            "Started container " + ", ".join(c["name"] for c in pod["spec"].get("containers") or []),
            "kubelet",
        )
