"""The listener end to end: the real reconciler, the real clients, over real HTTP, against the
control-plane emulator and the fake Kubernetes API (with its fake controller). The shared world is in
e2e.py; the issue-10 safety scenarios are in test_safety_e2e.py.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from e2e import (
    ALLOW_EMPTY,
    BAD_IMAGE,
    IMAGE_1,
    IMAGE_2,
    KIND_VERSIONS,
    NS,
    OTHER_NS,
    PRUNE_WINDOW,
    CycleReport,
    World,
    make_reconciler,
)
from lightkube.codecs import from_dict

from listener import naming
from listener.controlplane import ControlPlaneClient
from listener.controlplane.builders import external_docker_deployment, new_image_revision
from listener.kube import FIELD_MANAGER, Cluster
from listener.reconcile import STATUS_ANNOTATION
from tools.fakekube import PodState


def test_first_deployment_becomes_deployed(world: World):
    deployment_id = world.deploy("support-agent", secrets={"OPENAI_API_KEY": "sk-user-secret"})
    report = world.cycle()

    assert report.applied == [deployment_id]
    assert report.deployed == [deployment_id]
    revision_id, status = world.revision_status(deployment_id)
    assert status == "DEPLOYED"

    names = world.names(deployment_id)
    api = world.get("Deployment", names.api)
    assert api is not None
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_1
    assert naming.is_ours(api, world.listener_id)
    annotation = json.loads(api["metadata"]["annotations"][STATUS_ANNOTATION])
    assert annotation.pop("render")  # the hash of what was rendered (a settings change rolls it out again)
    assert annotation == {
        "revision": revision_id,
        "status": "DEPLOYED",
        "reason": "all replicas ready and GET /ok answered 200",
    }
    assert world.get("StatefulSet", names.postgres) is not None
    env = world.env_secret(deployment_id)
    values = {k: base64.b64decode(v).decode() for k, v in env["data"].items()}
    assert values["OPENAI_API_KEY"] == "sk-user-secret"
    assert values["LANGSMITH_HOST_REVISION_ID"] == revision_id
    assert values["POSTGRES_URI"].startswith("postgres://")
    events = [e["reason"] for e in world.list("v1", "Event")]
    assert {"RolloutStarted", "RolloutSucceeded"} <= set(events)
    assert world.servers.requests == [f"/{NS}/{names.api}/ok"]


def test_a_quiet_cycle_costs_only_the_list_pages(world: World):
    world.deploy("quiet")
    world.cycle()
    writes, rv = world.writes(), world.kube.store.resource_version
    world.emulator.requests.clear()
    world.cycle()
    assert world.writes() == writes
    assert world.kube.store.resource_version == rv
    paths = [r.path for r in world.emulator.requests if not r.path.startswith("/v2/listeners")]
    assert paths == ["/v2/deployments"]


def test_new_image_rolls_out_within_one_cycle(world: World):
    deployment_id = world.deploy("support-agent")
    world.cycle()
    password = world.get("Secret", world.names(deployment_id).postgres_secret)["data"]

    world.client.patch_deployment(deployment_id, new_image_revision(IMAGE_2))
    report = world.cycle()

    assert report.applied == [deployment_id]
    assert report.deployed == [deployment_id]
    assert world.revision_status(deployment_id)[1] == "DEPLOYED"
    names = world.names(deployment_id)
    api = world.get("Deployment", names.api)
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_2
    pods = world.list("v1", "Pod")
    images = {
        p["spec"]["containers"][0]["image"] for p in pods if p["metadata"]["name"].startswith(names.api)
    }
    assert images == {IMAGE_2}
    # The database password is generated once and never rotated by a new revision.
    assert world.get("Secret", names.postgres_secret)["data"] == password


def test_bad_image_fails_fast_with_the_reason_and_no_hot_loop(world: World):
    deployment_id = world.deploy("support-agent")
    world.cycle()
    names = world.names(deployment_id)
    world.kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, image=BAD_IMAGE)
    world.client.patch_deployment(deployment_id, new_image_revision(BAD_IMAGE))

    report = world.cycle()

    reason = report.failed[deployment_id]
    assert "ErrImagePull" in reason or "ImagePullBackOff" in reason
    assert BAD_IMAGE in reason
    revision = world.client.list_revisions(deployment_id)[0]
    assert str(revision.status) == "DEPLOY_FAILED"
    # The previous revision keeps serving: its ready pods are still there.
    pods = world.list("v1", "Pod")
    serving = [
        p
        for p in pods
        if p["metadata"]["name"].startswith(names.api) and p["spec"]["containers"][0]["image"] == IMAGE_1
    ]
    assert serving
    warnings = [e for e in world.list("v1", "Event") if e["type"] == "Warning"]
    assert any(BAD_IMAGE in e["message"] for e in warnings)

    writes = world.writes()
    for _ in range(5):
        assert world.cycle().applied == []
    assert world.writes() == writes, "a failed revision must not be re-applied"

    world.kube.controller.set_pod_behaviour(PodState.READY, image=BAD_IMAGE)
    world.client.patch_deployment(deployment_id, new_image_revision(IMAGE_2))
    assert world.cycle().deployed == [deployment_id]


def test_crash_loop_and_unschedulable_are_reported_with_their_reasons(world: World):
    crashing = world.deploy("crashing")
    world.kube.controller.set_pod_behaviour(
        PodState.CRASH_LOOP, namespace=NS, workload=world.names(crashing).api
    )
    report = world.cycle()
    assert "CrashLoopBackOff" in report.failed[crashing]

    pending = world.deploy("pending")
    world.kube.controller.set_pod_behaviour(
        PodState.UNSCHEDULABLE,
        namespace=NS,
        workload=world.names(pending).api,
        message="0/3 nodes are available: 3 Insufficient cpu.",
    )
    first = world.cycle(after=timedelta(seconds=1))
    assert pending not in first.failed, "unschedulable is only a failure after the grace window"
    later = world.cycle(after=timedelta(seconds=30))
    assert "Insufficient cpu" in later.failed[pending]


def test_rollout_that_never_becomes_ready_times_out_with_the_last_reason(world: World):
    deployment_id = world.deploy("slow")
    world.kube.controller.set_pod_behaviour(
        PodState.UNREADY, namespace=NS, workload=world.names(deployment_id).api
    )
    assert world.cycle().failed == {}
    report = world.cycle(after=timedelta(seconds=601))
    assert report.failed[deployment_id].startswith("not ready after")
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"


def test_health_check_gates_deployed(world: World):
    deployment_id = world.deploy("unhealthy")
    world.servers.unhealthy.add(world.names(deployment_id).api)
    report = world.cycle()
    assert report.deployed == []
    assert world.revision_status(deployment_id)[1] == "DEPLOYING"
    world.servers.unhealthy.clear()
    assert world.cycle().deployed == [deployment_id]


def prune_after_the_window(world: World) -> CycleReport:
    """Deletion is confirmed in one cycle (the absence streak starts) and acted on after the window."""
    first = world.cycle()
    assert first.pruned == [], "never in the cycle that first sees it gone"
    return world.cycle(after=PRUNE_WINDOW + timedelta(seconds=1))


def test_deletion_prunes_by_label_inventory_and_keeps_data_by_default(world: World):
    world.deploy("keeper")
    deployment_id = world.deploy("short-lived")
    world.cycle()
    names = world.names(deployment_id)
    pvcs = [
        p["metadata"]["name"]
        for p in world.list("v1", "PersistentVolumeClaim")
        if names.postgres in p["metadata"]["name"]
    ]
    assert pvcs

    world.client.delete_deployment(deployment_id)
    report = prune_after_the_window(world)

    assert report.pruned == [deployment_id]
    for kind, name in (
        ("Deployment", names.api),
        ("StatefulSet", names.postgres),
        ("NetworkPolicy", names.postgres),
    ):
        assert world.get(kind, name, api_version=KIND_VERSIONS.get(kind)) is None, (
            f"{kind} {name} should be pruned"
        )
    assert world.env_secret_names(names) == []
    assert world.get("Secret", names.postgres_secret) is not None, "the password stays with the data"
    assert world.get("Secret", names.redis_secret) is not None
    assert all(world.get("PersistentVolumeClaim", name) is not None for name in pvcs)
    # Retained data is not a deployment to prune again: later resyncs leave it alone.
    deletes = len(world.kube.log.records(verb="delete"))
    for _ in range(3):
        later = world.cycle(after=timedelta(minutes=6))
        assert (later.pruned, later.prune_refused, later.errors) == ([], {}, [])
    assert len(world.kube.log.records(verb="delete")) == deletes


def test_deletion_with_data_retention_delete_removes_volumes(world: World, make_client: Any):
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), data_retention="delete"
    )
    world.deploy("keeper")
    deployment_id = world.deploy("throwaway")
    world.cycle()
    names = world.names(deployment_id)
    world.client.delete_deployment(deployment_id)
    assert prune_after_the_window(world).pruned == [deployment_id]
    assert world.get("Secret", names.postgres_secret) is None
    pvcs = world.list("v1", "PersistentVolumeClaim")
    assert not [p for p in pvcs if names.postgres in p["metadata"]["name"]]


def test_foreign_and_other_listener_objects_are_never_touched(world: World, make_client: Any):
    # A second listener of another workspace shares the namespace (the opt-in shared layout).
    other_client: ControlPlaneClient = make_client()
    other_listener = other_client.create_listener(compute_id="e2e-other", namespaces=[NS])
    other = make_reconciler(other_client, world.kube, str(other_listener.id), world.servers)
    theirs = str(
        other_client.create_deployment(
            external_docker_deployment(
                name="support-agent", image_uri=IMAGE_1, listener_id=other_listener.id, k8s_namespace=NS
            )
        ).id
    )
    ours = world.deploy("support-agent-2")
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "someone-elses", "namespace": NS, "labels": {"app": "x"}},
        "data": {"k": "v"},
    }
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        client.apply(from_dict(foreign), field_manager="kubectl")

    assert other.run_once(world.now).deployed == [theirs]
    assert world.cycle().deployed == [ours]
    their_names = naming.ObjectNames.of("support-agent", theirs)

    # Our deployment goes away; pruning must spare the other listener's objects and the foreign one.
    our_names = world.names(ours)
    world.client.delete_deployment(ours)
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), prune=ALLOW_EMPTY
    )
    assert prune_after_the_window(world).pruned == [ours]
    assert world.get("Deployment", their_names.api) is not None
    assert world.get("ConfigMap", "someone-elses") is not None
    deletes = [r.name for r in world.kube.log.records(verb="delete")]
    assert deletes
    assert all(name.startswith(our_names.base) for name in deletes)


def test_an_object_of_the_same_name_that_is_not_ours_stops_the_rollout(world: World):
    deployment_id = world.deploy("squatted")
    names = world.names(deployment_id)
    squatter = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": names.postgres_secret, "namespace": NS},
        "stringData": {"mine": "yes"},
    }
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        Cluster(client).apply(squatter, field_manager="kubectl")
    report = world.cycle()
    assert "not managed by this listener" in report.failed[deployment_id]
    secret = world.get("Secret", names.postgres_secret)
    assert base64.b64decode(secret["data"]["mine"]) == b"yes"
    assert STATUS_ANNOTATION not in (secret["metadata"].get("annotations") or {}), "the squatter is untouched"
    assert world.get("Deployment", names.api) is None
    assert not [
        r
        for r in world.kube.log.writes()
        if r.field_manager and r.field_manager.startswith(FIELD_MANAGER) and r.kind != "Event"
    ]


def test_a_cluster_error_midway_through_an_apply_is_finished_next_cycle(world: World):
    deployment_id = world.deploy("interrupted")
    names = world.names(deployment_id)
    world.kube.faults.inject(r".*/statefulsets/.*", 503, times=1)
    first = world.cycle()
    assert first.errors
    assert world.get("StatefulSet", names.postgres) is None
    assert world.cycle().deployed == [deployment_id]
    assert world.revision_status(deployment_id)[1] == "DEPLOYED"


def test_namespace_not_watched_is_refused_and_reported(world: World):
    # LangSmith's record of the listener names a namespace its settings do not watch.
    world.client.patch_listener(world.listener_id, namespaces=[NS, OTHER_NS, "not-watched"])
    deployment_id = world.deploy("elsewhere", namespace="not-watched")
    report = world.cycle()
    assert "not watched by this listener" in report.refused[deployment_id]
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"
    assert world.writes() == 0


def test_control_plane_outage_deletes_nothing_and_converges_after(world: World):
    deployment_id = world.deploy("resilient")
    world.cycle()
    names = world.names(deployment_id)
    world.client.patch_deployment(deployment_id, new_image_revision(IMAGE_2))

    world.emulator.faults.add(path="/v2/deployments", kind="error", status=503, times=100)
    for _ in range(3):
        report = world.cycle(after=timedelta(minutes=10))  # resyncs are due: still nothing may change
        assert not report.control_plane_ok
        assert report.pruned == []
    assert world.get("Deployment", names.api) is not None
    world.emulator.faults.clear()

    report = world.cycle()
    assert report.deployed == [deployment_id]
    assert world.get("Deployment", names.api)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_2


def test_an_empty_or_short_list_never_prunes_without_a_404(world: World):
    deployment_id = world.deploy("still-here")
    world.cycle()
    world.emulator.faults.add(path="/v2/deployments", kind="short_page", times=5)
    report = world.cycle(after=timedelta(minutes=10))
    assert report.pruned == []
    assert world.get("Deployment", world.names(deployment_id).api) is not None


def test_cluster_outage_deletes_nothing(world: World):
    world.deploy("keeper")
    deployment_id = world.deploy("steady")
    world.cycle()
    world.client.delete_deployment(deployment_id)
    world.kube.faults.inject(r".*", 503, times=200)
    report = world.cycle(after=timedelta(minutes=10))
    assert report.pruned == []
    assert report.errors
    world.kube.faults.clear()
    assert prune_after_the_window(world).pruned == [deployment_id]


def test_resync_reverts_manual_edits(world: World):
    deployment_id = world.deploy("drifty")
    world.cycle()
    names = world.names(deployment_id)
    edited = world.get("Deployment", names.api)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "attacker/image:latest"
    # A real API server refuses an apply that carries the managedFields read back with the object.
    edited["metadata"].pop("managedFields", None)
    with world.kube.admin_client(NS) as client:  # a human with kubectl
        client.apply(from_dict(edited), field_manager="kubectl-edit", force=True)
    world.cycle()  # not yet due
    assert world.get("Deployment", names.api)["spec"]["template"]["spec"]["containers"][0]["image"] != IMAGE_1
    world.cycle(after=timedelta(minutes=6))
    assert world.get("Deployment", names.api)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_1


def test_status_reaches_the_emulators_public_revision_endpoints(world: World):
    deployment_id = world.deploy("reported")
    world.cycle()
    deployment = world.client.get_deployment(deployment_id)
    assert deployment.active_revision_id == deployment.latest_revision_id


def test_a_restarted_listener_resumes_quietly(world: World):
    deployed = world.deploy("long-running")
    broken = world.deploy("broken", image=BAD_IMAGE)
    world.kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, image=BAD_IMAGE)
    first = world.cycle()
    assert first.deployed == [deployed]
    assert broken in first.failed

    # A new process: nothing in memory, everything in the cluster and the control plane.
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS)
    )
    writes = world.writes()
    world.emulator.requests.clear()
    report = world.cycle()

    assert (report.applied, report.deployed, report.failed) == ([], [], {})
    assert world.writes() == writes, "a restart re-applies nothing that is already deployed or failed"
    assert not [r for r in world.emulator.requests if "/_emulator/dataplane/" in r.path], (
        "nothing re-reported"
    )
    assert world.reconciler.records[deployed].attempt.phase == "deployed"
    assert world.reconciler.records[broken].attempt.phase == "failed"
