"""Emulator behaviour beyond the OpenAPI document: auth, persistence, status channel, switches, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from listener.controlplane import (
    BadRequestError,
    ConflictError,
    ControlPlaneClient,
    ControlPlaneConfig,
    EmulatorStatusReporter,
    LoggingStatusReporter,
    RequestValidationError,
    external_docker_deployment,
)
from listener.controlplane.models import RevisionStatus
from listener.emulator import BackgroundServer, Emulator

IMAGE = "registry.example/agent@sha256:" + "b" * 64
SRC = Path(__file__).resolve().parents[1] / "src"


def test_requests_without_a_key_get_401(server: BackgroundServer, emulator: Emulator) -> None:
    response = httpx.get(server.url + "/v2/deployments")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated: the X-Api-Key header is required."}


def test_422_shapes_for_path_and_query(server: BackgroundServer, emulator: Emulator, api_key: str) -> None:
    headers = {"X-Api-Key": api_key}
    bad_id = httpx.get(server.url + "/v2/listeners/nope", headers=headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["path", "listener_id"]
    bad_limit = httpx.get(server.url + "/v2/deployments?limit=101&offset=-1", headers=headers)
    assert bad_limit.status_code == 422
    assert [(d["loc"], d["type"]) for d in bad_limit.json()["detail"]] == [
        (["query", "limit"], "less_than_equal"),
        (["query", "offset"], "greater_than_equal"),
    ]


def test_status_channel_rules(client: ControlPlaneClient, emulator: Emulator) -> None:
    listener = client.create_listener("eks-1", ["agents"])
    dep = client.create_deployment(
        external_docker_deployment(name="a", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents")
    )
    reporter = EmulatorStatusReporter(client)
    reporter.report(dep.id, dep.latest_revision_id, "DEPLOY_FAILED", "ImagePullBackOff")
    assert client.get_revision(dep.id, dep.latest_revision_id).status is RevisionStatus.DEPLOY_FAILED
    assert client.get_deployment(dep.id).active_revision_id is None  # a failed revision never becomes active
    with pytest.raises(ConflictError, match="DEPLOY_FAILED, which is final"):
        reporter.report(dep.id, dep.latest_revision_id, "DEPLOYED")
    with pytest.raises(ValueError, match="status must be one of"):
        reporter.report(dep.id, dep.latest_revision_id, "GREAT")  # type: ignore[arg-type]
    before = emulator.request_count()
    LoggingStatusReporter().report(dep.id, dep.latest_revision_id, "DEPLOYED")
    assert emulator.request_count() == before  # nothing upstream to tell: no request at all


def test_immutable_fields_and_placement_rules(client: ControlPlaneClient, emulator: Emulator) -> None:
    from listener.controlplane.models import DeploymentPatchRequest

    listener = client.create_listener("eks-1", ["agents"])
    other = client.create_listener("eks-2", ["agents"])
    dep = client.create_deployment(
        external_docker_deployment(name="a", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents")
    )
    with pytest.raises(BadRequestError, match=r"cannot be changed after create .*: listener_id"):
        client.patch_deployment(
            dep.id, DeploymentPatchRequest.model_validate({"source_config": {"listener_id": str(other.id)}})
        )
    emulator.settings.require_listener = True
    with pytest.raises(BadRequestError, match="listener_id' is required"):
        client.request(
            "POST",
            "/v2/deployments",
            json={
                "name": "b",
                "source": "external_docker",
                "source_config": {},
                "source_revision_config": {"image_uri": IMAGE},
                "secrets": [],
            },
        )


def test_unknown_fields_ignored_by_default_rejected_on_request(
    client: ControlPlaneClient, emulator: Emulator
) -> None:
    body = {
        "compute_type": "k8s",
        "compute_id": "eks-1",
        "compute_config": {"k8s_namespaces": ["a"]},
        "colour": 1,
    }
    assert client.request("POST", "/v2/listeners", json=body).status_code == 201
    emulator.settings.reject_unknown_fields = True
    with pytest.raises(RequestValidationError, match=r"body\.colour: Extra inputs are not permitted"):
        client.request("POST", "/v2/listeners", json={**body, "compute_id": "eks-2"})


def test_sqlite_persistence_survives_a_restart(tmp_path: Path, make_client: Any) -> None:
    db = tmp_path / "emulator.sqlite"
    first = Emulator(db_path=db)
    with BackgroundServer(first) as srv:
        config = ControlPlaneConfig(base_url=srv.url, api_key=first.api_key)
        with ControlPlaneClient(config) as c:
            listener = c.create_listener("eks-1", ["agents"])
            dep = c.create_deployment(
                external_docker_deployment(
                    name="a", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents"
                )
            )
            EmulatorStatusReporter(c).report(dep.id, dep.latest_revision_id, "DEPLOYED")
    first.close()

    second = Emulator(db_path=db)
    assert (second.api_key, second.tenant_id) == (first.api_key, first.tenant_id)
    with (
        BackgroundServer(second) as srv,
        ControlPlaneClient(ControlPlaneConfig(base_url=srv.url, api_key=second.api_key)) as c,
    ):
        assert c.get_listener(listener.id).compute_id == "eks-1"
        again = c.get_deployment(dep.id)
        assert again.active_revision_id == dep.latest_revision_id
        assert [r.status for r in c.list_revisions(dep.id)] == [RevisionStatus.DEPLOYED]
        c.create_listener("eks-2", ["agents"])  # sequence numbers continue: ordering stays stable
        assert [x.compute_id for x in c.list_listeners()] == ["eks-1", "eks-2"]
    second.close()


def test_python_m_listener_emulator_prints_url_key_and_tenant(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener.emulator", "--port", "0", "--api-key", "k-cli"],
        cwd=SRC,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]  # readline blocks until printed; 5 lines, bounded
        values = dict(line.strip().split("=", 1) for line in lines if "=" in line)
        assert values["LISTENER_API_KEY"] == "k-cli"
        config = ControlPlaneConfig(
            base_url=values["LISTENER_CONTROL_PLANE_URL"],
            api_key="k-cli",
            tenant_id=values["LISTENER_WORKSPACE_ID"],
        )
        with ControlPlaneClient(config) as c:
            assert c.list_listeners() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode is not None
