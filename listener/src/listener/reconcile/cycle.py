"""One reconcile cycle, as Flux's kustomize-controller does it: fetch → render → apply → health →
prune → status.

This module only orchestrates; each step is its own module:

* `fetch`  — the control plane's deployment list (all pages or nothing), and discovery;
* `unit`   — per deployment: render, apply (`apply`), follow the rollout (`health`), record (`status`);
* `prune`  — what the control plane no longer wants, only when every safety rule holds.

Level-triggered and resumable: every cycle re-reads the control plane and the cluster, so a restart
loses nothing but in-flight timers. A failed list ends the cycle before anything changes.

The steps run on a work queue (`queue`): one item per deployment, a few workers, never two at once
for one deployment. A cycle queues every listed deployment that is not already queued or running,
waits for them up to `cycle_wait`, and reports what finished (a step that finishes later reports in
the next cycle). Prune runs on the cycle's thread only while no step is queued or running, so it
never overlaps a step of the deployment it looks at; otherwise it waits for the next cycle.

A cycle is a *poll* (all of the above) or a *tick* (`run_once(poll=False)`, the service's 2 s beat
between polls while rollouts are under way): a tick steps only those rollouts, as the last good poll
placed them, and lists nothing. A poll queues only deployments with work (`unit.has_work`); new
deployments and revisions go to the queue's urgent lane (`unit.wants_rollout`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from listener import naming
from listener.controlplane import ControlPlaneClient, StatusReporter
from listener.desired import Placement, Refusal, place, refuse_unreadable
from listener.kube import Cluster, ClusterError
from listener.reconcile import fetch, prune, status, unit
from listener.reconcile.config import ReconcilerConfig
from listener.reconcile.health import Prober
from listener.reconcile.inventory import Inventory
from listener.reconcile.queue import WorkQueue
from listener.reconcile.watch import Watcher

if TYPE_CHECKING:
    from lightkube import AsyncClient

    from listener.controlplane.listing import UnreadableDeployment
    from listener.managed import ManagedStores

log = logging.getLogger(__name__)


@dataclass
class CycleReport:
    """What one cycle did; the loop logs it, `--once` turns it into an exit code, tests assert on it."""

    control_plane_ok: bool = True
    applied: list[str] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    """Deployments placed on this listener that it will not run (e.g. an unwatched namespace)."""
    pruned: list[str] = field(default_factory=list)
    prune_refused: dict[str, str] = field(default_factory=dict)
    """Deployments not pruned although the list left them out, with the rule that kept them."""
    moved: dict[str, str] = field(default_factory=dict)
    pruned_objects: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    """Objects re-applied because they drifted from what the listener applied."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed: the control plane answered, no revision failed, no call failed."""
        return self.control_plane_ok and not self.failed and not self.errors


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
        inventory: Inventory | None = None,
        watch: Callable[[], AsyncClient] | None = None,
        stores: ManagedStores | None = None,
    ):
        """`watch` makes the async client the inventory's watches use (`reconcile.watch`); without
        it the inventory lists each table once per cycle in which a step looks at it."""
        self.config = config
        self._cp = control_plane
        self._cluster = cluster
        self._reporter = reporter
        self._prober = prober
        self._new_password = new_password
        self._stores = stores
        self.records: dict[str, unit.DeploymentRecord] = {}
        self.served: frozenset[tuple[str, str]] | None = None
        self._refusals_reported: set[tuple[str, str]] = set()
        self._unreadable_logged: set[tuple[str, str]] = set()
        self._last_resync: datetime | None = None
        self._prune_pending = False
        self._listed: set[str] = set()
        self._latest: tuple[dict[str, Placement], datetime] = ({}, datetime.min)
        """The placements of the latest list and its time: what a queued item steps when it starts."""
        self._stepping: dict[str, str] = {}
        """The namespace each deployment's latest step was queued for (what that step may write)."""
        self.inventory = inventory or Inventory(cluster, str(config.listener_id))
        self._queue = WorkQueue(config.workers)
        self._watcher = Watcher(self.inventory, cluster, watch) if watch is not None else None
        self._moved = False
        self._context: unit.StepContext | None = None
        """The latest poll's step context: what a tick steps with."""

    @property
    def in_progress(self) -> bool:
        """A rollout of a deployment the control plane still lists is under way (the loop ticks faster).
        A deployment that vanished mid-rollout does not count: nothing will move it forward."""
        return not self._queue.idle or any(self.records[d].busy for d in self._listed if d in self.records)

    def close(self, timeout: float | None = None) -> bool:
        """Queue nothing more; wait up to `timeout` s for the steps running. True if none is left."""
        if self._watcher is not None:
            self._watcher.stop()
        return self._queue.close(timeout)

    def run_once(self, now: datetime, *, wait: float | None = None, poll: bool = True) -> CycleReport:
        """One cycle at `now`; `wait` overrides `config.cycle_wait` (seconds to wait for the steps).

        `poll=False` is a *tick* (the service's 2 s beat while rollouts are under way, between
        polls): it steps only the deployments whose rollout is under way, as the latest poll placed
        them, and nothing else — no control-plane list, no discovery, no prune, and the inventory
        keeps its tables from the poll (the listener's own writes are in them). A tick's cost is the
        rollouts' own reads and writes, whatever N is."""
        report = CycleReport()
        self._collect(report)  # steps that finished after their cycle returned
        if not poll:
            return self._tick(now, report, wait)
        listed = fetch.list_deployments(self._cp)
        if listed.deployments is None:
            # Keep everything running as it is; the next cycle tries again. Ticks step nothing until
            # a poll lists again: what the last list said may be stale (deleted, superseded).
            self._context = None
            report.control_plane_ok = False
            report.errors.append(f"control plane: {listed.error}")
            log.warning("control plane unavailable, nothing changed this cycle: %s", listed.error)
            return report

        resync = self._last_resync is None or now - self._last_resync >= self.config.resync_interval
        if resync or self.served is None:
            try:
                self.served = fetch.served_kinds(self._cluster)
            except ClusterError as error:
                report.errors.append(f"discovery: {error}")
                if self.served is None:
                    return report  # the cluster is unreachable: nothing can be done safely

        if self._watcher is not None:
            self._watcher.start(self.config.namespaces, sorted(self.served & unit.STRAY_KINDS))
        placed, refused = place(listed.deployments, self.config.listener_id, self.config.namespaces)
        unreadable, ignored = refuse_unreadable(listed.unreadable, self.config.listener_id)
        self._note_unreadable(unreadable, ignored, report)
        refused = refused + unreadable
        for refusal in refused:
            self._refuse(refusal, report)

        self.inventory.begin_cycle()
        self._context = context = unit.StepContext(
            config=self.config,
            cluster=self._cluster,
            reporter=self._reporter,
            prober=self._prober,
            served=self.served,
            new_password=self._new_password,
            inventory=self.inventory,
            stores=self._stores,
        )
        # An item may wait for a worker past this cycle: it steps what the latest list says when it
        # starts (a newer revision, or nothing at all for a deployment deleted meanwhile).
        self._latest = ({p.deployment_id: p for p in placed}, now)
        queued = []
        busy = self._queue.busy()
        for placement in placed:
            record = self.records.get(placement.deployment_id) or unit.new_record(placement)
            self.records[placement.deployment_id] = record
            if placement.deployment_id not in busy and not unit.has_work(self.config, record, placement, now):
                continue
            step = partial(self._step_latest, context, record)
            if self._queue.submit(
                placement.deployment_id, step, urgent=unit.wants_rollout(record, placement)
            ):
                queued.append(placement.deployment_id)
                self._stepping[placement.deployment_id] = placement.namespace
        self._queue.wait(queued, self.config.cycle_wait if wait is None else wait)
        self._collect(report)
        # A move starts in a step: look at the old place once it has (later passes follow `pending`).
        moved, self._moved = self._moved, False

        where = {p.deployment_id: p.namespace for p in placed}
        self._listed = set(where)
        vanished = set(self.records) - set(where)
        # Prune deletes only objects of deployments not placed where they are found (gone from the
        # list, or moved). It never runs alongside a step that could write such objects: one of a
        # deployment no longer placed, or one queued for another namespace than its placement now.
        # Any other step may run on (waiting for all of them let one step hung in a request hold
        # back every prune for as long as it hung).
        overlaps = {d for d in self._queue.busy() if self._stepping.get(d) != where.get(d)}
        if (resync or vanished or moved or self._prune_pending) and overlaps:
            self._prune_pending = True
        elif resync or vanished or moved or self._prune_pending:
            outcome = prune.run(
                self._cluster,
                self._cp,
                self.config,
                self.served,
                placed=where,
                refused=[r.deployment_id for r in refused],
                now=now,
                bases={p.deployment_id: naming.base_name(p.deployment.name, p.deployment_id) for p in placed},
                stores=self._stores,
            )
            self._prune_pending = outcome.pending
            report.pruned += outcome.pruned
            report.prune_refused.update(outcome.refused)
            report.moved.update(outcome.moved)
            report.errors += outcome.errors
            report.warnings += outcome.warnings
            for deployment_id in outcome.pruned:
                if deployment_id not in where:
                    self.records.pop(deployment_id, None)
                    self._stepping.pop(deployment_id, None)
        if resync:
            self._last_resync = now
        return report

    def _tick(self, now: datetime, report: CycleReport, wait: float | None) -> CycleReport:
        placements, _ = self._latest
        context = self._context
        if context is None:
            return report  # no successful poll yet, or the last one could not list: nothing moves
        self._latest = (placements, now)  # queued items step at the tick's time (deadlines, retries)
        # The inventory is not listed again at a tick: a write's ownership look GETs (`StepContext.tick`).
        context = replace(context, tick=True)
        queued = []
        for deployment_id, placement in placements.items():
            record = self.records.get(deployment_id)
            if record is None or not record.busy:
                continue
            if self._queue.submit(deployment_id, partial(self._step_latest, context, record)):
                queued.append(deployment_id)
                self._stepping[deployment_id] = placement.namespace  # what prune must not overlap
        self._queue.wait(queued, self.config.cycle_wait if wait is None else wait)
        self._collect(report)
        return report

    def _step_latest(
        self, context: unit.StepContext, record: unit.DeploymentRecord
    ) -> tuple[unit.StepResult, bool]:
        placements, now = self._latest
        placement = placements.get(record.deployment_id)
        if placement is None:  # no longer placed here: prune's rules decide what becomes of it
            return unit.StepResult(record.deployment_id), False
        return _step(context, record, placement, now)

    def _note_unreadable(
        self, refused: list[Refusal], ignored: list[UnreadableDeployment], report: CycleReport
    ) -> None:
        """Records the control plane lists but this listener cannot validate. The reasons name field
        paths and what is wrong, never a value (a record carries its secrets)."""
        for refusal in refused:
            whose = "this listener's" if refusal.report_upstream else "possibly this listener's"
            warning = (
                f"deployment {refusal.deployment_id} ({whose}) is kept as it runs, nothing written, never "
                f"pruned: {refusal.reason}"
            )
            report.warnings.append(warning)  # the service logs each warning once while it lasts
        current = {(str(item.id), item.problems) for item in ignored}
        for item in ignored:
            if (str(item.id), item.problems) not in self._unreadable_logged:
                log.info(
                    "ignoring deployment %s of listener %s that cannot be read (not this listener's): %s",
                    item.id,
                    item.listener_id,
                    item.problems,
                )
        self._unreadable_logged = current  # bounded: only what is listed now (said again if it returns)

    def _collect(self, report: CycleReport) -> None:
        for done in self._queue.take():
            if done.error is not None:
                report.errors.append(f"{done.key}: step failed: {done.error!r}")
                continue
            result, moved = done.value
            self._moved = self._moved or moved
            _merge(result, report)

    def _refuse(self, refusal: Refusal, report: CycleReport) -> None:
        report.refused[refusal.deployment_id] = refusal.reason
        key = (refusal.deployment_id, refusal.revision_id or "")
        if (
            refusal.revision_id
            and refusal.report_upstream
            and key not in self._refusals_reported
            and status.report_upstream(
                self._reporter, refusal.deployment_id, refusal.revision_id, "DEPLOY_FAILED", refusal.reason
            )
        ):
            self._refusals_reported.add(key)


def _step(
    context: unit.StepContext, record: unit.DeploymentRecord, placement: Placement, now: datetime
) -> tuple[unit.StepResult, bool]:
    """One work item: the step, and whether it started a move to another namespace."""
    result = unit.step(context, record, placement, now)
    moved = bool(record.attempt and record.attempt.moved_from and record.attempt.started == now)
    return result, moved


def _merge(result: unit.StepResult, report: CycleReport) -> None:
    if result.applied:
        report.applied.append(result.deployment_id)
    if result.deployed:
        report.deployed.append(result.deployment_id)
    if result.failed is not None:
        report.failed[result.deployment_id] = result.failed
    report.errors += result.errors
    report.warnings += result.warnings
    report.pruned_objects += result.pruned_objects
    report.drifted += result.drifted
