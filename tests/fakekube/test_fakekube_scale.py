"""The /scale subresource and the HorizontalPodAutoscaler controller.

Sources: pkg/registry/apps/deployment/storage (ScaleREST: autoscaling/v1 Scale, status.selector),
pkg/controller/podautoscaler/horizontal.go (reconcileAutoscaler: replicas outside min..max are
rescaled without metrics; ScalingActive/AbleToScale/ScalingLimited conditions), and
k8s.io/apimachinery/pkg/util/managedfields (conflict messages name the manager and subresource).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.models.autoscaling_v1 import ScaleSpec
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from tests.fakekube.conftest import NS, deployment, http
from tools.fakekube import FakeKube


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS, field_manager="langsmith-listener") as c:
        yield c


def hpa(min_replicas: int = 2, max_replicas: int = 5, target: str = "web") -> HorizontalPodAutoscaler:
    return HorizontalPodAutoscaler.from_dict(
        {
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }
    )


def conditions(obj: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in obj.status.conditions}


def test_the_scale_subresource(kube: FakeKube, admin: Client) -> None:
    admin.apply(Deployment.from_dict(deployment(replicas=2)))
    scale = admin.get(Deployment.Scale, "web")
    assert (scale.apiVersion, scale.kind, scale.spec.replicas, scale.status.replicas) == (
        "autoscaling/v1",
        "Scale",
        2,
        2,
    )
    assert scale.status.selector == "app=web"
    scale.spec = ScaleSpec(replicas=4)
    admin.replace(scale)
    d = admin.get(Deployment, "web")
    assert (d.spec.replicas, d.metadata.generation, d.status.readyReplicas) == (4, 2, 4)
    owners = {(m.manager, m.operation, m.subresource) for m in d.metadata.managedFields}
    assert ("langsmith-listener", "Update", "scale") in owners
    with http(kube) as client:
        patched = client.patch(
            f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale",
            json={"spec": {"replicas": 1}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert (patched.status_code, patched.json()["spec"]["replicas"]) == (200, 1)
        negative = client.put(
            f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale", json={"spec": {"replicas": -1}}
        )
        assert negative.status_code == 422
        assert client.get(f"/apis/apps/v1/namespaces/{NS}/deployments/missing/scale").status_code == 404


def test_the_autoscaler_keeps_replicas_within_bounds(kube: FakeKube, admin: Client) -> None:
    admin.apply(Deployment.from_dict(deployment(replicas=1)))
    admin.apply(hpa(min_replicas=2, max_replicas=5))
    d = admin.get(Deployment, "web")
    assert (d.spec.replicas, d.status.readyReplicas) == (2, 2)  # raised to minReplicas without any metrics
    h = admin.get(HorizontalPodAutoscaler, "web")
    assert (h.status.currentReplicas, h.status.desiredReplicas) == (2, 2)
    # No metrics server: the autoscaler says so, and leaves an in-range count alone.
    assert conditions(h)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    kube.controller.set_metric_recommendation(NS, "web", 9)
    h = admin.get(HorizontalPodAutoscaler, "web")
    assert admin.get(Deployment, "web").spec.replicas == 5
    assert conditions(h)["ScalingLimited"] == ("True", "TooManyReplicas")
    assert conditions(h)["ScalingActive"] == ("True", "ValidMetricFound")
    scaler = {(m.manager, m.subresource) for m in admin.get(Deployment, "web").metadata.managedFields}
    assert ("kube-controller-manager", "scale") in scaler


def test_a_listener_that_fights_the_autoscaler_is_caught(kube: FakeKube, admin: Client) -> None:
    admin.apply(Deployment.from_dict(deployment(replicas=1)))
    admin.apply(hpa(min_replicas=3, max_replicas=5))
    assert admin.get(Deployment, "web").spec.replicas == 3
    # Re-applying replicas the autoscaler now owns is a conflict...
    with pytest.raises(ApiError) as err:
        admin.apply(Deployment.from_dict(deployment(replicas=1)))
    assert err.value.status.code == 409
    assert (
        'conflict with "kube-controller-manager" with subresource "scale" using apps/v1'
        in err.value.status.message
    )
    # ...and forcing it starts a tug of war the write log shows.
    kube.log.clear()
    admin.apply(Deployment.from_dict(deployment(replicas=1)), force=True)
    assert admin.get(Deployment, "web").spec.replicas == 3  # the autoscaler put it back
    assert kube.log.count(verb="apply") == 1
    generations = admin.get(Deployment, "web").metadata.generation
    assert generations >= 4  # every fight is two spec changes


def test_an_autoscaler_without_a_target(admin: Client) -> None:
    admin.apply(hpa(target="missing"))
    h = admin.get(HorizontalPodAutoscaler, "web")
    assert conditions(h)["AbleToScale"] == ("False", "FailedGetScale")
    assert h.status.conditions[0].message == (
        'the HPA controller was unable to get the target\'s current scale: deployments.apps "missing" not found'
    )


def test_scaling_to_zero_disables_the_autoscaler(admin: Client) -> None:
    admin.apply(Deployment.from_dict(deployment(replicas=0)))
    admin.apply(hpa())
    assert admin.get(Deployment, "web").spec.replicas == 0
    assert conditions(admin.get(HorizontalPodAutoscaler, "web"))["ScalingActive"] == (
        "False",
        "ScalingDisabled",
    )
    assert list(admin.list(Pod, labels={"app": "web"})) == []
    admin.patch(Deployment, "web", {"spec": {"replicas": 1}}, patch_type=PatchType.MERGE)
    assert admin.get(Deployment, "web").spec.replicas == 2
