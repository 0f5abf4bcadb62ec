"""The client against the emulator over a real loopback socket: the hybrid workflow end to end."""

from __future__ import annotations

from uuid import UUID

import pytest

from listener.controlplane import (
    ControlPlaneClient,
    EmulatorStatusReporter,
    external_docker_deployment,
    new_image_revision,
)
from listener.controlplane.models import DeploymentPatchRequest, ResourceSpec, RevisionStatus
from listener.emulator import Emulator

IMAGE_1 = "123.dkr.ecr.us-east-1.amazonaws.com/agents/support@sha256:" + "1" * 64
IMAGE_2 = "123.dkr.ecr.us-east-1.amazonaws.com/agents/support@sha256:" + "2" * 64


def test_listener_deployment_new_image_revisions_and_redeploy(
    client: ControlPlaneClient, emulator: Emulator
) -> None:
    listener = client.create_listener("eks-prod-01", ["agents", "batch"])
    assert listener.namespaces == ("agents", "batch")
    assert client.get_listener(listener.id) == listener

    created = client.create_deployment(
        external_docker_deployment(
            name="support-agent",
            image_uri=IMAGE_1,
            listener_id=listener.id,
            k8s_namespace="agents",
            secrets={"OPENAI_API_KEY": "sk-test"},
            resource_spec=ResourceSpec(cpu=1.5, memory_mb=2048, image_pull_secrets=[{"name": "ecr-pull"}]),
        )
    )
    assert created.source == "external_docker"
    assert created.source_config.listener_id == listener.id
    assert created.source_config.listener_config is not None
    assert created.source_config.listener_config.k8s_namespace == "agents"
    assert created.source_revision_config.image_uri == IMAGE_1
    assert created.tenant_id == UUID(emulator.tenant_id)
    assert [(s.name, s.value.get_secret_value()) for s in created.secrets] == [("OPENAI_API_KEY", "sk-test")]
    spec = created.source_config.resource_spec
    assert spec is not None
    assert (spec.cpu, spec.cpu_limit, spec.memory_limit_mb) == (1.5, 3.0, 4096)  # limits default to 2x
    assert spec.redis_memory_limit_mb == spec.redis_memory_mb  # Redis limit defaults to the request
    first_revision = created.latest_revision_id
    assert first_revision is not None
    assert created.active_revision_id is None

    patched = client.patch_deployment(created.id, new_image_revision(IMAGE_2))
    assert patched.latest_revision_id not in (None, first_revision)
    assert patched.source_revision_config.image_uri == IMAGE_2
    assert [s.name for s in patched.secrets] == ["OPENAI_API_KEY"]  # omitted secrets carry over

    revisions = client.list_revisions(created.id)
    assert [r.id for r in revisions] == [patched.latest_revision_id, first_revision]  # newest first
    assert [r.source_revision_config.image_uri for r in revisions] == [IMAGE_2, IMAGE_1]
    assert revisions[0].status is RevisionStatus.AWAITING_DEPLOY
    assert revisions[1].status is RevisionStatus.SKIPPED  # superseded before it was deployed

    # The data plane reports the rollout through the emulator's channel; the public API reflects it.
    reporter = EmulatorStatusReporter(client)
    reporter.report(created.id, patched.latest_revision_id, "DEPLOYING")
    assert client.get_revision(created.id, patched.latest_revision_id).status is RevisionStatus.DEPLOYING
    reporter.report(created.id, patched.latest_revision_id, "DEPLOYED")
    reporter.report(created.id, patched.latest_revision_id, "DEPLOYED")  # a retried report is harmless
    current = client.get_deployment(created.id)
    assert current.active_revision_id == patched.latest_revision_id
    assert current.status.value == "READY"

    # Redeploying the first revision makes a new latest revision running the first image.
    redeployed = client.redeploy(created.id, first_revision)
    assert redeployed.latest_revision_id not in (first_revision, patched.latest_revision_id)
    assert redeployed.source_revision_config.image_uri == IMAGE_1
    assert redeployed.active_revision_id == patched.latest_revision_id  # still serving until deployed
    assert len(client.list_revisions(created.id)) == 3

    heartbeat = client.patch_listener(listener.id, version="listener-0.1.0")
    assert heartbeat.version == "listener-0.1.0"
    assert heartbeat.namespaces == ("agents", "batch")

    mine = [d for d in client.list_deployments() if d.source_config.listener_id == listener.id]
    assert [d.id for d in mine] == [created.id]

    client.delete_deployment(created.id)
    assert client.list_deployments() == []
    client.delete_listener(listener.id)
    assert client.list_listeners() == []


def test_patch_without_revision_fields_keeps_the_latest_revision(
    client: ControlPlaneClient, emulator: Emulator
) -> None:
    listener = client.create_listener("eks-1", ["agents"])
    dep = client.create_deployment(
        external_docker_deployment(
            name="a", image_uri=IMAGE_1, listener_id=listener.id, k8s_namespace="agents"
        )
    )
    patched = client.patch_deployment(
        dep.id,
        DeploymentPatchRequest.model_validate(
            {"source_config": {"custom_url": "https://a.example"}, "secrets": []}
        ),
    )
    assert patched.latest_revision_id == dep.latest_revision_id  # empty secrets list = unchanged: no revision
    assert patched.source_config.custom_url == "https://a.example"


def test_listing_reads_every_page(client: ControlPlaneClient, emulator: Emulator) -> None:
    listener = client.create_listener("eks-1", ["agents"])
    for i in range(205):
        emulator.store.create_deployment(
            {
                "name": f"agent-{i:03d}",
                "source": "external_docker",
                "source_config": {
                    "listener_id": str(listener.id),
                    "listener_config": {"k8s_namespace": "agents"},
                },
                "source_revision_config": {"image_uri": IMAGE_1},
                "secrets": [],
            }
        )
    deployments = client.list_deployments()
    assert [d.name for d in deployments] == [f"agent-{i:03d}" for i in range(205)]
    pages = [r.query for r in emulator.requests if r.path == "/v2/deployments"]
    assert pages == ["limit=100&offset=0", "limit=100&offset=100", "limit=100&offset=200"]


def test_listener_config_not_echoed_is_tolerated(client: ControlPlaneClient, emulator: Emulator) -> None:
    listener = client.create_listener("eks-1", ["agents"])
    emulator.settings.echo_listener_config = False
    dep = client.create_deployment(
        external_docker_deployment(
            name="a", image_uri=IMAGE_1, listener_id=listener.id, k8s_namespace="agents"
        )
    )
    assert dep.source_config.listener_config is None
    assert dep.source_config.listener_id == listener.id


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234"])
def test_bad_ids_are_refused_before_any_request(
    client: ControlPlaneClient, emulator: Emulator, bad: str
) -> None:
    with pytest.raises(ValueError, match=f"deployment_id must be a UUID, got {bad!r}"):
        client.get_deployment(bad)
    assert emulator.requests == []
