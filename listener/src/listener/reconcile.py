"""One reconcile cycle: make the watched namespaces match what the control plane says.

Level-triggered and resumable: every cycle re-reads the control plane, so a restart loses nothing
but in-flight timers. The rules that keep running agents safe:

* Nothing is deleted because a list failed, came back partial or came back empty: a deployment's
  objects are pruned only after `GET /v2/deployments/{id}` answers 404.
* Only objects carrying this listener's ownership labels are ever written or deleted; an object of
  the same name without them stops the rollout with a reason instead.
* A failed revision is not retried until the control plane moves (a new revision or a redeploy);
  with `maxUnavailable: 0` the previous revision's pods keep serving meanwhile.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from listener import naming
from listener.controlplane import ControlPlaneClient, ControlPlaneError, NotFoundError, StatusReporter
from listener.desired import (
    Fingerprint,
    Placement,
    Platform,
    Refusal,
    agent_server_spec,
    changed,
    fingerprint,
    place,
)
from listener.kube import Cluster, ClusterError
from listener.render import RenderError, Wave, render
from listener.render.secrets import POSTGRES_PASSWORD_KEY
from listener.rollout import rollout_state, workload_state
from listener.spec import RenderOptions, SecretValue

log = logging.getLogger(__name__)

STATUS_ANNOTATION = "langsmith-dataplane/status"
EVENT_SOURCE = "langsmith-dataplane-listener"

Phase = Literal["stores", "rolling", "deployed", "failed"]
Prober = Callable[[str, str], bool]
"""(namespace, service name) -> does the Agent Server answer `GET /ok` with 200?"""

# Everything the renderer can emit, in prune order (dependents first, data last).
INVENTORY_KINDS: tuple[tuple[str, str], ...] = (
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.k8s.io/v1", "Ingress"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
)
_DATA_KINDS = {"PersistentVolumeClaim"}


@dataclass(frozen=True)
class ReconcilerConfig:
    listener_id: UUID
    namespaces: tuple[str, ...]
    options: RenderOptions
    platform: Platform
    rollout_timeout: timedelta = timedelta(seconds=600)
    unschedulable_grace: timedelta = timedelta(seconds=15)
    resync_interval: timedelta = timedelta(seconds=300)
    data_retention: Literal["retain", "delete"] = "retain"


@dataclass
class Tracked:
    """What the listener remembers about one deployment between cycles."""

    placement: Placement
    fingerprint: Fingerprint
    revision_id: str
    names: naming.ObjectNames
    waves: list[Wave]
    phase: Phase
    started: datetime
    reason: str = ""
    applied: set[int] = field(default_factory=set)
    """Waves applied for this revision; a cluster error mid-apply leaves the rest for the next cycle."""


@dataclass
class CycleReport:
    """What one cycle did; the loop logs it and tests assert on it."""

    control_plane_ok: bool = True
    applied: list[str] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        config: ReconcilerConfig,
        control_plane: ControlPlaneClient,
        cluster: Cluster,
        reporter: StatusReporter,
        prober: Prober,
        *,
        new_password: Callable[[], str] = lambda: secrets.token_urlsafe(24),
    ):
        self.config = config
        self._cp = control_plane
        self._cluster = cluster
        self._reporter = reporter
        self._probe = prober
        self._new_password = new_password
        self.tracked: dict[str, Tracked] = {}
        self._failed_revisions: set[str] = set()
        self._reported: set[tuple[str, str, str]] = set()
        self._last_resync: datetime | None = None

    @property
    def listener_id(self) -> str:
        return str(self.config.listener_id)

    @property
    def in_progress(self) -> bool:
        return any(t.phase in ("stores", "rolling") for t in self.tracked.values())

    # --- the cycle ---------------------------------------------------------------------------

    def run_once(self, now: datetime) -> CycleReport:
        report = CycleReport()
        try:
            deployments = self._cp.list_deployments()
        except ControlPlaneError as error:
            # Keep everything running as it is; the next cycle tries again.
            report.control_plane_ok = False
            report.errors.append(f"control plane: {error}")
            log.warning("control plane unavailable, nothing changed this cycle: %s", error)
            return report

        placed, refused = place(deployments, self.config.listener_id, self.config.namespaces)
        for refusal in refused:
            self._refuse(refusal, report)

        resync = self._last_resync is None or now - self._last_resync >= self.config.resync_interval
        moved = {
            p.deployment_id for p in changed({k: t.fingerprint for k, t in self.tracked.items()}, placed)
        }
        for placement in placed:
            self._reconcile_one(placement, placement.deployment_id in moved, now, resync, report)

        vanished = set(self.tracked) - {p.deployment_id for p in placed}
        if resync or vanished:
            self._prune_deleted(
                {p.deployment_id for p in placed} | {r.deployment_id for r in refused}, report
            )
        if resync:
            self._last_resync = now
        return report

    def _reconcile_one(
        self, placement: Placement, moved: bool, now: datetime, resync: bool, report: CycleReport
    ) -> None:
        deployment_id = placement.deployment_id
        tracked = self.tracked.get(deployment_id)
        revision = placement.revision_id or ""
        try:
            if tracked is None or moved:
                if revision in self._failed_revisions:
                    return
                self._start(placement, now, report)
            elif tracked.phase in ("stores", "rolling"):
                self._progress(tracked, now, report)
            elif resync and tracked.phase == "deployed":
                # Re-assert every field we own: manual edits are reverted, nothing else changes.
                self._apply_waves(tracked, range(len(tracked.waves)))
        except ClusterError as error:
            report.errors.append(f"{deployment_id}: {error}")
            log.warning("deployment %s: cluster error, will retry next cycle: %s", deployment_id, error)
        except RenderError as error:
            self._fail_new(placement, f"cannot render: {error}", report)

    # --- starting a revision -----------------------------------------------------------------

    def _start(self, placement: Placement, now: datetime, report: CycleReport) -> None:
        deployment = placement.deployment
        names = naming.ObjectNames.of(deployment.name, placement.deployment_id)
        password = self._postgres_password(placement.namespace, names)
        spec = agent_server_spec(placement, self.config.platform, password)
        waves = render(spec, self.config.options)
        tracked = Tracked(
            placement=placement,
            fingerprint=fingerprint(deployment),
            revision_id=spec.revision_id,
            names=names,
            waves=waves,
            phase="stores",
            started=now,
        )
        self.tracked[placement.deployment_id] = tracked
        if self._resume(tracked):
            return
        foreign = self._foreign_objects(waves)
        if foreign:
            self._fail(
                tracked,
                f"{', '.join(foreign)} already exist(s) and is not managed by this listener; refusing to touch it",
                report,
            )
            return
        self._progress(tracked, now, report)

    def _resume(self, tracked: Tracked) -> bool:
        """After a restart, pick up what the cluster already records for this exact revision and spec,
        instead of rolling it out and reporting it again (or retrying a revision that failed)."""
        live = self._cluster.get("apps/v1", "Deployment", tracked.placement.namespace, tracked.names.api)
        if live is None or not naming.is_ours(live, self.listener_id):
            return False
        annotations = live["metadata"].get("annotations") or {}
        try:
            recorded = json.loads(annotations.get(STATUS_ANNOTATION, "{}"))
        except json.JSONDecodeError:
            return False
        if recorded.get("revision") != tracked.revision_id:
            return False
        rendered = next(o for o in tracked.waves[2].objects if o["metadata"]["name"] == tracked.names.api)
        same_spec = annotations.get(naming.ANNOTATION_SPEC_HASH) == rendered["metadata"]["annotations"].get(
            naming.ANNOTATION_SPEC_HASH
        )
        if recorded.get("status") == "DEPLOYED" and same_spec:
            tracked.phase = "deployed"
            return True
        if recorded.get("status") == "DEPLOY_FAILED":
            tracked.phase = "failed"
            tracked.reason = str(recorded.get("reason", ""))
            self._failed_revisions.add(tracked.revision_id)
            return True
        return False

    def _postgres_password(self, namespace: str, names: naming.ObjectNames) -> SecretValue | None:
        """Generated once, then read back from the cluster, so re-rendering never rotates it."""
        if self.config.options.store_mode != "in-cluster":
            return None
        existing = self._cluster.get("v1", "Secret", namespace, names.postgres_secret)
        if existing and naming.is_ours(existing, self.listener_id):
            encoded = (existing.get("data") or {}).get(POSTGRES_PASSWORD_KEY)
            if encoded:
                return SecretValue(base64.b64decode(encoded).decode())
        return SecretValue(self._new_password())

    def _foreign_objects(self, waves: list[Wave]) -> list[str]:
        foreign = []
        for obj in (o for wave in waves for o in wave.objects):
            meta = obj["metadata"]
            existing = self._cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
            if existing is not None and not naming.is_ours(existing, self.listener_id):
                foreign.append(f"{obj['kind']} {meta['namespace']}/{meta['name']}")
        return foreign

    def _apply_waves(self, tracked: Tracked, indices: Iterable[int]) -> None:
        for index in indices:
            for obj in tracked.waves[index].objects:
                self._cluster.apply(obj)
            tracked.applied.add(index)

    # --- following a rollout -----------------------------------------------------------------

    def _progress(self, tracked: Tracked, now: datetime, report: CycleReport) -> None:
        if tracked.phase == "stores":
            if not {0, 1} <= tracked.applied:
                self._apply_waves(tracked, (0, 1))
                report.applied.append(tracked.placement.deployment_id)
                self._transition(tracked, "DEPLOYING", "rollout started", report)
            state = self._workloads_state(tracked, tracked.waves[1], now)
            if state[0] == "Failed":
                self._fail(tracked, f"backing store failed: {state[1]}", report)
                return
            if state[0] != "Current":
                self._check_deadline(tracked, now, f"backing stores not ready: {state[1]}", report)
                return
            self._apply_waves(tracked, (2, 3))
            tracked.phase = "rolling"

        state = self._workloads_state(tracked, tracked.waves[2], now)
        if state[0] == "Failed":
            self._fail(tracked, state[1], report)
        elif state[0] != "Current":
            self._check_deadline(tracked, now, state[1], report)
        elif not self._probe(tracked.placement.namespace, tracked.names.api):
            self._check_deadline(tracked, now, "pods are ready but GET /ok does not answer 200", report)
        else:
            tracked.phase = "deployed"
            report.deployed.append(tracked.placement.deployment_id)
            self._transition(tracked, "DEPLOYED", "all replicas ready and GET /ok answered 200", report)

    def _workloads_state(self, tracked: Tracked, wave: Wave, now: datetime) -> tuple[str, str]:
        """The worst state of the wave's workloads: Failed beats InProgress beats Current."""
        worst: tuple[str, str] = ("Current", "")
        for obj in wave.objects:
            if obj["kind"] not in ("Deployment", "StatefulSet"):
                continue
            meta = obj["metadata"]
            live = self._cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
            if live is None:
                return ("InProgress", f"{obj['kind']} {meta['name']} not created yet")
            selector = obj["spec"]["selector"]["matchLabels"]
            pods = self._cluster.list("v1", "Pod", meta["namespace"], selector)
            revision = (
                tracked.revision_id if meta["name"] in (tracked.names.api, tracked.names.queue) else None
            )
            state = (
                rollout_state(
                    live,
                    pods,
                    now,
                    revision_id=revision,
                    unschedulable_window=self.config.unschedulable_grace,
                )
                if obj["kind"] == "Deployment"
                else workload_state(live)
            )
            if state.state == "Failed":
                return ("Failed", f"{meta['name']}: {state.reason}")
            if state.state == "InProgress" and worst[0] == "Current":
                worst = ("InProgress", f"{meta['name']}: {state.reason}")
        return worst

    def _check_deadline(self, tracked: Tracked, now: datetime, reason: str, report: CycleReport) -> None:
        tracked.reason = reason
        waited = now - tracked.started
        if waited >= self.config.rollout_timeout:
            self._fail(tracked, f"not ready after {int(waited.total_seconds())} s: {reason}", report)

    # --- outcomes ----------------------------------------------------------------------------

    def _fail(self, tracked: Tracked, reason: str, report: CycleReport) -> None:
        tracked.phase = "failed"
        tracked.reason = reason
        self._failed_revisions.add(tracked.revision_id)
        report.failed[tracked.placement.deployment_id] = reason
        self._transition(tracked, "DEPLOY_FAILED", reason, report)

    def _fail_new(self, placement: Placement, reason: str, report: CycleReport) -> None:
        revision = placement.revision_id or ""
        self._failed_revisions.add(revision)
        report.failed[placement.deployment_id] = reason
        self._report_once(placement.deployment_id, revision, "DEPLOY_FAILED", reason)

    def _refuse(self, refusal: Refusal, report: CycleReport) -> None:
        report.refused[refusal.deployment_id] = refusal.reason
        if refusal.revision_id:
            self._report_once(refusal.deployment_id, refusal.revision_id, "DEPLOY_FAILED", refusal.reason)

    def _transition(self, tracked: Tracked, status: str, reason: str, report: CycleReport) -> None:
        """Record a revision's new status where people look: Events, an annotation, and upstream."""
        deployment_id = tracked.placement.deployment_id
        log.info("deployment %s revision %s: %s (%s)", deployment_id, tracked.revision_id, status, reason)
        namespace = tracked.placement.namespace
        try:
            target = self._status_target(tracked)
            if target is not None:
                record = {"revision": tracked.revision_id, "status": status, "reason": reason}
                self._cluster.annotate(
                    target[0],
                    target[1],
                    namespace,
                    target[2],
                    {STATUS_ANNOTATION: json.dumps(record, sort_keys=True)},
                )
            self._event(tracked, target or ("apps/v1", "Deployment", tracked.names.api), status, reason)
        except ClusterError as error:
            report.errors.append(f"{deployment_id}: recording status: {error}")
        self._report_once(deployment_id, tracked.revision_id, status, reason)

    def _status_target(self, tracked: Tracked) -> tuple[str, str, str] | None:
        """The API server Deployment, else the deployment's env Secret: whichever exists and is ours.
        None when neither is (a rollout stopped by a foreign object must not annotate that object)."""
        namespace = tracked.placement.namespace
        for api_version, kind, name in (
            ("apps/v1", "Deployment", tracked.names.api),
            ("v1", "Secret", tracked.names.env_secret),
        ):
            live = self._cluster.get(api_version, kind, namespace, name)
            if live is not None and naming.is_ours(live, self.listener_id):
                return (api_version, kind, name)
        return None

    def _event(self, tracked: Tracked, target: tuple[str, str, str], status: str, reason: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        revision = tracked.revision_id.replace("-", "")[:12]
        name = f"{tracked.names.base}.{revision}.{status.lower().replace('_', '-')}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": tracked.placement.namespace},
            "involvedObject": {
                "apiVersion": target[0],
                "kind": target[1],
                "name": target[2],
                "namespace": tracked.placement.namespace,
            },
            "reason": {"DEPLOYING": "RolloutStarted", "DEPLOYED": "RolloutSucceeded"}.get(
                status, "RolloutFailed"
            ),
            "message": f"revision {tracked.revision_id}: {reason}"[:1024],
            "type": "Warning" if status == "DEPLOY_FAILED" else "Normal",
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._cluster.create(event)
        except ClusterError as error:
            if error.status != 409:  # the same transition recorded already
                raise

    def _report_once(self, deployment_id: str, revision_id: str, status: str, reason: str) -> None:
        key = (deployment_id, revision_id, status)
        if key in self._reported or not revision_id:
            return
        try:
            self._reporter.report(deployment_id, revision_id, status, reason)  # type: ignore[arg-type]
            self._reported.add(key)
        except ControlPlaneError as error:
            log.warning("could not report %s for %s: %s (will retry)", status, deployment_id, error)

    # --- deletion ----------------------------------------------------------------------------

    def _prune_deleted(self, known: set[str], report: CycleReport) -> None:
        """Prune deployments whose objects are in the cluster but which the control plane confirms gone."""
        try:
            inventory = self._inventory()
        except ClusterError as error:
            report.errors.append(f"inventory: {error}")
            return
        for deployment_id, objects in sorted(inventory.items()):
            if deployment_id in known:
                continue
            try:
                self._cp.get_deployment(deployment_id)
            except NotFoundError:
                self._prune(deployment_id, objects, report)
            except ControlPlaneError as error:
                report.errors.append(f"{deployment_id}: cannot confirm deletion, keeping it: {error}")
            # Found: it exists but the list did not show it (partial page?) -- keep it.

    def _inventory(self) -> dict[str, list[tuple[str, str, str, str]]]:
        selector = naming.ownership_selector(self.listener_id)
        found: dict[str, list[tuple[str, str, str, str]]] = {}
        for namespace in self.config.namespaces:
            for api_version, kind in INVENTORY_KINDS:
                for obj in self._cluster.list(api_version, kind, namespace, selector):
                    if not naming.is_ours(obj, self.listener_id):
                        continue
                    labels = obj["metadata"].get("labels") or {}
                    deployment_id = labels.get(naming.LABEL_DEPLOYMENT_ID)
                    if deployment_id:
                        found.setdefault(deployment_id, []).append(
                            (api_version, kind, namespace, obj["metadata"]["name"])
                        )
        return found

    def _prune(
        self, deployment_id: str, objects: list[tuple[str, str, str, str]], report: CycleReport
    ) -> None:
        keep_data = self.config.data_retention == "retain"
        for api_version, kind, namespace, name in objects:
            is_data = kind in _DATA_KINDS or (kind == "Secret" and name.endswith(naming.SUFFIX_POSTGRES))
            if keep_data and is_data:
                continue  # the volume and the password that opens it stay until an operator deletes them
            try:
                self._cluster.delete(api_version, kind, namespace, name)
            except ClusterError as error:
                report.errors.append(f"{deployment_id}: pruning {kind} {name}: {error}")
                return
        self.tracked = {k: v for k, v in self.tracked.items() if k != deployment_id}
        report.pruned.append(deployment_id)
        log.info("deployment %s was deleted in the control plane; its objects were pruned", deployment_id)
