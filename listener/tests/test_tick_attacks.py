"""Attacks on the ticks between polls (`Reconciler.run_once(poll=False)`), end to end over real HTTP
against the control-plane emulator and fakekube: a tick is cheaper than a poll, never less safe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from e2e import NS, World, make_reconciler
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment

from listener.kube import FIELD_MANAGER
from listener.reconcile.status import STATUS_ANNOTATION

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
    ready: set[str] = set()
    world.reconciler = make_reconciler(
        world.client,
        world.kube,
        world.listener_id,
        world.servers,
        (NS,),
        prober=lambda namespace, service: service in ready,
    )
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
