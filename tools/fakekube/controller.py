"""A controllable stand-in for kube-controller-manager's Deployment and StatefulSet controllers (and kubelet).

Deterministic and timer-free: in automatic mode it reconciles to a fixed point right after every
successful API write, before the HTTP response is sent, so a client that gets its response can already
read the controller's reaction; in manual mode nothing moves until a test calls ``step()``.

Pod states are chosen by the test per workload, per image, or by default. A pod's status is a pure
function of its state and its creation time, so re-reconciling without a change in behaviour is a no-op
(no new resourceVersions, no watch events).

Simplifications (documented in README): a rollout surges all new pods at once and removes old pods one
for one as new pods become ready (maxUnavailable 0); minReadySeconds is ignored; no scheduling, probes,
real time or restart back-off.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.fakekube.kinds import DEPLOYMENT, EVENT, POD, PVC, REPLICASET, STATEFULSET, Kind
from tools.fakekube.store import Store, now

MANAGER = "kube-controller-manager"
NODE = "fakekube-node-1"


class PodState(enum.StrEnum):
    READY = "ready"
    # Running, containers started, readiness probe failing: holds a rollout without failing it.
    UNREADY = "unready"
    PENDING = "pending"  # ContainerCreating
    CRASH_LOOP = "crash-loop"
    ERR_IMAGE_PULL = "err-image-pull"
    IMAGE_PULL_BACKOFF = "image-pull-backoff"
    UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True)
class PodBehaviour:
    state: PodState
    message: str | None = None


def template_hash(template: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # pod-template-hash values look like "5d9c7b8f6c": keep the look, stay deterministic.
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in digest[:10])


def pod_status(pod: Mapping[str, Any], behaviour: PodBehaviour) -> dict[str, Any]:
    """What kubelet would report for this pod in this state (timestamps from the pod, so it is stable)."""
    since = pod["metadata"]["creationTimestamp"]
    containers = pod["spec"].get("containers") or []
    state = behaviour.state

    def cond(type_: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": since}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    if state is PodState.UNSCHEDULABLE:
        msg = (
            behaviour.message
            or "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"
        )
        return {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [cond("PodScheduled", False, "Unschedulable", msg)],
        }

    ready = state is PodState.READY
    statuses = []
    for c in containers:
        image = c.get("image", "")
        cs: dict[str, Any] = {
            "name": c["name"],
            "image": image,
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
        }
        if state in (PodState.READY, PodState.UNREADY):
            cs.update(started=True, state={"running": {"startedAt": since}})
            if ready:
                cs["imageID"] = (
                    f"docker.io/library/{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
                )
        elif state is PodState.CRASH_LOOP:
            message = (
                behaviour.message
                or f"back-off 5m0s restarting failed container={c['name']} pod={pod['metadata']['name']}"
            )
            cs.update(
                started=False,
                restartCount=5,
                state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                lastState={
                    "terminated": {"exitCode": 1, "reason": "Error", "startedAt": since, "finishedAt": since}
                },
            )
        elif state is PodState.ERR_IMAGE_PULL:
            message = behaviour.message or f'failed to pull and unpack image "{image}": not found'
            cs.update(started=False, state={"waiting": {"reason": "ErrImagePull", "message": message}})
        elif state is PodState.IMAGE_PULL_BACKOFF:
            message = behaviour.message or f'Back-off pulling image "{image}"'
            cs.update(started=False, state={"waiting": {"reason": "ImagePullBackOff", "message": message}})
        else:
            cs.update(started=False, state={"waiting": {"reason": "ContainerCreating"}})
        statuses.append(cs)
    not_ready = "containers with unready status: [" + " ".join(c["name"] for c in containers) + "]"
    running = state in (PodState.READY, PodState.UNREADY, PodState.CRASH_LOOP)
    return {
        "phase": "Running" if running else "Pending",
        "hostIP": "10.0.0.10",
        "podIP": "10.244.0.10" if running else None,
        "startTime": since,
        "qosClass": "Burstable",
        "conditions": [
            cond("PodScheduled", True),
            cond("Initialized", True),
            cond(
                "ContainersReady",
                ready,
                None if ready else "ContainersNotReady",
                None if ready else not_ready,
            ),
            cond("Ready", ready, None if ready else "ContainersNotReady", None if ready else not_ready),
        ],
        "containerStatuses": statuses,
    }


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _percent_or_int(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(value)


def _owner_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _suffix(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:5]


class FakeController:
    def __init__(self, store: Store, *, auto: bool = True, max_passes: int = 20) -> None:
        self.store = store
        self.auto = auto
        self.max_passes = max_passes
        self._default = PodBehaviour(PodState.READY)
        self._by_workload: dict[tuple[str, str], PodBehaviour] = {}
        self._by_image: dict[str, PodBehaviour] = {}
        self._holds: dict[tuple[str, str], int] = {}
        # (namespace, name) -> the generation whose rollout timed out.
        self._deadline: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ test controls

    def set_pod_behaviour(
        self,
        state: PodState,
        *,
        image: str | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        message: str | None = None,
    ) -> None:
        """Choose how pods behave: for one workload (namespace+workload), for an image, or by default.

        A workload rule wins over an image rule, which wins over the default. Existing pods follow the
        new rule on the next reconcile.
        """
        behaviour = PodBehaviour(state, message)
        with self.store.lock:
            if workload is not None:
                if namespace is None:
                    raise ValueError("a workload rule needs its namespace")
                self._by_workload[(namespace, workload)] = behaviour
            elif image is not None:
                self._by_image[image] = behaviour
            else:
                self._default = behaviour
            self.after_api_write()

    def clear_pod_behaviours(self) -> None:
        with self.store.lock:
            self._by_workload.clear()
            self._by_image.clear()
            self._default = PodBehaviour(PodState.READY)
            self.after_api_write()

    def hold_rollout(self, namespace: str, name: str, *, ready: int | None) -> None:
        """Let at most ``ready`` pods of the workload's current revision become ready (None releases)."""
        with self.store.lock:
            if ready is None:
                self._holds.pop((namespace, name), None)
            else:
                self._holds[(namespace, name)] = ready
            self.after_api_write()

    def mark_progress_deadline_exceeded(self, namespace: str, name: str) -> None:
        """What the Deployment controller does after spec.progressDeadlineSeconds without progress.

        Sticks until the Deployment's generation changes, like the real condition.
        """
        with self.store.lock:
            dep = self.store.get(DEPLOYMENT, namespace, name)
            self._deadline[(namespace, name)] = dep["metadata"].get("generation", 1)
            self._reconcile_deployment(dep)

    def expire_progress_deadlines(self) -> list[str]:
        """Simulate the passage of progressDeadlineSeconds: every unfinished rollout times out."""
        with self.store.lock:
            expired = []
            for dep in self.store.list(DEPLOYMENT, None)[0]:
                conditions = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
                if conditions.get("Progressing", {}).get("reason") != "NewReplicaSetAvailable":
                    self.mark_progress_deadline_exceeded(
                        dep["metadata"]["namespace"], dep["metadata"]["name"]
                    )
                    expired.append(f"{dep['metadata']['namespace']}/{dep['metadata']['name']}")
            return expired

    def step(self) -> bool:
        """One reconcile pass over every Deployment and StatefulSet. True when anything was written."""
        with self.store.lock:
            before = self.store.resource_version
            for dep in self.store.list(DEPLOYMENT, None)[0]:
                self._reconcile_deployment(dep)
            for sts in self.store.list(STATEFULSET, None)[0]:
                self._reconcile_statefulset(sts)
            return self.store.resource_version != before

    def run_until_stable(self) -> int:
        """Step until a pass writes nothing; returns the number of passes that changed something."""
        with self.store.lock:
            for n in range(self.max_passes):
                if not self.step():
                    return n
            raise RuntimeError(f"the fake controller did not settle within {self.max_passes} passes")

    def after_api_write(self) -> None:
        if self.auto:
            self.run_until_stable()

    # ------------------------------------------------------------------ behaviour resolution

    def behaviour_for(self, namespace: str, workload: str, template: Mapping[str, Any]) -> PodBehaviour:
        if (namespace, workload) in self._by_workload:
            return self._by_workload[(namespace, workload)]
        for c in (template.get("spec") or {}).get("containers") or []:
            if c.get("image") in self._by_image:
                return self._by_image[c["image"]]
        return self._default

    # ------------------------------------------------------------------ Deployments

    def _reconcile_deployment(self, dep: dict[str, Any]) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        generation = meta.get("generation", 1)
        if self._deadline.get((ns, name), generation) != generation:
            del self._deadline[(ns, name)]  # a new spec restarts progress, as in the real controller
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        revision_hash = template_hash(template)
        replica_sets = self.store.owned_by(REPLICASET, ns, uid)
        new_rs = next(
            (rs for rs in replica_sets if rs["metadata"]["labels"].get("pod-template-hash") == revision_hash),
            None,
        )
        if not spec.get("paused"):
            if new_rs is None:
                new_rs = self._create_replica_set(dep, revision_hash, len(replica_sets) + 1, desired)
                replica_sets.append(new_rs)
            behaviour = self.behaviour_for(ns, name, template)
            hold = self._holds.get((ns, name))
            new_pods = self._sync_pods(new_rs, desired, template, behaviour, hold)
            new_ready = sum(is_ready(p) for p in new_pods)
            # Old pods go one for one as new ones become ready (a surge rollout with maxUnavailable 0).
            keep_old = max(0, desired - new_ready)
            for rs in replica_sets:
                if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                    continue
                old_pods = self.store.owned_by(POD, ns, rs["metadata"]["uid"])
                keep = min(len(old_pods), keep_old)
                keep_old -= keep
                old_behaviour = self.behaviour_for(ns, name, rs["spec"]["template"])
                self._sync_pods(rs, keep, rs["spec"]["template"], old_behaviour, None)
        self._write_deployment_status(dep, new_rs, desired, generation)

    def _create_replica_set(
        self, dep: Mapping[str, Any], revision_hash: str, revision: int, replicas: int
    ) -> dict[str, Any]:
        meta, spec = dep["metadata"], dep["spec"]
        template = copy.deepcopy(spec.get("template") or {})
        labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": revision_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = revision_hash
        rs_name = f"{meta['name']}-{revision_hash}"
        rs = self.store.create(
            REPLICASET,
            meta["namespace"],
            {
                "metadata": {
                    "name": rs_name,
                    "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                    "ownerReferences": [_owner_ref(dep)],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            },
            manager=MANAGER,
            internal=True,
        )
        self._event(
            dep, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to {replicas}"
        )
        return rs

    def _sync_pods(
        self,
        rs: dict[str, Any],
        replicas: int,
        template: Mapping[str, Any],
        behaviour: PodBehaviour,
        hold: int | None,
    ) -> list[dict[str, Any]]:
        """Make the ReplicaSet own ``replicas`` pods in the given behaviour; returns its pods."""
        ns, rs_uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
        if rs["spec"].get("replicas") != replicas:
            rs = self.store.replace(
                REPLICASET,
                ns,
                rs["metadata"]["name"],
                {**rs, "spec": {**rs["spec"], "replicas": replicas}},
                manager=MANAGER,
                internal=True,
            )
        pods = sorted(
            self.store.owned_by(POD, ns, rs_uid),
            key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"],
        )
        for pod in pods[replicas:]:
            self.store.delete(POD, ns, pod["metadata"]["name"])
        pods = pods[:replicas]
        serial = 0
        while len(pods) < replicas:
            serial += 1
            name = f"{rs['metadata']['name']}-{_suffix(rs_uid + str(serial))}"
            if self.store.find(POD, ns, name) is None:
                pods.append(self._create_pod(rs, name, template, {}))
        out = []
        for i, pod in enumerate(pods):
            effective = behaviour
            if hold is not None and i >= hold and behaviour.state is PodState.READY:
                effective = PodBehaviour(PodState.UNREADY)
            out.append(self._set_pod_state(pod, effective))
        ready = sum(is_ready(p) for p in out)
        status = {
            "replicas": len(out),
            "fullyLabeledReplicas": len(out),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        self._write_status(REPLICASET, rs, status)
        return out

    def _create_pod(
        self,
        owner: Mapping[str, Any],
        name: str,
        template: Mapping[str, Any],
        extra_labels: Mapping[str, str],
    ) -> dict[str, Any]:
        tmeta = template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), **extra_labels}
        if owner["kind"] == "ReplicaSet":
            labels["pod-template-hash"] = owner["metadata"]["labels"]["pod-template-hash"]
        spec = copy.deepcopy(template.get("spec") or {})
        return self.store.create(
            POD,
            owner["metadata"]["namespace"],
            {
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": copy.deepcopy(tmeta.get("annotations") or {}),
                    "ownerReferences": [_owner_ref(owner)],
                },
                "spec": spec,
                "status": {"phase": "Pending"},
            },
            manager=MANAGER,
            internal=True,
        )

    def _set_pod_state(self, pod: dict[str, Any], behaviour: PodBehaviour) -> dict[str, Any]:
        status = {k: v for k, v in pod_status(pod, behaviour).items() if v is not None}
        if behaviour.state is not PodState.UNSCHEDULABLE and pod["spec"].get("nodeName") != NODE:
            pod = self.store.replace(
                POD,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                {**pod, "spec": {**pod["spec"], "nodeName": NODE}},
                manager="kube-scheduler",
                internal=True,
            )
        if pod.get("status") == status:
            return pod
        pod = self._write_status(POD, pod, status, manager="kubelet")
        self._pod_event(pod, behaviour)
        return pod

    def _pod_event(self, pod: Mapping[str, Any], behaviour: PodBehaviour) -> None:
        images = ", ".join(c.get("image", "") for c in pod["spec"].get("containers") or [])
        state = behaviour.state
        if state is PodState.CRASH_LOOP:
            self._event(
                pod, "Warning", "BackOff", behaviour.message or "Back-off restarting failed container"
            )
        elif state in (PodState.ERR_IMAGE_PULL, PodState.IMAGE_PULL_BACKOFF):
            self._event(pod, "Warning", "Failed", behaviour.message or f'Failed to pull image "{images}"')
        elif state is PodState.UNSCHEDULABLE:
            status = pod.get("status") or {}
            self._event(pod, "Warning", "FailedScheduling", status["conditions"][0]["message"])

    def _write_deployment_status(
        self, dep: dict[str, Any], new_rs: Mapping[str, Any] | None, desired: int, generation: int
    ) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        pods = [
            p
            for rs in self.store.owned_by(REPLICASET, ns, meta["uid"])
            for p in self.store.owned_by(POD, ns, rs["metadata"]["uid"])
        ]
        new_uid = new_rs["metadata"]["uid"] if new_rs else None
        updated = sum(1 for p in pods if new_uid in {r["uid"] for r in p["metadata"]["ownerReferences"]})
        ready = sum(is_ready(p) for p in pods)
        max_unavailable = _percent_or_int(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            desired,
            round_up=False,
        )
        rs_name = new_rs["metadata"]["name"] if new_rs else name
        complete = updated == desired and len(pods) == desired and ready == desired
        old = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        if ready >= desired - max_unavailable:
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        if spec.get("paused"):
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif self._deadline.get((ns, name)) == generation:
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
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                _condition(old.get("Available"), "Available", *available),
                _condition(old.get("Progressing"), "Progressing", *progressing),
            ],
        }
        if desired - ready > 0:
            status["unavailableReplicas"] = desired - ready
        status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
        if dep.get("status") != status:
            self._write_status(DEPLOYMENT, dep, status)

    # ------------------------------------------------------------------ StatefulSets

    def _reconcile_statefulset(self, sts: dict[str, Any]) -> None:
        meta, spec = sts["metadata"], sts.get("spec") or {}
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        update_revision = f"{name}-{template_hash(template)}"
        current_revision = (sts.get("status") or {}).get("currentRevision") or update_revision
        behaviour = self.behaviour_for(ns, name, template)
        hold = self._holds.get((ns, name))
        pods = {p["metadata"]["name"]: p for p in self.store.owned_by(POD, ns, uid)}
        for pod_name in [n for n in pods if int(n.rsplit("-", 1)[1]) >= desired]:
            self.store.delete(POD, ns, pod_name)
            del pods[pod_name]

        def revision_of(p: Mapping[str, Any]) -> str:
            return p["metadata"]["labels"].get("controller-revision-hash", "")

        def state_for(p: Mapping[str, Any], ordinal: int) -> PodBehaviour | None:
            """None for old-revision pods: they were running before the update and stay as they are."""
            if revision_of(p) != update_revision:
                return None
            ready_limit = hold if hold is not None else desired
            updated_above = sum(
                1
                for q in pods.values()
                if revision_of(q) == update_revision
                and int(q["metadata"]["name"].rsplit("-", 1)[1]) > ordinal
            )
            if behaviour.state is PodState.READY and updated_above >= ready_limit:
                return PodBehaviour(PodState.UNREADY)
            return behaviour

        # OrderedReady: create ordinals in order, each only after the previous one is ready.
        for ordinal in range(desired):
            pod_name = f"{name}-{ordinal}"
            if pod_name not in pods:
                self._ensure_claims(sts, pod_name)
                labels = {
                    "controller-revision-hash": update_revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(ordinal),
                }
                pods[pod_name] = self._create_pod(sts, pod_name, template, labels)
            wanted = state_for(pods[pod_name], ordinal)
            if wanted is not None:
                pods[pod_name] = self._set_pod_state(pods[pod_name], wanted)
            if not is_ready(pods[pod_name]):
                break
        # RollingUpdate: highest ordinal first, one at a time, only while every pod is ready.
        for ordinal in reversed(range(desired)):
            pod_name = f"{name}-{ordinal}"
            pod = pods.get(pod_name)
            if pod is None or not all(is_ready(p) for p in pods.values()):
                break
            if revision_of(pod) == update_revision:
                continue
            self.store.delete(POD, ns, pod_name)
            labels = {
                "controller-revision-hash": update_revision,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(ordinal),
            }
            new_pod = self._create_pod(sts, pod_name, template, labels)
            pods[pod_name] = self._set_pod_state(new_pod, state_for(new_pod, ordinal) or behaviour)
        ready = sum(is_ready(p) for p in pods.values())
        updated = sum(1 for p in pods.values() if revision_of(p) == update_revision)
        if updated == desired and ready == desired:
            current_revision = update_revision
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(1 for p in pods.values() if revision_of(p) == current_revision),
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        }
        if sts.get("status") != status:
            self._write_status(STATEFULSET, sts, status)

    def _write_status(
        self, kind: Kind, obj: Mapping[str, Any], status: dict[str, Any], *, manager: str = MANAGER
    ) -> dict[str, Any]:
        """What a controller does: write the status subresource, never the spec."""
        meta = obj["metadata"]
        return self.store.replace(
            kind,
            meta["namespace"],
            meta["name"],
            {**obj, "status": status},
            manager=manager,
            subresource="status",
            internal=True,
        )

    def _ensure_claims(self, sts: Mapping[str, Any], pod_name: str) -> None:
        ns = sts["metadata"]["namespace"]
        for tpl in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            claim = f"{tpl['metadata']['name']}-{pod_name}"
            if self.store.find(PVC, ns, claim) is None:
                # No ownerReferences: like the default retention policy, claims outlive their StatefulSet.
                body = {
                    "metadata": {
                        "name": claim,
                        # Like the StatefulSet controller: the template's labels plus the set's selector.
                        "labels": {
                            **copy.deepcopy((tpl.get("metadata") or {}).get("labels") or {}),
                            **copy.deepcopy(sts["spec"]["selector"].get("matchLabels") or {}),
                        },
                    },
                    "spec": copy.deepcopy(tpl.get("spec") or {}),
                    "status": {"phase": "Bound"},
                }
                self.store.create(PVC, ns, body, manager=MANAGER, internal=True)

    # ------------------------------------------------------------------ Events

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        name = f"{meta['name']}.{hashlib.sha256((meta['uid'] + reason + message).encode()).hexdigest()[:16]}"
        if self.store.find(EVENT, meta["namespace"], name) is not None:
            return
        stamp = now()
        kind: Kind = DEPLOYMENT if obj.get("kind") == "Deployment" else POD
        self.store.create(
            EVENT,
            meta["namespace"],
            {
                "metadata": {"name": name},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", kind.api_version),
                    "kind": obj.get("kind", kind.kind),
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {
                    "component": "deployment-controller" if obj.get("kind") == "Deployment" else "kubelet"
                },
                "reportingComponent": MANAGER,
            },
            manager=MANAGER,
            internal=True,
        )


def _condition(
    old: Mapping[str, Any] | None, type_: str, status: str, reason: str, message: str
) -> dict[str, Any]:
    """A condition whose timestamps move only when it changes, so an unchanged reconcile writes nothing."""
    stamp = now()
    transition = old["lastTransitionTime"] if old and old.get("status") == status else stamp
    update = (
        old["lastUpdateTime"]
        if old and old.get("reason") == reason and old.get("message") == message
        else stamp
    )
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
