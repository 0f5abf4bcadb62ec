"""The listener against what a real API server refuses or a real kubelet cannot run (issue 9).

Each case is hostile but plausible control-plane data, or a cluster missing optional CRDs. The
strict fake answers like a real cluster (422 with the field, FailedCreate, CreateContainerConfigError,
404 for an unserved kind); the listener must turn that into a failed revision with the server's
reason, never into DEPLOYED, a traceback or a stuck rollout. (They were xfail(strict) until issue 10;
the listener now names most of these problems itself, in Kubernetes' own words, before writing.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from e2e import IMAGE_1, NS, OTHER_NS, AgentServers, World, make_reconciler, prepared_cluster

from listener.controlplane import ControlPlaneClient
from listener.controlplane.models import ResourceSpec, SecretReference
from listener.emulator import Emulator
from tools.fakekube import FakeKube


def _world(emulator: Emulator, kube: FakeKube, servers: AgentServers, make_client: Any) -> World:
    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="strict-cluster", namespaces=[NS, OTHER_NS])
    reconciler = make_reconciler(client, kube, str(listener.id), servers, namespaces=(NS, OTHER_NS))
    return World(emulator, kube, client, str(listener.id), reconciler, servers)


@pytest.fixture
def servers() -> Iterator[AgentServers]:
    servers = AgentServers()
    yield servers
    servers.close()


@pytest.fixture
def world(emulator: Emulator, servers: AgentServers, make_client: Any) -> Iterator[World]:
    with prepared_cluster(NS, OTHER_NS) as kube:
        yield _world(emulator, kube, servers, make_client)


def _fails_with(world: World, deployment_id: str, reason: str, *, cycles: int = 3) -> None:
    """Within a few cycles (no waiting out a 10-minute deadline) the revision fails with `reason`."""
    failed: dict[str, str] = {}
    for _ in range(cycles):
        report = world.cycle()
        failed.update(report.failed)
        if deployment_id in failed:
            break
    assert reason in failed.get(deployment_id, ""), failed
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"


def test_a_secret_key_the_api_server_refuses(world: World) -> None:
    deployment_id = world.deploy("bad-key", secrets={"MY KEY": "value"})
    # ValidateSecret: data keys must be config keys ("a valid config key must consist of ...").
    _fails_with(world, deployment_id, "a valid config key must consist of alphanumeric characters")


def test_requests_above_limits(world: World) -> None:
    deployment_id = world.deploy("greedy", resource_spec=ResourceSpec(cpu=2, cpu_limit=1))
    _fails_with(world, deployment_id, "must be less than or equal to cpu limit of 1")


def test_an_invalid_secret_reference(world: World) -> None:
    refs = [SecretReference(name="TOKEN", secret_name="Not_A_Secret_Name", secret_key="token")]
    deployment_id = world.deploy("bad-ref", secret_references=refs)
    _fails_with(world, deployment_id, "a lowercase RFC 1123 subdomain must consist")


def test_a_referenced_secret_that_does_not_exist(world: World) -> None:
    refs = [SecretReference(name="TOKEN", secret_name="absent", secret_key="token")]
    deployment_id = world.deploy("missing-ref", secret_references=refs)
    # The kubelet: CreateContainerConfigError, 'secret "absent" not found'.
    _fails_with(world, deployment_id, 'secret "absent" not found')


def test_an_image_with_trailing_whitespace(world: World) -> None:
    deployment_id = world.deploy("spaced", image=IMAGE_1 + " ")
    _fails_with(world, deployment_id, "must not have leading or trailing whitespace")


def test_a_cluster_without_the_optional_crds(
    emulator: Emulator, servers: AgentServers, make_client: Any
) -> None:
    with FakeKube([NS, OTHER_NS]) as kube:
        for image in (IMAGE_1,):
            kube.controller.set_image_user(image, 1000)
        world = _world(emulator, kube, servers, make_client)
        world.deploy("keeper")
        deployment_id = world.deploy("plain")
        report = world.cycle()
        assert deployment_id in report.deployed
        assert report.errors == []
        world.client.delete_deployment(deployment_id)
        # Pruned under the safety rules (issue 10): confirmed gone, then again after the window.
        assert world.cycle(after=timedelta(seconds=30)).pruned == []
        report = world.cycle(after=timedelta(minutes=5, seconds=30))
        assert report.pruned == [deployment_id]
        assert report.errors == []
