"""Health: is a wave's workloads' rollout Current, still InProgress, or Failed — and does `/ok` answer?

The rules are kstatus' (listener.rollout, pure); this module only reads the live objects and pods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from listener.kube import Cluster
from listener.rollout import rollout_state, workload_state

Prober = Callable[[str, str], bool]
"""(namespace, service name) -> does the Agent Server answer `GET /ok` with 200?"""

Health = tuple[Literal["Current", "InProgress", "Failed"], str]


def workloads(
    cluster: Cluster,
    objects: Iterable[dict[str, Any]],
    now: datetime,
    *,
    revision_id: str,
    revisioned: set[str],
    unschedulable_grace: timedelta,
) -> Health:
    """The worst state of the Deployments and StatefulSets among `objects`: Failed beats InProgress
    beats Current. Only pods of `revision_id` count for workloads named in `revisioned` (the API
    server and queue), so a crash-looping old pod never fails a new rollout."""
    worst: Health = ("Current", "")
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        meta = obj["metadata"]
        live = cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if live is None:
            return ("InProgress", f"{obj['kind']} {meta['name']} not created yet")
        # The same pod-level fail-fast rules for the stores' StatefulSets as for the Deployments: a
        # Postgres image that cannot be pulled is a failure now, not "0 of 1 replicas ready" until the deadline.
        # Only pods of the StatefulSet's update revision count: a pod of the old template that never
        # became ready stays until deleted (its documented forced rollback) and must not fail the fix.
        # Pods are read only while the workload itself is not Current: they can only turn
        # InProgress into Failed, and a steady or finished rollout then costs one GET, not two.
        state = workload_state(live)
        if state.state == "InProgress":
            pods = cluster.list("v1", "Pod", meta["namespace"], obj["spec"]["selector"]["matchLabels"])
            update_revision = (live.get("status") or {}).get("updateRevision") or "-"
            state = rollout_state(
                live,
                pods,
                now,
                revision_id=revision_id if meta["name"] in revisioned else None,
                template_hash=update_revision if obj["kind"] == "StatefulSet" else None,
                unschedulable_window=unschedulable_grace,
            )
        if state.state == "Failed":
            return ("Failed", f"{meta['name']}: {state.reason}")
        if state.state == "InProgress" and worst[0] == "Current":
            worst = ("InProgress", f"{meta['name']}: {state.reason}")
    return worst
