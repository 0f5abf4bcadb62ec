"""Issue 10, end to end: every scenario that made the listener do what an operator would never accept,
driven against the control-plane emulator and the fake Kubernetes API over real HTTP.

Each test names the scenario from the issue's "Why"; each failed on the reconciler before it.
Time is passed in explicitly (`world.cycle(after=...)`), so windows and deadlines cost no waiting.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from e2e import (
    ALLOW_EMPTY,
    BAD_IMAGE,
    IMAGE_2,
    KIND_VERSIONS,
    NS,
    OTHER_NS,
    PRUNE_WINDOW,
    World,
    make_reconciler,
    prepared_cluster,
)
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from listener import naming
from listener.controlplane import ControlPlaneClient
from listener.controlplane.builders import new_image_revision
from listener.controlplane.models import DeploymentPatchRequest, ResourceSpec
from listener.emulator import BackgroundServer, Emulator
from listener.kube import FIELD_MANAGER
from listener.spec import DEFAULT_POSTGRES_IMAGE, RenderOptions
from tools.fakekube import FakeKube, PodState

GATEWAY = RenderOptions(
    run_as_non_root=True, routing="httproute", gateway_name="gw", hostname="agents.example.com"
)


def values(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def running(world: World, names: naming.ObjectNames, namespace: str = NS) -> bool:
    return world.get("Deployment", names.api, namespace) is not None


def volumes(world: World, names: naming.ObjectNames, namespace: str = NS) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in world.list("v1", "PersistentVolumeClaim", namespace)
        if names.postgres in p["metadata"]["name"]
    ]


def resource_patch(**fields: Any) -> DeploymentPatchRequest:
    return DeploymentPatchRequest.model_validate({"source_config": {"resource_spec": fields}})


def with_reconciler(world: World, **config: Any) -> World:
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), **config
    )
    return world


# --- 1. pruning that one bad answer cannot trigger: the fault-combination table -------------------

EVERY_ID = r"/v2/deployments/[0-9a-f-]{36}"
SCHEDULE = [timedelta(seconds=10), timedelta(minutes=2), timedelta(minutes=2), timedelta(minutes=2)]
"""Cycles spanning more than the 5-minute window (plus more later where a case needs them)."""


@dataclass
class Fleet:
    """Three running Agent Servers, with data_retention=delete so any wrong prune loses a database."""

    world: World
    ids: list[str]
    names: list[naming.ObjectNames]
    pvcs: dict[str, list[str]]

    def running(self) -> set[str]:
        return {d for d, n in zip(self.ids, self.names, strict=True) if running(self.world, n)}

    def with_data(self) -> set[str]:
        return {
            d
            for d, n in zip(self.ids, self.names, strict=True)
            if all(self.world.get("PersistentVolumeClaim", p) is not None for p in self.pvcs[d])
        }


LEAN = RenderOptions(run_as_non_root=True, queue_enabled=False)
"""Fewer objects per deployment, and no resync inside a case: the prune rules are what is under test."""
NO_RESYNC = timedelta(hours=2)


@pytest.fixture
def fleet(world: World) -> Fleet:
    with_reconciler(world, data_retention="delete", options=LEAN, resync_interval=NO_RESYNC)
    ids = [world.deploy(name) for name in ("alpha", "bravo", "charlie")]
    assert sorted(world.cycle().deployed) == sorted(ids)
    names = [world.names(d) for d in ids]
    pvcs = {d: volumes(world, n) for d, n in zip(ids, names, strict=True)}
    assert all(pvcs.values())
    return Fleet(world, ids, names, pvcs)


def empty_list(fleet: Fleet) -> None:
    fleet.world.emulator.faults.add(path="/v2/deployments", kind="short_page", drop=100)


def short_page(fleet: Fleet) -> None:
    fleet.world.emulator.faults.add(path="/v2/deployments", kind="short_page", drop=1)


def proxy_404_on_a_short_page(fleet: Fleet) -> None:
    # A proxy or ingress in front of the control plane answering 404 with its own body.
    short_page(fleet)
    fleet.world.emulator.faults.add(path=EVERY_ID, method="GET", kind="error", status=404, detail="Not Found")


def documented_404s_but_no_listener_record(fleet: Fleet) -> None:
    # Every answer about the deployments says "gone" in the control plane's own words, but the
    # listener's own record is not answered (as after a wrong LISTENER_WORKSPACE_ID).
    empty_list(fleet)
    for d in fleet.ids:
        fleet.world.emulator.faults.add(
            path=f"/v2/deployments/{d}",
            method="GET",
            kind="error",
            status=404,
            detail=f"Deployment ID {d} not found.",
        )
    fleet.world.emulator.faults.add(
        path=f"/v2/listeners/{fleet.world.listener_id}",
        method="GET",
        kind="error",
        status=404,
        detail=f"Listener ID {fleet.world.listener_id} not found.",
    )


def restore_lost_everything(fleet: Fleet) -> None:
    # A control plane restored from an older backup: the deployments are really gone (documented
    # 404s), the listener record is there. allowEmpty keeps them.
    with fleet.world.emulator.store._lock:
        for d in fleet.ids:
            fleet.world.emulator.store.deployments.pop(d)


def two_really_deleted(fleet: Fleet) -> None:
    # With three deployments the cap is one per cycle: the second goes a cycle later.
    for d in fleet.ids[1:]:
        fleet.world.client.delete_deployment(d)


def really_deleted(fleet: Fleet) -> None:
    fleet.world.client.delete_deployment(fleet.ids[2])


Case = tuple[Callable[[Fleet], None], int, set[int], str | None]
CASES: dict[str, Case] = {
    # name: (fault, extra cycles after the window, indices pruned by the end, rule named in a refusal)
    "empty list": (empty_list, 2, set(), "still has it"),
    "short page": (short_page, 2, set(), "still has it"),
    "404 without the control plane's body": (proxy_404_on_a_short_page, 2, set(), "proves nothing"),
    "documented 404s, listener record missing": (
        documented_404s_but_no_listener_record,
        2,
        set(),
        "own record",
    ),
    "restore that lost every deployment": (restore_lost_everything, 2, set(), "LISTENER_PRUNE_ALLOW_EMPTY"),
    "cap reached": (two_really_deleted, 2, {1, 2}, "LISTENER_PRUNE_MAX_FRACTION"),
    "every rule holds": (really_deleted, 1, {2}, "pruned from"),
}


@pytest.mark.parametrize(("fault", "extra", "pruned", "rule"), list(CASES.values()), ids=list(CASES))
def test_pruning_fault_combinations(
    fleet: Fleet, fault: Callable[[Fleet], None], extra: int, pruned: set[int], rule: str | None
) -> None:
    fault(fleet)
    reports = [fleet.world.cycle(after=step) for step in SCHEDULE]
    reports += [fleet.world.cycle(after=timedelta(minutes=1)) for _ in range(extra)]

    expected = {fleet.ids[i] for i in pruned}
    assert fleet.running() == set(fleet.ids) - expected
    assert fleet.with_data() == set(fleet.ids) - expected, "a volume goes only with its deployment"
    assert {d for r in reports for d in r.pruned} == expected
    assert all(len(r.pruned) <= 1 for r in reports), "3 deployments x 10 % -> at most one per cycle"
    assert not any(r.pruned for r in reports[:2]), "never within the window"
    refusals = " ".join(why for r in reports for why in r.prune_refused.values())
    if rule:
        assert rule in refusals
    events = [e for e in fleet.world.list("v1", "Event") if e["reason"] == "PruneRefused"]
    assert bool(events) == bool(refusals), "refused prunes are reported as Events"


def test_wrong_workspace_another_control_plane_prunes_nothing(
    fleet: Fleet, make_client: Any, api_key: str
) -> None:
    # LISTENER_WORKSPACE_ID (or the URL) points at another workspace: an empty list, documented 404s
    # for every deployment, and no record of this listener. Nothing may be deleted, however long.
    with BackgroundServer(Emulator(api_key=api_key)) as other:
        client: ControlPlaneClient = make_client(base_url=other.url, tenant_id=other.emulator.tenant_id)
        fleet.world.reconciler = make_reconciler(
            client,
            fleet.world.kube,
            fleet.world.listener_id,
            fleet.world.servers,
            (NS, OTHER_NS),
            data_retention="delete",
            prune=ALLOW_EMPTY,
            options=LEAN,
            resync_interval=NO_RESYNC,
        )
        reports = [fleet.world.cycle(after=timedelta(minutes=4)) for _ in range(4)]
    assert fleet.running() == set(fleet.ids)
    assert fleet.with_data() == set(fleet.ids)
    assert all(r.pruned == [] for r in reports)
    assert all("own record" in why for why in reports[-1].prune_refused.values())
    assert set(reports[-1].prune_refused) == set(fleet.ids)


def test_a_restart_mid_window_neither_resets_nor_skips_it(fleet: Fleet) -> None:
    world = fleet.world
    gone = fleet.ids[2]
    world.client.delete_deployment(gone)
    assert world.cycle().pruned == []  # the streak starts, recorded in the cluster
    started = world.now
    world.cycle(after=timedelta(minutes=2))

    with_reconciler(world, data_retention="delete", options=LEAN, resync_interval=NO_RESYNC)  # a new process
    assert world.cycle(after=timedelta(minutes=2)).pruned == [], "not skipped: 4 of 5 minutes"
    assert world.now - started < PRUNE_WINDOW
    report = world.cycle(after=timedelta(minutes=1, seconds=30))
    assert report.pruned == [gone], "not reset either: pruned 5 minutes after the first sighting"
    assert fleet.running() == set(fleet.ids[:2])


# --- 2. ownership that labels alone cannot fake ------------------------------------------------


def forged(name: str, listener_id: str, deployment_id: str) -> dict[str, Any]:
    labels = {
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_LISTENER_ID: listener_id,
        naming.LABEL_DEPLOYMENT_ID: deployment_id,
        "app": name,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/theirs:1"}]},
            },
        },
    }


def test_an_object_carrying_our_labels_that_we_did_not_write_is_never_deleted(world: World) -> None:
    world.deploy("keeper")
    world.cycle()
    # Someone else's workload, labelled (by copy-paste or malice) as this listener's, for a
    # deployment id the control plane answers "not found" for.
    theirs = forged("someone-elses", world.listener_id, "0f000000-0000-4000-8000-0000000000f0")
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        client.apply(from_dict(theirs), field_manager="kubectl")
    with_reconciler(world, prune=ALLOW_EMPTY)
    reports = [world.cycle(after=timedelta(minutes=3)) for _ in range(4)]
    assert world.get("Deployment", "someone-elses") is not None
    assert all(r.pruned == [] for r in reports)
    assert any("someone-elses" in w and "not written by it" in w for r in reports for w in r.warnings)
    ours = [r for r in world.kube.log.writes() if r.name == "someone-elses" and r.field_manager != "kubectl"]
    assert ours == [], "never written, never deleted"


def test_a_deployment_id_label_that_is_not_a_uuid_is_skipped_with_a_warning(world: World) -> None:
    keeper = world.deploy("keeper")
    world.cycle()
    odd = forged("odd-label", world.listener_id, "not-a-uuid")
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        client.apply(from_dict(odd), field_manager=FIELD_MANAGER, force=True)
    report = world.cycle(after=timedelta(minutes=6))  # a resync: the inventory reads it
    assert report.ok, report
    assert any("'not-a-uuid'" in w and "not a UUID" in w for w in report.warnings)
    assert world.get("Deployment", "odd-label") is not None
    world.client.patch_deployment(keeper, new_image_revision(IMAGE_2))
    assert world.cycle().deployed == [keeper], "every cycle still finishes"


# --- 3. API-server rejections are outcomes ---------------------------------------------------------


def test_a_revision_the_api_server_rejects_fails_with_its_message_at_once(world: World) -> None:
    deployment_id = world.deploy("rejected")
    names = world.names(deployment_id)
    world.kube.faults.inject(rf".*/deployments/{names.api}$", 422, method="PATCH", times=100)
    report = world.cycle()
    reason = report.failed[deployment_id]
    assert "rejected it" in reason
    assert "422" in reason
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"
    assert not world.reconciler.in_progress, "no 2 s poll for ever"
    warnings = [e for e in world.list("v1", "Event") if e["reason"] == "RolloutFailed"]
    assert warnings
    assert "422" in warnings[0]["message"]
    writes = world.writes()
    for _ in range(3):
        assert world.cycle().failed == {}
    assert world.writes() == writes, "not retried until the control plane moves"


def test_transient_errors_back_off_and_the_deadline_keeps_running(world: World) -> None:
    deployment_id = world.deploy("flaky")
    world.kube.faults.inject(r".*/statefulsets/.*", 503, times=10_000, method="PATCH")
    tries = []
    for _ in range(40):  # 80 s of 2 s ticks
        world.cycle(after=timedelta(seconds=2))
        tries.append(len(world.kube.log.records(verb="apply", kind="StatefulSet")))
    assert world.revision_status(deployment_id)[1] == "DEPLOYING"
    assert 3 <= tries[-1] <= 8, f"exponential backoff, not a hot loop: {tries[-1]} applies in 80 s"
    report = world.cycle(after=timedelta(seconds=600))
    assert report.failed[deployment_id].startswith("not ready after")
    assert "503" in report.failed[deployment_id], "the last error is the reason"
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"


def test_bad_control_plane_data_fails_before_anything_is_written(world: World) -> None:
    deployment_id = world.deploy(
        "greedy",
        resource_spec=ResourceSpec(cpu=4.0, cpu_limit=2.0, sidecars=[{"name": "api-server", "image": "x:1"}]),
    )
    report = world.cycle()
    reason = report.failed[deployment_id]
    assert "source_config.resource_spec.cpu: 4.0 is above cpu_limit (2.0)" in reason
    assert "source_config.resource_spec.sidecars[0].name: 'api-server' is reserved" in reason
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"
    assert [r for r in world.kube.log.writes() if r.kind != "Event"] == []


# --- 4. discovery of optional kinds ----------------------------------------------------------------


@pytest.fixture
def bare_kube() -> Iterator[FakeKube]:
    with prepared_cluster(NS, OTHER_NS, crds=()) as fake:
        yield fake


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (GATEWAY, "HTTPRoute (gateway.networking.k8s.io/v1): install the Gateway API CRDs"),
        (
            RenderOptions(run_as_non_root=True, autoscaler="keda"),
            "ScaledObject (keda.sh/v1alpha1): install KEDA",
        ),
    ],
    ids=["gateway-api", "keda"],
)
def test_a_cluster_without_the_optional_crds_fails_the_revision_clearly(
    world: World, bare_kube: FakeKube, options: RenderOptions, needle: str
) -> None:
    world.kube = bare_kube
    with_reconciler(world, options=options)
    deployment_id = world.deploy("needs-crds")
    report = world.cycle()
    assert needle in report.failed[deployment_id]
    assert report.errors == [], "the inventory lists only served kinds: no 404 from an unserved one"
    assert [r for r in bare_kube.log.writes() if r.kind != "Event"] == []
    assert world.cycle(after=timedelta(minutes=6)).errors == []


# --- 5. placement changes --------------------------------------------------------------------------


def move(
    world: World, deployment_id: str, *, namespace: str | None = None, listener_id: str | None = None
) -> None:
    """Change a deployment's placement in place, as a control-plane restore or an admin fix would."""
    with world.emulator.store._lock:
        record = world.emulator.store.deployments[deployment_id]
        if namespace is not None:
            record["source_config"]["listener_config"]["k8s_namespace"] = namespace
        if listener_id is not None:
            record["source_config"]["listener_id"] = listener_id


def test_a_deployment_moved_to_another_namespace_runs_there_and_the_old_copy_goes_keeping_its_data(
    world: World,
) -> None:
    with_reconciler(world, options=LEAN, resync_interval=NO_RESYNC)
    world.deploy("keeper")
    mover = world.deploy("mover")
    world.cycle()
    names = world.names(mover)
    old_volumes = volumes(world, names)
    old_password = world.get("Secret", names.postgres_secret)["data"]

    move(world, mover, namespace=OTHER_NS)
    report = world.cycle()
    assert report.deployed == [mover]
    assert running(world, names, OTHER_NS)
    assert running(world, names, NS), "the old copy runs on until the prune rules say otherwise"
    assert any("moved from namespace agents" in w and "empty database" in w for w in report.warnings)

    report = world.cycle(after=PRUNE_WINDOW + timedelta(seconds=1))
    assert report.pruned == [mover]
    assert "moved away from namespace agents" in report.moved[mover]
    assert not running(world, names, NS)
    assert running(world, names, OTHER_NS)
    assert volumes(world, names) == old_volumes, "the data stays where it was"
    assert world.get("Secret", names.postgres_secret)["data"] == old_password


def test_a_deployment_moved_to_another_listener_is_pruned_here_keeping_its_data(world: World) -> None:
    with_reconciler(world, options=LEAN, resync_interval=NO_RESYNC)
    world.deploy("keeper")
    mover = world.deploy("handed-over")
    world.cycle()
    names = world.names(mover)
    other = world.client.create_listener(compute_id="e2e-other-cluster", namespaces=[NS])
    with_reconciler(world, data_retention="delete", options=LEAN, resync_interval=NO_RESYNC)

    move(world, mover, listener_id=str(other.id))
    assert world.cycle().pruned == []
    report = world.cycle(after=PRUNE_WINDOW + timedelta(seconds=1))
    assert report.pruned == [mover]
    assert not running(world, names)
    assert volumes(world, names), "a move never takes the data, even with data_retention=delete"
    assert world.get("Secret", names.postgres_secret) is not None


def test_a_move_to_another_listener_in_the_same_namespace_hands_the_deployment_over(world: World) -> None:
    # Two listeners watching one namespace (object names are per deployment, so they may share it).
    # The new listener refused the old copy's objects as foreign and failed the revision for good,
    # then the old listener pruned its copy: the Agent Server ran nowhere, and its kept password
    # blocked every later revision ("not managed by this listener").
    with_reconciler(world, options=LEAN, resync_interval=NO_RESYNC)
    world.deploy("keeper")
    mover = world.deploy("mover")
    world.cycle()
    names = world.names(mover)
    password = world.get("Secret", names.postgres_secret)["data"]
    old_volumes = volumes(world, names)
    other = world.client.create_listener(compute_id="e2e-other-cluster", namespaces=[NS])
    new_listener = make_reconciler(
        world.client,
        world.kube,
        str(other.id),
        world.servers,
        (NS,),
        options=LEAN,
        resync_interval=NO_RESYNC,
        password_prefix="other-listener-password",
    )

    move(world, mover, listener_id=str(other.id))
    deployed_here: list[str] = []
    for _ in range(5):
        world.now += timedelta(minutes=2)
        world.reconciler.run_once(world.now)
        report = new_listener.run_once(world.now)
        assert report.failed == {}, "waiting for the old copy is not a failure"
        deployed_here += report.deployed
        assert running(world, names), "one copy runs throughout"
    assert deployed_here == [mover]
    assert world.get("Deployment", names.api)["metadata"]["labels"][naming.LABEL_LISTENER_ID] == str(other.id)
    assert world.get("Secret", names.postgres_secret)["data"] == password, "the same database password"
    assert volumes(world, names) == old_volumes, "the same database volume"
    # The old listener keeps reporting the data it kept; it must not advise deleting a live database.
    notes = " ".join(world.cycle(after=NO_RESYNC).warnings)  # at its next resync
    assert f"moved to listener {other.id}" in notes
    assert "in use, keep it" in notes
    assert "delete it by hand" not in notes


def test_a_deployment_answered_without_a_listener_is_not_a_move(world: World) -> None:
    # `listener_id` is immutable in the real API (a change is delete + create, control-plane-api.md
    # §9.1): a record that names no listener (a restore, a broken row) says nothing about where it runs.
    with_reconciler(world, data_retention="delete", options=LEAN, resync_interval=NO_RESYNC)
    world.deploy("keeper")
    victim = world.deploy("victim")
    world.cycle()
    names = world.names(victim)
    with world.emulator.store._lock:
        world.emulator.store.deployments[victim]["source_config"]["listener_id"] = None

    reports = [world.cycle(after=timedelta(minutes=2)) for _ in range(5)]
    assert not any(r.pruned for r in reports)
    assert running(world, names), "an Agent Server is never pruned on an answer that places it nowhere"
    assert "without a listener" in reports[-1].prune_refused[victim]


@pytest.mark.parametrize(
    "oddity",
    [
        pytest.param({"source": "langsmith_hosted"}, id="a source the service added"),
        pytest.param({"cpu": 12.0}, id="a cpu outside the documented request bounds"),
    ],
)
def test_another_teams_odd_deployment_does_not_stop_this_listener(
    world: World, oddity: dict[str, Any]
) -> None:
    # The list is the whole workspace's (there is no listener filter, control-plane-api.md §9.3): one
    # deployment of another listener with a value our strict model did not expect made every list
    # unreadable, so no deployment of this listener was rolled out again ("control plane unavailable").
    with_reconciler(world, options=LEAN, resync_interval=NO_RESYNC)
    ours = world.deploy("ours")
    other = world.client.create_listener(compute_id="e2e-other-cluster", namespaces=[NS])
    theirs = world.deploy("theirs")
    with world.emulator.store._lock:
        record = world.emulator.store.deployments[theirs]
        record["source_config"]["listener_id"] = str(other.id)
        if "source" in oddity:
            record["source"] = oddity["source"]
        else:
            record["source_config"]["resource_spec"] = {**record["source_config"]["resource_spec"], **oddity}

    report = world.cycle()
    assert report.control_plane_ok, report.errors
    assert report.deployed == [ours]


# --- 6. one object set per revision, pruned per object ----------------------------------------------


def test_autoscaling_on_keeps_the_replicas_and_off_removes_the_hpa(world: World) -> None:
    deployment_id = world.deploy("scaled", resource_spec=ResourceSpec(min_scale=3))
    world.cycle()
    names = world.names(deployment_id)
    assert world.get("Deployment", names.api)["spec"]["replicas"] == 3

    world.client.patch_deployment(deployment_id, resource_patch(min_scale=3, max_scale=6))
    assert world.cycle().deployed == [deployment_id]
    api = world.get("Deployment", names.api)
    assert api["spec"]["replicas"] == 3, "handed over to the autoscaler, not reset to 1"
    hpa_version = KIND_VERSIONS["HorizontalPodAutoscaler"]
    assert world.get("HorizontalPodAutoscaler", names.api, api_version=hpa_version) is not None

    world.client.patch_deployment(deployment_id, resource_patch(min_scale=2, max_scale=2))
    report = world.cycle()
    assert report.deployed == [deployment_id]
    assert world.get("HorizontalPodAutoscaler", names.api, api_version=hpa_version) is None
    assert f"HorizontalPodAutoscaler {names.api}" in report.pruned_objects
    assert world.get("Deployment", names.api)["spec"]["replicas"] == 2


def test_each_revision_reads_its_own_immutable_env_secret(world: World) -> None:
    deployment_id = world.deploy("configured", secrets={"A": "1", "B": "2"})
    world.cycle()
    names = world.names(deployment_id)
    first = world.env_secret(deployment_id)
    assert first["immutable"] is True
    assert {"A": "1", "B": "2"}.items() <= values(first).items()

    # A failed revision with new values: the running pods' Secret must not change.
    world.kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, image=BAD_IMAGE)
    world.client.patch_deployment(
        deployment_id, new_image_revision(BAD_IMAGE, secrets={"A": "changed", "B": "2"})
    )
    assert deployment_id in world.cycle().failed
    again = world.get("Secret", first["metadata"]["name"])
    assert values(again) == values(first), "a failed revision cannot change what running pods read"

    # A good revision that removes B: gone from what the pods read; unused Secrets pruned.
    world.client.patch_deployment(deployment_id, new_image_revision(IMAGE_2, secrets={"A": "3"}))
    report = world.cycle()
    assert report.deployed == [deployment_id]
    current = world.env_secret(deployment_id)
    assert values(current)["A"] == "3"
    assert "B" not in values(current), "a secret removed in the control plane is gone"
    assert world.env_secret_names(names) == [current["metadata"]["name"]], "old revisions' Secrets pruned"


# --- 7. routes ---------------------------------------------------------------------------------------


def test_names_that_slug_the_same_never_share_a_route(world: World) -> None:
    with_reconciler(world, options=GATEWAY)
    first = world.deploy("My Agent")
    second = world.deploy("my-agent")
    assert sorted(world.cycle().deployed) == sorted([first, second])
    paths = set()
    for deployment_id in (first, second):
        route = world.get(
            "HTTPRoute", world.names(deployment_id).api, api_version="gateway.networking.k8s.io/v1"
        )
        paths.add(route["spec"]["rules"][0]["matches"][0]["path"]["value"])
    assert len(paths) == 2


def test_a_route_that_is_already_served_refuses_the_newcomer(world: World) -> None:
    with_reconciler(world, options=GATEWAY)
    deployment_id = world.deploy("newcomer")
    names = world.names(deployment_id)
    squatter = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "squatter", "namespace": OTHER_NS},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["agents.example.com"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/" + names.base}}]}],
        },
    }
    with world.kube.admin_client(OTHER_NS) as client:  # a human with kubectl
        client.apply(from_dict(squatter), field_manager="kubectl")
    reason = world.cycle().failed[deployment_id]
    assert (
        f"route path /{names.base} on host agents.example.com is already served by HTTPRoute {OTHER_NS}/squatter"
        in reason
    )
    assert world.get("HTTPRoute", names.api, api_version="gateway.networking.k8s.io/v1") is None


# --- 8. one writer, stable secrets ----------------------------------------------------------------


def test_two_processes_with_one_listener_id_never_flip_the_password(world: World) -> None:
    deployment_id = world.deploy("contended")
    names = world.names(deployment_id)
    first = world.reconciler
    second = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), password_prefix="second"
    )
    # The second process starts first, generates its passwords, and its first write fails...
    world.kube.faults.inject(r".*/secrets$", 503, times=1, method="POST")
    second.run_once(world.now)
    # ... meanwhile the first creates the Secrets and rolls the deployment out.
    world.now += timedelta(seconds=1)
    assert first.run_once(world.now).deployed == [deployment_id]
    password = world.get("Secret", names.postgres_secret)["data"]
    api = world.get("Deployment", names.api)
    template = api["spec"]["template"]["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH]

    for _ in range(4):  # both keep running, through several resyncs
        for process in (second, first):
            world.now += timedelta(minutes=3)
            process.run_once(world.now)
    assert world.get("Secret", names.postgres_secret)["data"] == password
    after = world.get("Deployment", names.api)
    assert after["spec"]["template"]["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH] == template
    assert after["metadata"]["generation"] == api["metadata"]["generation"], "pods never restarted"
    assert values(world.env_secret(deployment_id))["POSTGRES_URI"].count("generated-password-") == 1


# --- 10. in-cluster stores ----------------------------------------------------------------------


def test_in_cluster_stores_have_a_password_and_a_network_policy(world: World) -> None:
    deployment_id = world.deploy("stored")
    world.cycle()
    names = world.names(deployment_id)
    env = values(world.env_secret(deployment_id))
    redis_password = values(world.get("Secret", names.redis_secret))["REDIS_PASSWORD"]
    assert env["REDIS_URI"].startswith(f"redis://:{redis_password}@")
    redis = world.get("Deployment", names.redis)["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in redis["args"]
    assert "@sha256:" in redis["image"]
    for name in (names.postgres, names.redis):
        assert world.get("NetworkPolicy", name, api_version="networking.k8s.io/v1") is not None


def test_a_renamed_deployment_says_it_starts_on_a_new_database_and_keeps_the_old_one(world: World) -> None:
    # Names follow the control-plane name; `name` is immutable there, but a restore or an admin fix
    # can change it in place. The new object set must not silently replace the data.
    deployment_id = world.deploy("before")
    world.cycle()
    old = world.names(deployment_id)
    old_volumes = volumes(world, old)
    with world.emulator.store._lock:
        world.emulator.store.deployments[deployment_id]["name"] = "after"
    report = world.cycle()
    assert report.deployed == [deployment_id]
    assert any("renamed" in w and "new, empty database" in w for w in report.warnings)
    new = world.names(deployment_id)
    assert running(world, new)
    assert not running(world, old), "the old object set goes once the new revision is ready"
    assert volumes(world, old) == old_volumes, "... except its data"
    assert world.get("Secret", old.postgres_secret) is not None


def test_a_deployment_deleted_mid_rollout_does_not_keep_the_loop_ticking_fast(world: World) -> None:
    world.deploy("keeper")
    deployment_id = world.deploy("abandoned")
    world.kube.controller.set_pod_behaviour(
        PodState.UNREADY, namespace=NS, workload=world.names(deployment_id).api
    )
    world.cycle()
    assert world.reconciler.in_progress
    world.client.delete_deployment(deployment_id)
    world.cycle()
    assert not world.reconciler.in_progress, "nothing will move it forward: back to the normal poll"


def test_a_revision_that_failed_before_its_servers_existed_is_not_retried_after_a_restart(
    world: World,
) -> None:
    deployment_id = world.deploy("storeless")
    names = world.names(deployment_id)
    world.kube.controller.set_pod_behaviour(PodState.UNREADY, namespace=NS, workload=names.postgres)
    world.cycle()
    assert "backing stores not ready" in world.cycle(after=timedelta(seconds=601)).failed[deployment_id]
    assert world.get("Deployment", names.api) is None, "the failure is recorded on the env Secret"
    with_reconciler(world)  # a new process
    writes = world.writes()
    report = world.cycle()
    assert (report.applied, report.failed) == ([], {})
    assert world.writes() == writes, "not re-applied: the control plane has not moved"


def test_a_listener_that_restarts_mid_rollout_does_not_reset_the_deadline(world: World) -> None:
    # Each restart (OOMKilled, evicted, a rolling update of the listener) started the 10-minute deadline
    # again; restarting more often than that kept a stuck revision DEPLOYING for ever. The StatefulSet
    # has no progress deadline of its own (only Deployments have progressDeadlineSeconds).
    deployment_id = world.deploy("stuck")
    names = world.names(deployment_id)
    world.kube.controller.set_pod_behaviour(PodState.UNREADY, namespace=NS, workload=names.postgres)
    world.cycle()
    failed: dict[str, str] = {}
    for _ in range(4):  # a restart every 4 minutes
        with_reconciler(world)
        for _ in range(2):
            failed.update(world.cycle(after=timedelta(minutes=2)).failed)
    assert "backing stores not ready" in failed[deployment_id]
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"


def test_a_failed_revision_is_retried_after_the_listener_is_reconfigured_and_restarted(world: World) -> None:
    # Failure memory is keyed by revision *and* parameters (listener-engineering.md: Argo CD does not
    # reattempt "the same commit-SHA and parameters"; "(revision_id, spec_hash)"). The failure was
    # resumed after a restart whatever the listener's settings were now: an operator who mirrored the
    # Postgres image the failure pointed at, and restarted the listener, saw nothing happen.
    world.kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, image=DEFAULT_POSTGRES_IMAGE)
    deployment_id = world.deploy("blocked-registry")
    failed: dict[str, str] = {}
    for _ in range(3):
        failed.update(world.cycle().failed)
    assert "backing store failed" in failed[deployment_id]

    mirrored = "registry.example.com/mirror/pgvector@sha256:" + "3" * 64
    with_reconciler(world, options=RenderOptions(run_as_non_root=True, postgres_image=mirrored))
    assert world.cycle().applied == [deployment_id]
    # A StatefulSet does not replace a pod that never became ready (kubernetes.io/docs/concepts/
    # workloads/controllers/statefulset/#forced-rollback): the operator deletes it, as documented.
    with world.kube.admin_client(NS) as admin:
        admin.delete(Pod, f"{world.names(deployment_id).postgres}-0", namespace=NS)
    assert world.cycle().deployed == [deployment_id]

    with_reconciler(world, options=RenderOptions(run_as_non_root=True, postgres_image=mirrored))
    writes = world.writes()
    report = world.cycle()
    assert (report.applied, report.failed) == ([], {}), "the same settings resume, as before"
    assert world.writes() == writes


def test_a_store_image_that_cannot_be_pulled_fails_fast(world: World) -> None:
    # kstatus' pod rules (ErrImagePull/ImagePullBackOff, CrashLoopBackOff, ... fail a rollout at once,
    # listener-engineering.md) applied to the API server's pods only: a Postgres image the registry
    # refuses showed "0 of 1 replicas ready" for the whole 10-minute deadline, without the cause.
    world.kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, image=DEFAULT_POSTGRES_IMAGE)
    deployment_id = world.deploy("blocked-registry")
    failed: dict[str, str] = {}
    for _ in range(3):
        failed.update(world.cycle().failed)
    assert "backing store failed" in failed[deployment_id]
    assert "ErrImagePull" in failed[deployment_id] or "ImagePullBackOff" in failed[deployment_id]
