"""A controllable stand-in for kube-controller-manager, the scheduler and the kubelet.

Deterministic and timer-free. Every committed write marks only the objects it affects as dirty (a
Deployment write marks that Deployment; a pod write marks the pod and its ReplicaSet; a Secret write
marks the pods that reference it; ...), and a *step* reconciles the dirty objects once, queueing
whatever its own writes affect for the next step. So a write costs work proportional to what it
touches, not to the size of the cluster.

* ``auto=True``: the controllers run to a fixed point *after* the response of each API write has been
  sent, and before any later request is served. A write's own response therefore shows the object
  before any controller reacted (``status.observedGeneration`` lags ``metadata.generation``), and the
  next request sees the settled cluster. Test controls (``set_pod_behaviour``...) settle immediately.
* ``auto=False``: nothing moves until a test calls ``step()`` (one pass) or ``run_until_stable()``.

The reconcilers themselves live in ``workload_controllers.py`` (Deployments, ReplicaSets,
StatefulSets, scheduler and kubelet) and ``cluster_controllers.py`` (garbage collector, namespaces,
volumes, autoscaler, CRDs, ServiceAccount tokens, quota status).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from tools.fakekube import cluster_controllers as cluster
from tools.fakekube import workload_controllers as workloads
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.kinds import EVENT, Kind
from tools.fakekube.kubelet import DEFAULT_NODES, NodeSpec, PodBehaviour, PodState, is_ready, pod_status
from tools.fakekube.store import Store, WriteOptions, now

__all__ = [
    "FakeController",
    "NodeSpec",
    "PodBehaviour",
    "PodState",
    "is_ready",
    "pod_status",
    "template_hash",
]

MANAGER = "kube-controller-manager"
QueueKey = tuple[str | None, str]  # (namespace, name)

# The order a step visits the controllers in (it matters only for how many steps a change takes).
QUEUES = (
    "crd",
    "namespace",
    "token",
    "gc",
    "deployment",
    "replicaset",
    "statefulset",
    "pvc",
    "pod",
    "hpa",
    "quota",
)


def template_hash(template: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # pod-template-hash values look like "5d9c7b8f6c": keep the look, stay deterministic.
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in digest[:10])


class FakeController:
    def __init__(
        self,
        store: Store,
        *,
        auto: bool = True,
        max_passes: int = 200,
        default_image_user: str = "0",
    ) -> None:
        self.store = store
        self.auto = auto
        self.max_passes = max_passes
        self.default_image_user = default_image_user
        self._queues: dict[str, dict[QueueKey, None]] = {q: {} for q in QUEUES}
        self._default = PodBehaviour(PodState.READY)
        self._by_workload: dict[tuple[str, str], PodBehaviour] = {}
        self._by_image: dict[str, PodBehaviour] = {}
        self.image_users: dict[str, str] = {}
        self._holds: dict[tuple[str, str], int] = {}
        # (namespace, name) -> the generation whose rollout timed out.
        self.deadlines: dict[tuple[str, str], int] = {}
        # (namespace, hpa name) -> the replica count the metrics recommend.
        self.recommendations: dict[tuple[str, str], int] = {}
        self._settling = False
        # Indexes the controllers keep from the commit stream (see cluster_controllers.route).
        self.refs: dict[tuple[str | None, str, str], set[str]] = {}  # (ns, kind, name) -> pods using it
        self.node_pods: dict[str, dict[tuple[str | None, str], dict[str, Any]]] = {}
        self.unscheduled: set[tuple[str | None, str]] = set()
        self.pending_claims: set[tuple[str | None, str]] = set()
        self.hpa_targets: dict[tuple[str | None, str], tuple[str | None, str | None]] = {}
        self.quota_namespaces: set[str] = set()
        # Workloads whose last pod creation failed, by namespace: retried when a quota, limit range
        # or ServiceAccount there changes (the real controllers retry with back-off).
        self.blocked: dict[str, set[tuple[str, str]]] = {}
        self.tokens: Any = None  # auth.Tokens, set by FakeKube
        store.hooks.append(self._on_commit)

    # ------------------------------------------------------------------ dirty tracking

    def mark(self, queue: str, namespace: str | None, name: str) -> None:
        self._queues[queue][(namespace, name)] = None

    @property
    def pending(self) -> bool:
        return any(self._queues.values())

    def _on_commit(self, kind: Kind, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        cluster.route(self, kind, old, new)

    def pods_by_node(self) -> dict[str, list[dict[str, Any]]]:
        return {node: list(pods.values()) for node, pods in self.node_pods.items()}

    # ------------------------------------------------------------------ running

    def step(self) -> bool:
        """One reconcile pass over what is dirty. True when anything was written."""
        with self.store.lock:
            before = self.store.current_rv
            work = {q: list(items) for q, items in self._queues.items()}
            for items in self._queues.values():
                items.clear()
            for queue in QUEUES:
                handler = _HANDLERS[queue]
                for namespace, name in work[queue]:
                    handler(self, namespace, name)
            return self.store.current_rv != before

    def run_until_stable(self) -> int:
        """Step until nothing is dirty; returns the number of passes that changed something."""
        with self.store.lock:
            changed = 0
            for _ in range(self.max_passes):
                if not self.pending:
                    return changed
                if self.step():
                    changed += 1
            raise RuntimeError(f"the fake controllers did not settle within {self.max_passes} passes")

    def settle(self) -> None:
        """Automatic mode: reconcile to a fixed point (called by the HTTP layer around requests).

        Blocks while another thread settles (the store lock), so whoever returns sees the fixed point."""
        if not self.auto:
            return
        with self.store.lock:
            if self._settling or not self.pending:
                return
            self._settling = True
            try:
                self.run_until_stable()
            finally:
                self._settling = False

    def resync(self) -> None:
        """Mark every workload, pod and HPA dirty (what a controller restart would do)."""
        with self.store.lock:
            for queue, kind_name in (
                ("deployment", "deployments"),
                ("replicaset", "replicasets"),
                ("statefulset", "statefulsets"),
                ("pod", "pods"),
                ("hpa", "horizontalpodautoscalers"),
            ):
                group = "" if kind_name == "pods" else ("autoscaling" if queue == "hpa" else "apps")
                kind = self.store.kind_of(group, kind_name)
                if kind is None:
                    continue
                for obj in self.store.list(kind, None)[0]:
                    self.mark(queue, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def _changed(self) -> None:
        """A test control changed how things behave: re-reconcile and, in automatic mode, settle."""
        self.resync()
        if self.auto:
            self.run_until_stable()

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
            self._changed()

    def clear_pod_behaviours(self) -> None:
        with self.store.lock:
            self._by_workload.clear()
            self._by_image.clear()
            self._default = PodBehaviour(PodState.READY)
            self._changed()

    def set_image_user(self, image: str, user: str | int) -> None:
        """Declare the user an image runs as (its Dockerfile ``USER``): ``1000``, ``"0"``, ``"app"``.

        The kubelet checks ``runAsNonRoot`` against it: root (the default for images without a USER)
        or a non-numeric user fail with ``CreateContainerConfigError``.
        """
        with self.store.lock:
            self.image_users[image] = str(user)
            self._changed()

    def hold_rollout(self, namespace: str, name: str, *, ready: int | None) -> None:
        """Let at most ``ready`` pods of the workload's current revision become ready (None releases)."""
        with self.store.lock:
            if ready is None:
                self._holds.pop((namespace, name), None)
            else:
                self._holds[(namespace, name)] = ready
            self._changed()

    def hold_for(self, namespace: str, name: str) -> int | None:
        return self._holds.get((namespace, name))

    def mark_progress_deadline_exceeded(self, namespace: str, name: str) -> None:
        """What the Deployment controller does after spec.progressDeadlineSeconds without progress.

        Sticks until the Deployment's generation changes, like the real condition.
        """
        with self.store.lock:
            dep = self.store.get(workloads.DEPLOYMENT, namespace, name)
            self.deadlines[(namespace, name)] = dep["metadata"].get("generation", 1)
            self.mark("deployment", namespace, name)
            if self.auto:
                self.run_until_stable()

    def expire_progress_deadlines(self) -> list[str]:
        """Simulate the passage of progressDeadlineSeconds: every unfinished rollout times out."""
        with self.store.lock:
            expired = []
            for dep in self.store.list(workloads.DEPLOYMENT, None)[0]:
                conditions = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
                if conditions.get("Progressing", {}).get("reason") != "NewReplicaSetAvailable":
                    ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
                    self.deadlines[(ns, name)] = dep["metadata"].get("generation", 1)
                    self.mark("deployment", ns, name)
                    expired.append(f"{ns}/{name}")
            if self.auto:
                self.run_until_stable()
            return expired

    def set_metric_recommendation(self, namespace: str, hpa: str, replicas: int | None) -> None:
        """What the HPA's metrics would recommend (None: no metrics, like a cluster without
        metrics-server). The fake HPA controller clamps it into minReplicas..maxReplicas."""
        with self.store.lock:
            if replicas is None:
                self.recommendations.pop((namespace, hpa), None)
            else:
                self.recommendations[(namespace, hpa)] = replicas
            self.mark("hpa", namespace, hpa)
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

    # ------------------------------------------------------------------ writes as a controller

    def opts(self, manager: str = MANAGER, subresource: str | None = None) -> WriteOptions:
        return WriteOptions(manager=manager, internal=True, subresource=subresource)

    def create(
        self, kind: Kind, namespace: str | None, body: dict[str, Any], manager: str = MANAGER
    ) -> dict[str, Any]:
        """Create through the full pipeline (validation and admission apply to pods): may raise."""
        return self.store.create(kind, namespace, body, self.opts(manager)).stored.body

    def update(self, kind: Kind, obj: Mapping[str, Any], manager: str = MANAGER) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.store.replace(
            kind, meta.get("namespace"), meta["name"], copy.copy(dict(obj)), self.opts(manager)
        ).stored.body

    def write_status(
        self, kind: Kind, obj: Mapping[str, Any], status: dict[str, Any], manager: str = MANAGER
    ) -> dict[str, Any]:
        """What a controller does: write the status subresource, never the spec."""
        if obj.get("status") == status:
            return dict(obj)
        meta = obj["metadata"]
        return self.store.replace(
            kind, meta.get("namespace"), meta["name"], {**obj, "status": status}, self.opts(manager, "status")
        ).stored.body

    def delete(self, kind: Kind, namespace: str | None, name: str, propagation: str | None = None) -> None:
        try:
            self.store.delete(kind, namespace, name, propagation=propagation, opts=self.opts())
        except ApiStatusError as e:
            if e.code != 404:
                raise

    def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str, component: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        name = f"{meta['name']}.{hashlib.sha256((meta['uid'] + reason + message).encode()).hexdigest()[:16]}"
        if self.store.find(EVENT, ns, name) is not None:
            return
        stamp = now()
        # Best-effort, as on a real cluster (e.g. the namespace is going away).
        with contextlib.suppress(ApiStatusError):
            self.create(
                EVENT,
                ns,
                {
                    "metadata": {"name": name},
                    "involvedObject": {
                        "apiVersion": obj.get("apiVersion"),
                        "kind": obj.get("kind"),
                        "name": meta["name"],
                        **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
                        "uid": meta["uid"],
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": type_,
                    "count": 1,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "source": {"component": component},
                    "reportingComponent": component,
                    "reportingInstance": "",
                },
                manager=component,
            )


Handler = Callable[[FakeController, str | None, str], None]
_HANDLERS: dict[str, Handler] = {
    "crd": cluster.reconcile_crd,
    "namespace": cluster.reconcile_namespace,
    "token": cluster.reconcile_token_secret,
    "gc": cluster.reconcile_gc,
    "deployment": workloads.reconcile_deployment,
    "replicaset": workloads.reconcile_replicaset,
    "statefulset": workloads.reconcile_statefulset,
    "pvc": cluster.reconcile_pvc,
    "pod": workloads.reconcile_pod,
    "hpa": cluster.reconcile_hpa,
    "quota": cluster.reconcile_quota,
}

NODES = DEFAULT_NODES
