"""Attacks on the ticks between polls (`Reconciler.run_once(poll=False)`), end to end over real HTTP
against the control-plane emulator and fakekube: a tick is cheaper than a poll, never less safe."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e import NS, OTHER_NS, World, foreign_service, gated_prober, with_probe
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment
from test_service import base_env

from listener import metrics
from listener.kube import FIELD_MANAGER
from listener.reconcile import CycleReport
from listener.reconcile import cycle as cycle_module
from listener.reconcile.status import STATUS_ANNOTATION
from listener.service import Service, control_plane_client
from listener.settings import load_settings

TICK = timedelta(seconds=2)


def _tick(world: World) -> None:
    world.now += TICK
    world.reports.append(world.reconciler.run_once(world.now, poll=False))


def test_an_object_created_after_the_poll_is_never_taken_over_by_a_tick(world: World) -> None:
    # The poll surveys every object and writes the stores; the API server wave is written at a tick,
    # once Postgres is ready. Someone creates the API server's Service with our name in between.
    # Ticks do not list the inventory again: the survey must not answer from the poll's list.
    deployment_id = world.deploy("alpha")
    names = world.names(deployment_id)
    world.kube.controller.hold_rollout(NS, names.postgres, ready=0)
    world.cycle()
    assert world.revision_status(deployment_id)[1] == "DEPLOYING"
    assert world.get("Service", names.api) is None
    foreign_service(world.kube, names.api)
    world.kube.controller.hold_rollout(NS, names.postgres, ready=None)
    for _ in range(3):
        _tick(world)
    live = world.get("Service", names.api)
    assert live is not None
    managers = {e["manager"] for e in live["metadata"].get("managedFields") or []}
    assert FIELD_MANAGER not in managers, "their Service was taken over at a tick"
    assert live["metadata"].get("labels") == {"team": "theirs"}
    assert live["spec"]["selector"] == {"app": "theirs"}


def _their_deployment(name: str) -> dict[str, Any]:
    labels = {"app": "theirs"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "theirs"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.example.com/theirs:1"}]},
            },
        },
    }


def test_a_status_transition_at_a_tick_never_annotates_an_object_that_is_no_longer_ours(world: World) -> None:
    # The status record goes on the API server Deployment the rollout wrote. Someone deletes it and
    # creates their own Deployment with that name after the poll listed the inventory; the rollout
    # then fails (or succeeds) at a tick. The annotation must not be merged into their Deployment.
    gated_prober(world)  # never ready: the rollout stays under way
    deployment_id = world.deploy("alpha")
    names = world.names(deployment_id)
    world.cycle()
    assert world.reconciler.records[deployment_id].busy
    assert world.get("Deployment", names.api) is not None
    with world.kube.admin_client(NS) as client:
        client.delete(Deployment, names.api, namespace=NS)
        client.create(from_dict(_their_deployment(names.api)), field_manager="someone-else")
    world.now += world.reconciler.config.rollout_timeout
    _tick(world)
    assert world.reports[-1].failed.get(deployment_id), world.reports[-1]
    live = world.get("Deployment", names.api)
    assert live is not None
    assert STATUS_ANNOTATION not in (live["metadata"].get("annotations") or {}), (
        "their Deployment was annotated"
    )
    managers = {e["manager"] for e in live["metadata"].get("managedFields") or []}
    assert not {m for m in managers if m.startswith(FIELD_MANAGER)}, managers


class ScriptedReconciler:
    """Duck-types the reconciler for `Service.cycle`: answers each cycle with the next report."""

    in_progress = True

    def __init__(self, reports: list[CycleReport]) -> None:
        self.records: dict[str, Any] = {}
        self._reports = iter(reports)

    def run_once(self, now: datetime, *, wait: float | None = None, poll: bool = True) -> CycleReport:
        return next(self._reports)

    def close(self, timeout: float | None = None) -> bool:
        return True


def _service(reports: list[CycleReport]) -> Service:
    settings = load_settings(base_env(status_reporting="off"))
    clock = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=2 * i) for i in range(100))
    with control_plane_client(settings) as unused:
        return Service(settings, ScriptedReconciler(reports), unused, clock=lambda: next(clock))  # type: ignore[arg-type]


def test_a_tick_during_a_control_plane_outage_is_not_a_successful_poll() -> None:
    # A tick lists nothing on the control plane: its report's control_plane_ok says nothing about it.
    # The last-successful-poll gauge (what an outage alert watches) must not move at a tick, or a
    # rollout under way during an outage hides the outage.
    outage = CycleReport(control_plane_ok=False, errors=["control plane: unreachable"])
    service = _service([CycleReport(), outage, CycleReport(), CycleReport()])
    service.cycle()
    good = metrics.LAST_SUCCESSFUL_POLL._value.get()
    service.cycle()
    service.cycle(poll=False)
    service.cycle(poll=False)
    assert metrics.LAST_SUCCESSFUL_POLL._value.get() == good


def test_a_refused_prune_is_said_once_even_with_ticks_in_between(caplog: pytest.LogCaptureFixture) -> None:
    # "Refused prunes and foreign objects repeat every cycle until something changes: say each once."
    # Ticks run no prune: their empty report must not make the next poll say it all again.
    refused = "11111111-1111-4111-8111-111111111111"

    def poll() -> CycleReport:
        return CycleReport(prune_refused={refused: "within the prune window"})

    service = _service([poll(), CycleReport(), poll(), CycleReport(), poll()])
    with caplog.at_level(logging.WARNING, logger="listener.service"):
        service.cycle()
        service.cycle(poll=False)
        service.cycle()
        service.cycle(poll=False)
        service.cycle()
    said = [r for r in caplog.records if f"not pruned {refused}" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def _move(world: World, deployment_id: str, namespace: str) -> None:
    with world.emulator.store._lock:
        world.emulator.store.deployments[deployment_id]["source_config"]["listener_config"][
            "k8s_namespace"
        ] = namespace


def test_prune_never_runs_alongside_a_ticks_step_for_another_namespace(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prune waits for any step "queued for another namespace than its placement now" (`_stepping`).
    # A tick queues steps too: the namespace it queued one for must be known, or a deployment moved
    # back and forth looks placed where its running step is not writing.
    gates: dict[str, tuple[threading.Event, threading.Event]] = {}

    def prober(namespace: str, service: str) -> bool:
        gate = gates.get(namespace)
        if gate is not None:
            gate[0].set()
            gate[1].wait(30)
        return False

    with_probe(world, prober, cycle_wait=0.5)
    pruned: list[str] = []
    real_run = cycle_module.prune.run

    def run(*args: Any, **kwargs: Any) -> Any:
        pruned.append(threading.current_thread().name)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(cycle_module.prune, "run", run)
    queue = world.reconciler._queue
    try:
        mover = world.deploy("mover")
        world.cycle(wait=60)  # placed in NS, rolling (never healthy)
        assert world.reconciler.records[mover].busy
        gates[NS] = (threading.Event(), threading.Event())
        _tick(world)  # its step holds in the probe in NS
        assert gates[NS][0].wait(10)
        _move(world, mover, OTHER_NS)
        pruned.clear()
        world.cycle(wait=0)  # busy: not queued again; prune waits (its step is for NS)
        assert pruned == []
        gates.pop(NS)[1].set()
        assert queue.wait([mover], 10)
        gates[OTHER_NS] = (threading.Event(), threading.Event())
        _tick(world)  # steps the move to OTHER_NS (the last poll's placement), holds in the probe there
        assert gates[OTHER_NS][0].wait(10)
        _move(world, mover, NS)
        world.cycle(
            after=timedelta(seconds=301), wait=0
        )  # a resync: placed in NS again, its step writes OTHER_NS
        assert pruned == [], "prune ran alongside a step writing another namespace"
    finally:
        for _, release in gates.values():
            release.set()


class _Leading:
    """A leader elector that leads, in one term."""

    term = 1

    def is_leader(self) -> bool:
        return True

    def holder(self) -> str:
        return "this-replica"


def test_a_refused_prune_is_said_once_with_leader_election(caplog: pytest.LogCaptureFixture) -> None:
    # The loop asks `leading()` before every cycle; leading must not forget what was said already.
    refused = "22222222-2222-4222-8222-222222222222"
    reports = [CycleReport(prune_refused={refused: "within the prune window"}) for _ in range(3)]
    service = _service(reports)
    service._leader = _Leading()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="listener.service"):
        for _ in range(3):
            assert service.leading()
            service.cycle()
    said = [r for r in caplog.records if f"not pruned {refused}" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_ticks_step_nothing_after_a_poll_that_could_not_list(world: World) -> None:
    """A failed list changes nothing (the loop's rule): the ticks after it must not go on rolling out
    what the last good list said (that deployment may have been deleted or superseded since)."""
    ready = gated_prober(world)
    rolling = world.deploy("rolling")
    world.cycle()
    assert world.reconciler.records[rolling].busy
    ready.add(world.names(rolling).api)
    world.emulator.faults.add(kind="error", status=503, path="/v2/deployments", times=100)
    outage = world.cycle()
    assert not outage.control_plane_ok
    writes = world.writes()
    _tick(world)
    assert world.reports[-1].deployed == [], "nothing moves on a list that failed"
    assert world.writes() == writes
    world.emulator.faults.clear()
    assert world.cycle().deployed == [rolling], "the next good poll goes on"
