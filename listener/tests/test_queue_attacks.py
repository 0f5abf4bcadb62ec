"""Attacks on the work queue, the inventory and drift detection, end to end over real HTTP against the
control-plane emulator and fakekube: the rules must hold whatever the API server or another writer does.
"""

from __future__ import annotations

from datetime import timedelta

from e2e import NS, World
from lightkube.codecs import from_dict

from listener.kube import FIELD_MANAGER


def test_an_absurd_retry_after_backs_off_instead_of_crashing_the_step(world: World) -> None:
    # A proxy or a broken API server answers 429 with a Retry-After no float/timedelta can hold.
    held = world.deploy("held")
    names = world.names(held)
    world.kube.faults.inject(
        rf".*/statefulsets/{names.postgres}$", 429, times=10_000, method="PATCH", retry_after=10**400
    )
    report = world.cycle()
    assert not any("step failed" in e for e in report.errors), report.errors
    assert any("429" in e for e in report.errors), report.errors
    attempt = world.reconciler.records[held].attempt
    assert attempt is not None
    assert attempt.retry_at is not None
    assert attempt.retry_at - world.now <= timedelta(seconds=60), "capped like any Retry-After"
    tries = world.kube.log.count(verb="apply", kind="StatefulSet", name=names.postgres)
    world.cycle()  # 10 s later: still backing off, not retried at every poll
    assert world.kube.log.count(verb="apply", kind="StatefulSet", name=names.postgres) == tries


def test_an_object_created_by_someone_else_while_the_stores_roll_out_is_never_written(world: World) -> None:
    # The survey looks at every object before the first wave; the API server wave is written one or
    # more cycles later, once Postgres and Redis are ready. Someone creates the Service meanwhile.
    deployment_id = world.deploy("alpha")
    names = world.names(deployment_id)
    world.kube.controller.hold_rollout(NS, names.postgres, ready=0)
    report = world.cycle()
    assert world.revision_status(deployment_id)[1] == "DEPLOYING", report
    assert world.get("Service", names.api) is None
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": names.api, "namespace": NS, "labels": {"team": "theirs"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "web", "port": 9999}]},
    }
    with world.kube.admin_client(NS) as client:
        client.create(from_dict(theirs), field_manager="someone-else")
    world.kube.controller.hold_rollout(NS, names.postgres, ready=None)
    for _ in range(3):
        world.cycle()
    live = world.get("Service", names.api)
    assert live is not None
    assert live["metadata"].get("labels") == {"team": "theirs"}, "their Service was taken over"
    assert live["spec"]["selector"] == {"app": "theirs"}
    managers = {e["manager"] for e in live["metadata"].get("managedFields") or []}
    assert FIELD_MANAGER not in managers, managers
    _, status = world.revision_status(deployment_id)
    assert status == "DEPLOY_FAILED"
