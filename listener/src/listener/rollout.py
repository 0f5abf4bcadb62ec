"""Classify a rollout from plain Kubernetes objects (kstatus / gitops-engine rules, listener-engineering.md §2.2).

`workload_state` reads a Deployment's or StatefulSet's status; `pods_failure` looks at the pods of the
*current* revision and fails fast on states that will not heal by waiting (bad image, crash loop,
bad config, unschedulable), long before `progressDeadlineSeconds` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from listener import naming

State = Literal["InProgress", "Current", "Failed"]

IMAGE_PULL_REASONS: Final = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})
CONFIG_REASONS: Final = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
UNSCHEDULABLE_WINDOW: Final = timedelta(seconds=15)
"""kstatus' ScheduleWindow: the scheduler gets this long before Unschedulable counts as failure
(the cluster autoscaler may still be adding a node; raise it when that takes longer)."""


@dataclass(frozen=True)
class RolloutState:
    state: State
    reason: str


@dataclass(frozen=True)
class Failure:
    """Why a rollout cannot succeed, found on one pod."""

    reason: str
    """Human-readable, quoting Kubernetes' own message."""
    cause: str
    """The Kubernetes reason (`ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`, ...)."""
    pod: str
    container: str | None = None

    @property
    def state(self) -> State:
        return "Failed"


def _in_progress(reason: str) -> RolloutState:
    return RolloutState("InProgress", reason)


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _generation_pending(obj: Mapping[str, Any]) -> RolloutState | None:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return _in_progress(f"controller has not observed generation {generation} yet (observed {observed})")
    return None


def _desired(spec: Mapping[str, Any]) -> int:
    # Absent only before the apiserver defaults it (it does so even for autoscaled workloads whose
    # manifests leave it out), so Kubernetes' own default applies.
    replicas = spec.get("replicas")
    return 1 if replicas is None else int(replicas)


def deployment_state(obj: Mapping[str, Any]) -> RolloutState:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if pending := _generation_pending(obj):
        return pending
    progressing = _condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutState("Failed", f"progress deadline exceeded: {progressing.get('message', '')}".strip())
    # The ReplicaSet cannot create pods at all (a quota, a PodSecurity or admission rejection): no
    # amount of waiting helps, so fail fast with the controller's own message.
    replica_failure = _condition(status, "ReplicaFailure")
    if replica_failure and replica_failure.get("status") == "True":
        reason = replica_failure.get("reason") or "ReplicaFailure"
        return RolloutState(
            "Failed", f"pods cannot be created ({reason}): {replica_failure.get('message', '')}"
        )
    if spec.get("paused"):
        # No deadline is enforced while paused; the listener's own deadline still is.
        return _in_progress("Deployment is paused")
    want = _desired(spec)
    total = status.get("replicas", 0)
    updated = status.get("updatedReplicas", 0)
    ready = status.get("readyReplicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < want:
        return _in_progress(f"{updated} of {want} replicas updated")
    if total > updated:
        return _in_progress(f"{total - updated} old replicas pending termination")
    if available < updated:
        return _in_progress(f"{available} of {updated} updated replicas available")
    if ready < want:
        return _in_progress(f"{ready} of {want} replicas ready")
    available_cond = _condition(status, "Available")
    if want > 0 and available_cond is not None and available_cond.get("status") != "True":
        return _in_progress(f"Deployment not Available: {available_cond.get('message', '')}".strip())
    return RolloutState("Current", f"{want} replicas updated and available")


def statefulset_state(obj: Mapping[str, Any]) -> RolloutState:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if pending := _generation_pending(obj):
        return pending
    want = _desired(spec)
    ready = status.get("readyReplicas", 0)
    if ready < want:
        return _in_progress(f"{ready} of {want} replicas ready")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return RolloutState("Current", "OnDelete strategy: pods update when deleted")
    partition = ((strategy.get("rollingUpdate") or {}).get("partition")) or 0
    updated = status.get("updatedReplicas", 0)
    if updated < want - partition:
        return _in_progress(f"{updated} of {want - partition} replicas updated")
    if partition == 0 and status.get("currentRevision") != status.get("updateRevision"):
        return _in_progress(
            f"revision {status.get('updateRevision')} rolling out (current {status.get('currentRevision')})"
        )
    return RolloutState("Current", f"{want} replicas ready at revision {status.get('updateRevision')}")


def workload_state(obj: Mapping[str, Any]) -> RolloutState:
    """Deployments and StatefulSets by their status; other kinds are done once applied."""
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_state(obj)
    if kind == "StatefulSet":
        return statefulset_state(obj)
    return RolloutState("Current", f"{kind} has no rollout status")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _is_current(pod: Mapping[str, Any], revision_id: str | None, template_hash: str | None) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    labels = meta.get("labels") or {}
    if revision_id is not None and labels.get(naming.LABEL_REVISION_ID) != naming.label_value(revision_id):
        return False
    if template_hash is not None:
        hashes = {labels.get("pod-template-hash"), labels.get("controller-revision-hash")}
        if template_hash not in hashes:
            return False
    return True


def _container_failure(pod_name: str, status: Mapping[str, Any], images: Mapping[str, str]) -> Failure | None:
    name = status.get("name", "?")
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    message = waiting.get("message", "")
    if reason in IMAGE_PULL_REASONS:
        image = status.get("image") or images.get(name, "?")
        return Failure(
            f'pod {pod_name}: container {name} cannot pull image "{image}" ({reason}): {message}'.rstrip(
                ": "
            ),
            reason,
            pod_name,
            name,
        )
    if reason == "CrashLoopBackOff":
        restarts = status.get("restartCount", 0)
        last = (status.get("lastState") or {}).get("terminated") or {}
        detail = f"last exit: {last.get('reason', 'unknown')}, exit code {last.get('exitCode', '?')}"
        if last.get("message"):
            detail += f", message: {last['message']}"
        return Failure(
            f"pod {pod_name}: container {name} is crash-looping (CrashLoopBackOff, restarted {restarts} times; "
            f"{detail})",
            reason,
            pod_name,
            name,
        )
    if reason in CONFIG_REASONS:
        return Failure(
            f"pod {pod_name}: container {name} cannot start ({reason}): {message}", reason, pod_name, name
        )
    return None


def _unschedulable(pod_name: str, pod: Mapping[str, Any], now: datetime, window: timedelta) -> Failure | None:
    cond = _condition(pod.get("status") or {}, "PodScheduled")
    if not cond or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    since = _parse_time(cond.get("lastTransitionTime"))
    if since is None or now - since < window:
        return None
    waited = int((now - since).total_seconds())
    return Failure(
        f"pod {pod_name} unschedulable for {waited}s: {cond.get('message', '')}".rstrip(": "),
        "Unschedulable",
        pod_name,
    )


def pods_failure(
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    *,
    revision_id: str | None = None,
    template_hash: str | None = None,
    unschedulable_window: timedelta = UNSCHEDULABLE_WINDOW,
) -> Failure | None:
    """The first reason (pods by name) the current revision's pods cannot become ready, or None.

    Pods are narrowed to the current revision by the revision-id label and/or the
    pod-template-hash / controller-revision-hash, so a crash-looping *old* pod never fails a new
    rollout; terminating pods are ignored. `now` must be timezone-aware.
    """
    current = [p for p in pods if _is_current(p, revision_id, template_hash)]
    for pod in sorted(current, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        images = {
            c["name"]: c.get("image", "?")
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        }
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            if failure := _container_failure(pod_name, cs, images):
                return failure
        if failure := _unschedulable(pod_name, pod, now, unschedulable_window):
            return failure
    return None


def rollout_state(
    workload: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    *,
    revision_id: str | None = None,
    template_hash: str | None = None,
    unschedulable_window: timedelta = UNSCHEDULABLE_WINDOW,
) -> RolloutState:
    """Workload status, overridden by a pod-level failure while the rollout is not yet Current."""
    state = workload_state(workload)
    if state.state != "InProgress":
        return state
    failure = pods_failure(
        pods,
        now,
        revision_id=revision_id,
        template_hash=template_hash,
        unschedulable_window=unschedulable_window,
    )
    return RolloutState("Failed", failure.reason) if failure else state
