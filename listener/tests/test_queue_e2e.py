"""The work queue and drift detection, end to end: the real reconciler over real HTTP against the
control-plane emulator and fakekube. Every scenario synchronises on events or state, never on sleeps.

* a resync with no drift makes no write (fakekube's request log counts every write);
* a deleted or hand-edited object is re-applied at the resync, and counted as drift;
* one deployment's slow step does not delay another deployment's new revision;
* retries are per deployment, back off, and honour the API server's Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from e2e import IMAGE_2, NS, OTHER_NS, World, gated_prober, make_reconciler
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from listener import metrics
from listener.controlplane import new_image_revision
from listener.kube import FIELD_MANAGER
from listener.reconcile import unit

RESYNC = timedelta(seconds=301)


def _deployed(world: World, *names: str) -> list[str]:
    ids = [world.deploy(name) for name in names]
    report = world.cycle()
    assert sorted(report.deployed) == sorted(ids), report
    return ids


def _drift_total() -> float:
    return metrics.DRIFT_CORRECTIONS._value.get()


def test_a_resync_without_drift_reads_but_writes_nothing(world: World) -> None:
    _deployed(world, "alpha", "beta")
    world.cycle()  # a steady cycle: nothing to do
    requests, writes = len(world.kube.log.records()), len(world.kube.log.writes())
    report = world.cycle(after=RESYNC)
    assert report.ok, report
    assert report.drifted == []
    assert len(world.kube.log.writes()) == writes, [
        (r.verb, r.kind, r.name) for r in world.kube.log.writes()[writes:]
    ]
    reads = world.kube.log.records()[requests:]
    assert reads, "the resync looked"
    assert {r.verb for r in reads} <= {"list", "other"}, {(r.verb, r.kind) for r in reads}


def test_a_steady_cycle_makes_no_kubernetes_request(world: World) -> None:
    _deployed(world, "alpha")
    requests = len(world.kube.log.records())
    assert world.cycle().ok
    assert world.kube.log.records()[requests:] == []


def test_a_deleted_object_is_reapplied_at_the_resync_and_counted(world: World) -> None:
    (deployment_id,) = _deployed(world, "alpha")
    names = world.names(deployment_id)
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        client.delete(Deployment, names.api, namespace=NS)
    assert world.get("Deployment", names.api) is None
    before, writes = _drift_total(), len(world.kube.log.writes())
    report = world.cycle(after=RESYNC)
    assert report.drifted == [f"Deployment {NS}/{names.api}"]
    assert world.get("Deployment", names.api) is not None
    assert _drift_total() == before + 1
    written = [(r.verb, r.kind, r.name) for r in world.kube.log.writes()[writes:]]
    assert written == [("apply", "Deployment", names.api)], "only the drifted object is written"


def test_a_hand_edited_object_is_reverted_at_the_resync(world: World) -> None:
    (deployment_id,) = _deployed(world, "alpha")
    names = world.names(deployment_id)
    live = world.get("Deployment", names.api)
    assert live is not None
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    with world.kube.admin_client(NS) as client:  # `kubectl edit`: an update by another field manager
        container = {"name": live["spec"]["template"]["spec"]["containers"][0]["name"], "image": IMAGE_2}
        client.patch(
            Deployment,
            names.api,
            {"spec": {"template": {"spec": {"containers": [container]}}}},
            namespace=NS,
            patch_type=PatchType.STRATEGIC,
            field_manager="kubectl-edit",
        )
    edited = world.get("Deployment", names.api)
    assert edited is not None
    assert edited["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_2
    before = _drift_total()
    report = world.cycle(after=RESYNC)
    assert report.drifted == [f"Deployment {NS}/{names.api}"]
    reverted = world.get("Deployment", names.api)
    assert reverted is not None
    assert reverted["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert _drift_total() == before + 1
    writes = len(world.kube.log.writes())
    assert world.cycle(after=RESYNC).drifted == [], "corrected once, then steady"
    assert len(world.kube.log.writes()) == writes


def test_a_foreign_object_in_place_of_a_deleted_one_is_never_written(world: World) -> None:
    (deployment_id,) = _deployed(world, "alpha")
    names = world.names(deployment_id)
    with world.kube.admin_client(NS) as client:
        client.delete(Deployment, names.api, namespace=NS)
        theirs = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": names.api, "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "theirs"}},
                "template": {
                    "metadata": {"labels": {"app": "theirs"}},
                    "spec": {"containers": [{"name": "web", "image": IMAGE_2}]},
                },
            },
        }
        client.apply(from_dict(theirs), field_manager="kubectl")
    writes = len(world.kube.log.writes())
    report = world.cycle(after=RESYNC)
    assert any("no longer managed by this listener" in e for e in report.errors), report
    ours = [r for r in world.kube.log.writes()[writes:] if r.name == names.api]
    assert ours == [], "someone else's object is never written"


def test_a_slow_deployment_does_not_delay_another_ones_new_revision(world: World) -> None:
    entered, release = threading.Event(), threading.Event()
    slow_service: list[str] = []

    def prober(namespace: str, service: str) -> bool:
        if service in slow_service:
            entered.set()
            release.wait(30)  # bounded: the test releases it
        return True

    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS,), prober=prober
    )
    fast = world.deploy("fast")
    assert world.cycle().deployed == [fast]
    slow = world.deploy("slow")
    slow_service.append(world.names(slow).api)
    try:
        world.now += timedelta(seconds=10)
        first = world.reconciler.run_once(world.now, wait=0.0)
        assert entered.wait(30), "the slow deployment's step reached its health check"
        assert slow not in first.deployed
        world.client.patch_deployment(fast, new_image_revision(IMAGE_2))
        report = world.cycle()  # waits for what it queued: the fast one, not the slow one
        assert report.applied == [fast], report
        assert report.deployed == [fast]
        assert world.reconciler.in_progress, "the slow step is still running"
        assert not release.is_set()
    finally:
        release.set()
    assert world.reconciler.close(30)


def test_retries_back_off_per_deployment_and_honour_retry_after(world: World) -> None:
    held = world.deploy("held")
    free = world.deploy("free")
    held_names = world.names(held)
    world.kube.faults.inject(
        rf".*/statefulsets/{held_names.postgres}$", 429, times=10_000, method="PATCH", retry_after=40
    )
    report = world.cycle()
    assert report.deployed == [free], "the other deployment is not held up"
    assert any("429" in e for e in report.errors)
    attempt = world.reconciler.records[held].attempt
    assert attempt is not None
    assert attempt.retry_at is not None
    assert attempt.retry_at - world.now >= timedelta(seconds=40), "Retry-After is a floor"
    tries = world.kube.log.count(verb="apply", kind="StatefulSet", name=held_names.postgres)
    for _ in range(3):  # 30 s: within Retry-After, not tried again
        world.cycle()
    assert world.kube.log.count(verb="apply", kind="StatefulSet", name=held_names.postgres) == tries
    world.cycle(after=timedelta(seconds=11))
    assert world.kube.log.count(verb="apply", kind="StatefulSet", name=held_names.postgres) == tries + 1
    world.kube.faults.clear()
    for _ in range(10):
        if world.revision_status(held)[1] == "DEPLOYED":
            break
        world.cycle(after=timedelta(seconds=60))
    assert world.revision_status(held)[1] == "DEPLOYED"


def test_the_field_manager_is_the_listeners(world: World) -> None:
    # The drift baseline is the listener's own Apply entry: make sure the applies carry its name.
    _deployed(world, "alpha")
    applies = world.kube.log.records(verb="apply")
    assert applies
    assert {r.field_manager for r in applies} <= {FIELD_MANAGER}


# --- with watches: the inventory stays current between cycles -----------------------------------


def _until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for state the watch thread changes (bounded; checks every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        threading.Event().wait(0.02)


def _watching(world: World) -> World:
    world.reconciler.close(5.0)
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), watch=True
    )
    return world


def _all_watched(world: World) -> bool:
    inventory = world.reconciler.inventory
    kinds = sorted(world.reconciler.served & unit.STRAY_KINDS)
    return all(inventory.watched(ns, v, k) for ns in (NS, OTHER_NS) for v, k in kinds)


def test_with_watches_a_resync_lists_nothing_and_a_deletion_is_seen_at_once(world: World) -> None:
    (deployment_id,) = _deployed(_watching(world), "alpha")
    _until(lambda: _all_watched(world), "every table watched")
    names = world.names(deployment_id)
    inventory = world.reconciler.inventory
    with world.kube.admin_client(NS) as client:
        client.delete(Deployment, names.api, namespace=NS)
    _until(lambda: inventory.lookup(NS, "apps/v1", "Deployment", names.api) is None, "the DELETED event")
    lists, writes = inventory.lists, len(world.kube.log.writes())
    report = world.cycle(after=RESYNC)
    assert report.drifted == [f"Deployment {NS}/{names.api}"]
    assert inventory.lists == lists, "the drift check answered from the watched tables"
    assert [(r.verb, r.name) for r in world.kube.log.writes()[writes:]] == [("apply", names.api)]


def test_a_watch_that_the_server_ends_resumes_without_listing_again(world: World) -> None:
    (deployment_id,) = _deployed(_watching(world), "alpha")
    _until(lambda: _all_watched(world), "every table watched")
    watcher = world.reconciler._watcher
    assert watcher is not None
    relists = watcher.relists
    watches = world.kube.log.count(verb="watch")
    world.kube.store.end_watches()
    _until(lambda: world.kube.log.count(verb="watch") >= 2 * watches, "every watch resumed")
    names = world.names(deployment_id)
    with world.kube.admin_client(NS) as client:
        client.delete(Deployment, names.api, namespace=NS)
    inventory = world.reconciler.inventory
    _until(lambda: inventory.lookup(NS, "apps/v1", "Deployment", names.api) is None, "the DELETED event")
    assert watcher.relists == relists, "resumed from the last resourceVersion, not listed again"
    resumed = world.kube.log.records(verb="watch")[watches:]
    assert all(r.query.get("resourceVersion") not in (None, "", "0") for r in resumed)


def test_a_watch_told_410_gone_lists_again_and_keeps_following(world: World) -> None:
    (deployment_id,) = _deployed(_watching(world), "alpha")
    _until(lambda: _all_watched(world), "every table watched")
    watcher = world.reconciler._watcher
    assert watcher is not None
    # etcd compacts at a revision newer than what the watchers last saw: a write none of them watches
    # (a cluster-scoped Namespace), then the compaction, makes that so whatever the watchers' last
    # list returned (compacting first left a watcher that had listed after the last write able to resume).
    with world.kube.admin_client() as client:
        client.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unwatched"}}))
    world.kube.store.compact()
    world.kube.store.end_watches()
    _until(lambda: watcher.relists > 0, "a 410 Gone and a new list")
    _until(lambda: _all_watched(world), "every table watched again")
    names = world.names(deployment_id)
    with world.kube.admin_client(NS) as client:
        client.delete(Deployment, names.api, namespace=NS)
    inventory = world.reconciler.inventory
    _until(lambda: inventory.lookup(NS, "apps/v1", "Deployment", names.api) is None, "the DELETED event")
    assert world.cycle(after=RESYNC).drifted == [f"Deployment {NS}/{names.api}"]
    assert world.get("Deployment", names.api) is not None


def test_a_tick_steps_only_the_rollouts_under_way_and_lists_nothing(world: World) -> None:
    """Between polls the service ticks every 2 s while rollouts are under way (`run_once(poll=False)`):
    a tick must cost the rollouts' own reads and writes, never a control-plane list or an inventory
    relist, whatever N is; a deployment created meanwhile waits for the next poll."""
    ready = gated_prober(world)
    rolling, steady = world.deploy("rolling"), world.deploy("steady")
    ready.add(world.names(steady).api)
    first = world.cycle()
    assert first.deployed == [steady], first
    assert world.reconciler.records[rolling].busy
    late = world.deploy("late")
    ready.update({world.names(rolling).api, world.names(late).api})
    cp_before, kube_before = len(world.emulator.requests), len(world.kube.log.records())

    world.now += timedelta(seconds=2)
    tick = world.reconciler.run_once(world.now, poll=False)
    assert tick.deployed == [rolling], tick
    assert late not in tick.applied, "not listed yet: the next poll picks it up"
    listed = [r for r in world.emulator.requests[cp_before:] if r.method == "GET"]
    assert listed == [], "a tick lists nothing on the control plane"
    looked = world.kube.log.records()[kube_before:]
    assert [r for r in looked if r.verb == "list"] == [], "nor in the cluster"
    steady_names = world.names(steady)
    assert [r for r in looked if (r.name or "").startswith(steady_names.base)] == [], (
        "a deployed one is left alone"
    )

    report = world.cycle()
    assert report.deployed == [late], report
