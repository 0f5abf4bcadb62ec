"""Fault injection, the request log and the admin routes."""

from __future__ import annotations

import httpx2
import pytest
from lightkube import ApiError, Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap

from tests.fakekube.conftest import NS, deployment
from tools.fakekube import DROP, FakeKube


def test_injected_503_then_recovery(kube: FakeKube, client: Client) -> None:
    kube.faults.inject(r"/deployments", 503, times=2, method="GET", retry_after=3)
    for _ in range(2):
        with pytest.raises(ApiError) as err:
            list(client.list(Deployment))
        assert (err.value.status.code, err.value.status.reason) == (503, "ServiceUnavailable")
        assert err.value.response.headers["Retry-After"] == "3"
    assert list(client.list(Deployment)) == []
    assert [r.fault for r in kube.log.records(verb="list", kind="Deployment")] == ["503", "503", None]
    assert kube.faults.pending == 0


def test_dropped_connection_and_failed_writes_change_nothing(kube: FakeKube, client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    rv = kube.store.resource_version
    kube.faults.inject(r"/deployments/web$", DROP, verb="apply")
    kube.faults.inject(r"/deployments/web$", 500, method="DELETE")
    with pytest.raises(httpx2.TransportError):
        client.apply(Deployment.from_dict(deployment(image="app:2")))
    with pytest.raises(ApiError) as err:
        client.delete(Deployment, "web")
    assert err.value.status.code == 500
    assert kube.store.resource_version == rv
    assert client.get(Deployment, "web").spec.template.spec.containers[0].image == "app:1"


def test_request_log_counts_writes_per_field_manager(kube: FakeKube, client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    client.create(ConfigMap.from_dict({"metadata": {"name": "c"}, "data": {}}))
    kube.log.clear()
    # A quiet cycle: reads plus idempotent re-applies.
    client.get(Deployment, "web")
    client.apply(Deployment.from_dict(deployment()))
    applies = kube.log.records(verb="apply", field_manager="langsmith-listener")
    assert [(r.method, r.kind, r.name, r.status) for r in applies] == [("PATCH", "Deployment", "web", 200)]
    assert applies[0].content_type == "application/apply-patch+yaml"
    assert applies[0].query["fieldManager"] == "langsmith-listener"
    assert [r.verb for r in kube.log.writes()] == ["apply"]
    assert kube.log.count(verb="get") == 1


def test_admin_routes_control_the_fake(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as client, httpx2.Client(base_url=manual_kube.url) as admin:
        client.apply(Deployment.from_dict(deployment(replicas=1)))
        assert (
            admin.post("/_fake/pod-behaviour", json={"state": "crash-loop", "image": "app:1"}).status_code
            == 201
        )
        assert admin.post("/_fake/controller/step").json() == {"changed": True}
        assert admin.post("/_fake/controller/run-until-stable").json()["passes"] >= 1
        d = client.get(Deployment, "web")
        assert d.status.readyReplicas is None
        assert admin.post(f"/_fake/deployments/{NS}/web/progress-deadline-exceeded").status_code == 200
        assert admin.post("/_fake/controller/step").json() == {"changed": True}
        reasons = {c.type: c.reason for c in client.get(Deployment, "web").status.conditions}
        assert reasons["Progressing"] == "ProgressDeadlineExceeded"
        assert admin.post("/_fake/faults", json={"path": "/configmaps", "response": 503}).status_code == 201
        with pytest.raises(ApiError):
            list(client.list(ConfigMap))
        log = admin.get("/_fake/requests").json()
        assert log[-1]["fault"] == "503"
        assert all(not r["path"].startswith("/_fake") for r in log)
        assert admin.post("/_fake/controller", json={"auto": True}).json() == {"auto": True}
