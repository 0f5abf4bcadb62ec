"""One deployment record the listener cannot validate, anywhere in the workspace, end to end.

`GET /v2/deployments` carries every team's deployments (there is no listener filter). The list used
to be validated as a whole, so one item with a field of an unexpected shape made it unreadable: every
cycle logged "control plane unavailable" and no deployment of this listener rolled out. Now items are
read one by one (listener.controlplane.listing): another listener's bad record is ignored; this
listener's (or one whose listener cannot be read) counts as listed, so it is never pruned, and is
refused: nothing is written for it and its running objects stay as they are.

Against the emulator (records corrupted through its `/_emulator/deployments/{id}` seam) and the fake
Kubernetes API, over real HTTP.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from e2e import ALLOW_EMPTY, IMAGE_1, IMAGE_2, NS, OTHER_NS, PRUNE_WINDOW, World, make_reconciler

from listener.controlplane import InvalidResponseError
from listener.controlplane.builders import new_image_revision
from listener.controlplane.listing import UnreadableDeployment, UnreadableId, read_item
from listener.spec import RenderOptions

LEAN = RenderOptions(run_as_non_root=True, queue_enabled=False)
SECRET = "sk-live-DO-NOT-LOG-4242"
"""A value that must never appear in a log line, a report or a status reason."""

# Every shape the break-it review found, each carrying the secret where a careless message would
# quote it: a sidecar without an image, a label value that is not a string, a UUID field that is not
# a UUID (pydantic's message quotes a character of it), a secret whose value is not a string.
MALFORMED: dict[str, Any] = {
    "source_config": {
        "resource_spec": {
            "sidecars": [{"name": "proxy", "env": [{"name": "TOKEN", "value": SECRET}]}],
            "labels": {"team": [SECRET]},
        },
        "integration_id": SECRET,
    },
    "secrets": [{"name": "TOKEN", "value": {"nested": SECRET}}],
}


def corrupt(world: World, deployment_id: str, patch: dict[str, Any]) -> None:
    """Store a record the real service might send and this client cannot read (emulator seam)."""
    response = world.client.request("PATCH", f"/_emulator/deployments/{deployment_id}", json=patch)
    assert response.status_code == 200


def setup(world: World, **config: Any) -> None:
    world.reconciler = make_reconciler(
        world.client,
        world.kube,
        world.listener_id,
        world.servers,
        (NS, OTHER_NS),
        options=LEAN,
        **config,
    )


def no_secret_anywhere(world: World, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in caplog.text
    for report in world.reports:
        assert SECRET not in repr(report)
    for revision in world.emulator.store.revisions.values():
        assert SECRET not in str(revision.get("_reason"))


def test_another_listeners_malformed_deployment_does_not_stop_this_listeners_rollouts(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    setup(world)
    other = world.client.create_listener(compute_id="e2e-other-cluster", namespaces=[NS])
    theirs = world.deploy("theirs", secrets={"TOKEN": SECRET})
    corrupt(
        world,
        theirs,
        {**MALFORMED, "source_config": {**MALFORMED["source_config"], "listener_id": str(other.id)}},
    )
    with pytest.raises(InvalidResponseError, match=f"deployment {theirs}: source_config"):
        world.client.list_deployments()  # the strict read still refuses the list as a whole
    ours = world.deploy("ours")

    first = world.cycle()
    assert first.control_plane_ok, first.errors
    assert first.deployed == [ours]
    assert theirs not in first.refused
    assert not first.warnings
    second = world.cycle()
    assert second.ok, second.errors

    ignored = [r for r in caplog.records if f"ignoring deployment {theirs}" in r.getMessage()]
    assert len(ignored) == 1, "logged once, not every cycle"
    assert ignored[0].levelno == logging.INFO
    message = ignored[0].getMessage()
    assert "source_config.resource_spec.sidecars.0.image: Field required" in message
    assert "source_config.resource_spec.labels.team: Input should be a valid string" in message
    assert "source_config.integration_id: Input should be a valid UUID" in message
    their_revision = world.emulator.store.deployments[theirs]["latest_revision_id"]
    assert world.emulator.store.revisions[their_revision]["status"] != "DEPLOY_FAILED", "not ours to report"
    no_secret_anywhere(world, caplog)


@pytest.mark.parametrize(
    ("listener", "reported"),
    [
        pytest.param("ours", True, id="this listener's record"),
        pytest.param(42, False, id="a record whose listener cannot be read"),
    ],
)
def test_a_running_deployment_whose_latest_record_became_unreadable_is_kept_and_never_pruned(
    world: World, caplog: pytest.LogCaptureFixture, listener: Any, reported: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    # Every switch that makes pruning easier: deleting data, pruning the last deployment.
    setup(world, data_retention="delete", prune=ALLOW_EMPTY)
    deployment_id = world.deploy("support", secrets={"TOKEN": SECRET})
    assert world.cycle().deployed == [deployment_id]
    names = world.names(deployment_id)
    before = world.get("Deployment", names.api)
    assert before is not None
    pvcs = [p["metadata"]["name"] for p in world.list("v1", "PersistentVolumeClaim")]
    assert pvcs

    # A new revision, whose record the listener then cannot read.
    world.client.patch_deployment(deployment_id, new_image_revision(IMAGE_2))
    revision = world.emulator.store.deployments[deployment_id]["latest_revision_id"]
    lid = world.listener_id if listener == "ours" else listener
    corrupt(
        world,
        deployment_id,
        {**MALFORMED, "source_config": {**MALFORMED["source_config"], "listener_id": lid}},
    )
    writes = world.writes()
    # Even a control plane that answers the deployment's own GET with its documented not-found body
    # (a lagging replica, a restore) cannot make it a prune candidate: the list shows it.
    world.emulator.faults.add(
        path=f"/v2/deployments/{deployment_id}",
        method="GET",
        kind="error",
        status=404,
        detail=f"Deployment ID {deployment_id} not found.",
    )

    reports = [
        world.cycle(after=timedelta(minutes=2)) for _ in range(2 + PRUNE_WINDOW // timedelta(minutes=2))
    ]
    # Resyncs included (the default interval passes within these cycles).
    assert all(r.control_plane_ok for r in reports)
    assert not any(r.pruned or r.pruned_objects for r in reports)
    assert world.writes() == writes, "nothing is written for a deployment the listener cannot read"
    after = world.get("Deployment", names.api)
    assert after is not None
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_1
    assert [p["metadata"]["name"] for p in world.list("v1", "PersistentVolumeClaim")] == pvcs

    reason = reports[-1].refused[deployment_id]
    assert "source_config.resource_spec.sidecars.0.image: Field required" in reason
    assert "secrets.0.value: Input should be a valid string" in reason
    assert any(deployment_id in w and "never pruned" in w for w in reports[-1].warnings)
    status = world.emulator.store.revisions[revision]
    reports_sent = [
        r
        for r in world.emulator.requests
        if r.path == f"/_emulator/dataplane/v1/deployments/{deployment_id}/revisions/{revision}/status"
    ]
    if reported:
        assert status["status"] == "DEPLOY_FAILED"
        assert "sidecars.0.image: Field required" in status["_reason"]
        assert len(reports_sent) == 1, "reported once"
    else:
        # Its listener cannot be read: it may be another listener's, whose status is not ours to set.
        assert status["status"] != "DEPLOY_FAILED"
        assert reports_sent == []
    no_secret_anywhere(world, caplog)

    # Readable again: the listener rolls the new revision out as usual.
    world.emulator.faults.clear()
    corrupt(
        world,
        deployment_id,
        {
            "source_config": {
                "resource_spec": {"sidecars": [], "labels": {"team": None}},
                "integration_id": None,
                "listener_id": world.listener_id,
            },
            "secrets": [{"name": "TOKEN", "value": SECRET}],
        },
    )
    again = world.cycle()
    assert deployment_id not in again.refused
    assert again.applied == [deployment_id]
    api = world.get("Deployment", names.api)
    assert api is not None
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_2


def test_an_item_without_a_readable_id_makes_the_whole_list_unreadable(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    setup(world, prune=ALLOW_EMPTY)
    deployment_id = world.deploy("support")
    assert world.cycle().deployed == [deployment_id]
    other = world.deploy("nameless")
    corrupt(world, other, {"id": f"not-a-uuid-{SECRET}"})
    writes = world.writes()

    reports = [world.cycle(after=timedelta(minutes=2)) for _ in range(4)]
    assert not any(r.control_plane_ok for r in reports)
    assert "resources.1.id: Input should be a valid UUID" in reports[-1].errors[0]
    assert world.writes() == writes
    assert world.get("Deployment", world.names(deployment_id).api) is not None
    assert SECRET not in caplog.text
    assert SECRET not in repr(reports)


def test_read_item_reads_the_listener_leniently() -> None:
    base = {"id": "00000000-0000-0000-0000-000000000001", "source": "external_docker"}
    some = "00000000-0000-0000-0000-0000000000aa"
    cases = [
        ({"source_config": {"listener_id": some}}, (some, True)),
        ({"source_config": {"listener_id": None}}, (None, True)),
        ({"source_config": {}}, (None, True)),
        ({"source_config": {"listener_id": "nope"}}, (None, False)),
        ({"source_config": "nope"}, (None, False)),
        ({}, (None, False)),
    ]
    for extra, (listener_id, known) in cases:
        item = read_item({**base, **extra})
        assert isinstance(item, UnreadableDeployment)
        assert (str(item.listener_id) if item.listener_id else None, item.listener_known) == (
            listener_id,
            known,
        )
    for no_id in ({}, {"id": 7}, {"id": "nope"}, [base], "text"):
        with pytest.raises(UnreadableId):
            read_item(no_id)


def test_the_list_cache_keeps_unreadable_items_apart_and_reads_a_changed_one_again(world: World) -> None:
    ok = world.deploy("ok")
    bad = world.deploy("bad")
    corrupt(world, bad, {"source_config": {"resource_spec": {"sidecars": [{"name": "proxy"}]}}})
    first = world.client.read_deployments()
    assert [str(d.id) for d in first.deployments] == [ok]
    assert [str(u.id) for u in first.unreadable] == [bad]
    second = world.client.read_deployments()
    assert second.unreadable[0] is first.unreadable[0], "unchanged JSON is not validated again"
    assert second.deployments[0] is first.deployments[0]
    corrupt(world, bad, {"source_config": {"resource_spec": {"sidecars": [{"name": "proxy", "image": "i"}]}}})
    third = world.client.read_deployments()
    assert sorted(str(d.id) for d in third.deployments) == sorted([ok, bad])
    assert third.unreadable == ()
    corrupt(world, ok, {"source_config": {"resource_spec": {"labels": {"team": 7}}}})
    fourth = world.client.read_deployments()
    assert [str(u.id) for u in fourth.unreadable] == [ok]
    assert (
        "source_config.resource_spec.labels.team: Input should be a valid string"
        in fourth.unreadable[0].problems
    )
