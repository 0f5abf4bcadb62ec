"""Served kinds, discovery and CustomResourceDefinitions.

A kind a cluster does not serve answers 404 with the API server's Status ("the server could not find
the requested resource"); a CRD, once created and Established (apiextensions-apiserver's establishing
controller), adds its kinds to discovery and validates, prunes and defaults its objects with the
structural schema (apiextensions-apiserver/pkg/apiserver/schema).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.types import PatchType

from tests.fakekube.conftest import NS, http
from tools.fakekube import FakeKube

HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
ScaledObject = create_namespaced_resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
Widget = create_namespaced_resource("example.com", "v1", "Widget", "widgets")


def route(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
            **spec,
        },
    }


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "string", "enum": ["small", "large"]},
                                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS, field_manager="test") as c:
        yield c


def test_unserved_kinds_are_404_with_a_status_body(kube: FakeKube, admin: Client) -> None:
    with pytest.raises(ApiError) as err:
        list(admin.list(ScaledObject))
    status = err.value.status
    assert (status.code, status.reason, status.message) == (
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    with http(kube) as client:
        assert client.get("/apis/keda.sh/v1alpha1").status_code == 404
        assert client.get("/apis/keda.sh").status_code == 404
        groups = {g["name"] for g in client.get("/apis").json()["groups"]}
    assert "keda.sh" not in groups
    assert "gateway.networking.k8s.io" not in groups
    # Authorization comes first: the listener's Role covers scaledobjects, so it sees the 404 too.
    with kube.client(NS) as listener, pytest.raises(ApiError) as err:
        list(listener.list(ScaledObject))
    assert err.value.status.code == 404


def test_a_crd_created_through_the_api_serves_validates_prunes_and_defaults(
    kube: FakeKube, admin: Client
) -> None:
    admin.create(from_dict(WIDGET_CRD))
    crd = admin.get(CustomResourceDefinition, "widgets.example.com")
    established = {c.type: c.status for c in crd.status.conditions}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    assert crd.metadata.finalizers == ["customresourcecleanup.apiextensions.k8s.io"]
    with http(kube) as client:
        resources = {r["name"]: r for r in client.get("/apis/example.com/v1").json()["resources"]}
        assert {"widgets", "widgets/status", "widgets/scale"} <= set(resources)
        created = client.post(
            f"/apis/example.com/v1/namespaces/{NS}/widgets",
            json={
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": "small", "colour": "red", "extra": {"anything": 1}},
            },
        )
        assert created.status_code == 201
        assert created.headers.get_list("warning") == ['299 - "unknown field \\"spec.colour\\""']
        assert created.json()["spec"] == {
            "size": "small",
            "extra": {"anything": 1},
            "replicas": 1,
        }  # pruned and defaulted
        assert created.json()["metadata"]["generation"] == 1
    with pytest.raises(ApiError) as err:
        admin.apply(
            Widget.from_dict(
                {
                    "apiVersion": "example.com/v1",
                    "kind": "Widget",
                    "metadata": {"name": "bad"},
                    "spec": {"size": "medium", "replicas": -1},
                }
            )
        )
    causes = {c.field: c.message for c in err.value.status.details.causes}
    assert err.value.status.code == 422
    assert causes["spec.size"] == 'Unsupported value: "medium": supported values: "small", "large"'
    assert "spec.replicas in body" in causes["spec.replicas"]
    with pytest.raises(ApiError) as err:
        admin.apply(
            Widget.from_dict(
                {
                    "apiVersion": "example.com/v1",
                    "kind": "Widget",
                    "metadata": {"name": "bad"},
                    "spec": {"replicas": 2},
                }
            )
        )
    assert {c.field: c.message for c in err.value.status.details.causes} == {"spec.size": "Required value"}
    # Custom resources: generation moves on any change outside metadata and status.
    w = admin.patch(Widget, "w", {"metadata": {"labels": {"a": "b"}}}, patch_type=PatchType.MERGE)
    assert w.metadata.generation == 1
    w = admin.patch(Widget, "w", {"spec": {"size": "large"}}, patch_type=PatchType.MERGE)
    assert w.metadata.generation == 2
    # The scale subresource works for custom resources too.
    assert admin.get(Widget.Scale, "w", namespace=NS).spec.replicas == 1


def test_deleting_a_crd_deletes_its_objects_and_stops_serving(kube: FakeKube, admin: Client) -> None:
    admin.create(from_dict(WIDGET_CRD))
    admin.apply(
        Widget.from_dict(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": "small"},
            }
        )
    )
    admin.delete(CustomResourceDefinition, "widgets.example.com")
    with pytest.raises(ApiError) as err:
        list(admin.list(Widget))
    assert err.value.status.code == 404
    with pytest.raises(ApiError):
        admin.get(CustomResourceDefinition, "widgets.example.com")


def test_bundled_crds_install_at_start(admin: Client) -> None:
    with (
        FakeKube([NS], crds=("gateway-api", "keda")) as kube,
        kube.admin_client(NS, field_manager="t") as client,
    ):
        r = client.apply(HTTPRoute.from_dict(route()))
        # The CRD's defaults (Gateway API v1): parentRef group/kind, the default path match, backend kind.
        assert r.spec["parentRefs"] == [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
        ]
        rule = r.spec["rules"][0]
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
        assert rule["backendRefs"] == [
            {"group": "", "kind": "Service", "name": "svc", "port": 80, "weight": 1}
        ]
        with pytest.raises(ApiError) as err:
            client.apply(
                HTTPRoute.from_dict(route(rules=[{"matches": [{"path": {"type": "Glob", "value": "/"}}]}]))
            )
        assert err.value.status.code == 422
        with pytest.raises(ApiError) as err:
            client.apply(HTTPRoute.from_dict(route(hostnames=["Not A Host"])))
        assert "spec.hostnames[0]" in {c.field for c in err.value.status.details.causes}
        with pytest.raises(ApiError) as err:
            client.apply(HTTPRoute.from_dict(route(unknownField=True)))
        assert err.value.status.code == 500  # server-side apply: field not declared in schema
        assert ".spec.unknownField: field not declared in schema" in err.value.status.message
        so = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "s", "namespace": NS},
            "spec": {
                "scaleTargetRef": {"name": "web"},
                "triggers": [
                    {"type": "postgresql", "metadata": {"query": "select 1", "targetQueryValue": "5"}}
                ],
            },
        }
        assert client.apply(ScaledObject.from_dict(so)).spec["scaleTargetRef"] == {"name": "web"}
        so["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 5
        with pytest.raises(ApiError) as err:
            client.apply(ScaledObject.from_dict(so))
        assert err.value.status.code == 500  # trigger metadata values are strings


def test_discovery_documents(kube: FakeKube) -> None:
    with http(kube, kube.listener) as client:
        core = {r["name"]: r for r in client.get("/api/v1").json()["resources"]}
        assert core["namespaces"]["namespaced"] is False
        assert core["namespaces"]["verbs"] == ["create", "delete", "get", "list", "patch", "update", "watch"]
        assert core["serviceaccounts/token"]["verbs"] == ["create"]
        apps = {r["name"]: r for r in client.get("/apis/apps/v1").json()["resources"]}
        assert apps["deployments/scale"]["kind"] == "Scale"
        assert apps["deployments"]["shortNames"] == ["deploy"]
        rbac = client.get("/apis/rbac.authorization.k8s.io").json()
        assert rbac["preferredVersion"] == {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}
        assert client.get("/version").json()["gitVersion"] == "v1.37.0"
