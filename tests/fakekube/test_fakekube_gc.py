"""Deletion: finalizers, deletionTimestamp, propagation policies, the garbage collector, PVC protection,
namespace termination.

Sources: pkg/registry/generic/registry/store.go (Delete, updateForGracefulDeletionAndFinalizers,
markAsDeleting: generation bump), staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go
(ValidateNoNewFinalizers), pkg/controller/garbagecollector (foreground/orphan finalizers, dangling
owners), pkg/controller/volume/pvcprotection, plugin/pkg/admission/namespace/lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.types import CascadeType, PatchType

from tests.fakekube.conftest import NS, OTHER_NS, deployment, http
from tools.fakekube import FakeKube


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS) as c:
        yield c


def test_finalizers_hold_an_object_until_removed(admin: Client) -> None:
    admin.create(
        ConfigMap(metadata=ObjectMeta(name="held", finalizers=["example.com/cleanup"]), data={"k": "v"})
    )
    admin.delete(ConfigMap, "held")
    held = admin.get(ConfigMap, "held")
    assert held.metadata.deletionTimestamp is not None
    assert held.metadata.deletionGracePeriodSeconds == 0
    with pytest.raises(ApiError) as err:
        admin.patch(
            ConfigMap,
            "held",
            {"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}},
            patch_type=PatchType.MERGE,
        )
    assert err.value.status.code == 422
    assert "no new finalizers can be added if the object is being deleted" in err.value.status.message
    admin.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError) as err:
        admin.get(ConfigMap, "held")
    assert err.value.status.code == 404


def test_marking_for_deletion_bumps_the_generation(admin: Client) -> None:
    d = deployment()
    d["metadata"]["finalizers"] = ["example.com/keep"]
    admin.apply(Deployment.from_dict(d))
    admin.delete(Deployment, "web")
    assert admin.get(Deployment, "web").metadata.generation == 2


def test_background_deletion_happens_after_the_response(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.apply(Deployment.from_dict(deployment(replicas=1)))
        manual_kube.controller.run_until_stable()
        admin.delete(Deployment, "web", cascade=CascadeType.BACKGROUND)
        with pytest.raises(ApiError):
            admin.get(Deployment, "web")
        # Until the garbage collector runs, the ReplicaSet and its pod are still there.
        (rs,) = admin.list(ReplicaSet, labels={"app": "web"})
        assert rs.metadata.deletionTimestamp is None
        manual_kube.controller.run_until_stable()
        assert list(admin.list(ReplicaSet, labels={"app": "web"})) == []
        assert list(admin.list(Pod, labels={"app": "web"})) == []


def test_foreground_deletion_waits_for_dependents(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.apply(Deployment.from_dict(deployment(replicas=1)))
        manual_kube.controller.run_until_stable()
        admin.delete(Deployment, "web", cascade=CascadeType.FOREGROUND)
        d = admin.get(Deployment, "web")
        assert d.metadata.finalizers == ["foregroundDeletion"]
        assert d.metadata.deletionTimestamp is not None
        manual_kube.controller.step()  # the garbage collector deletes the ReplicaSet (in foreground too)
        assert (
            admin.get(ReplicaSet, next(iter(admin.list(ReplicaSet))).metadata.name).metadata.deletionTimestamp
            is not None
        )
        assert admin.get(Deployment, "web") is not None  # still waiting for its dependents
        manual_kube.controller.run_until_stable()
        with pytest.raises(ApiError):
            admin.get(Deployment, "web")
        assert list(admin.list(Pod, labels={"app": "web"})) == []


def test_orphan_deletion_keeps_dependents_without_the_owner(admin: Client) -> None:
    admin.apply(Deployment.from_dict(deployment(replicas=1)))
    admin.delete(Deployment, "web", cascade=CascadeType.ORPHAN)
    with pytest.raises(ApiError):
        admin.get(Deployment, "web")
    (rs,) = admin.list(ReplicaSet, labels={"app": "web"})
    assert rs.metadata.ownerReferences is None
    assert len(list(admin.list(Pod, labels={"app": "web"}))) == 1


def test_objects_whose_owners_are_gone_are_collected(admin: Client) -> None:
    orphan = ConfigMap(
        metadata=ObjectMeta(
            name="orphan",
            ownerReferences=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "gone",
                    "uid": "00000000-0000-0000-0000-000000000000",
                }
            ],
        ),
        data={"k": "v"},
    )
    admin.create(orphan)
    with pytest.raises(ApiError):
        admin.get(ConfigMap, "orphan")


def test_delete_preconditions(kube: FakeKube, admin: Client) -> None:
    cm = admin.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    with http(kube) as raw:  # lightkube does not expose DeleteOptions.preconditions
        stale = raw.request(
            "DELETE",
            f"/api/v1/namespaces/{NS}/configmaps/c",
            json={"preconditions": {"resourceVersion": "1"}},
        )
        assert stale.status_code == 409
        assert stale.json()["message"] == (
            f'Operation cannot be fulfilled on configmaps "c": Precondition failed: ResourceVersion in precondition: 1, '
            f"ResourceVersion in object meta: {cm.metadata.resourceVersion}"
        )
        ok = raw.request(
            "DELETE",
            f"/api/v1/namespaces/{NS}/configmaps/c",
            json={"preconditions": {"uid": cm.metadata.uid}},
        )
        assert ok.status_code == 200
        assert ok.json()["status"] == "Success"


def test_delete_options_are_validated_before_anything_is_deleted(kube: FakeKube, admin: Client) -> None:
    """staging/src/k8s.io/apiserver/pkg/endpoints/handlers/delete.go reads DeleteOptions from the body
    when there is one (else from the query: a parameter that does not convert is a 400), then
    ValidateDeleteOptions (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go)
    refuses an unknown propagationPolicy, orphanDependents together with propagationPolicy and a dryRun
    other than "All" with a 422. A body dryRun of ["Bogus"] used to delete the object for real."""
    admin.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    path = f"/api/v1/namespaces/{NS}/configmaps/c"
    with http(kube) as raw:
        for body, params in (
            ({"dryRun": ["Bogus"]}, {}),
            ({"propagationPolicy": "Bogus"}, {}),
            ({"orphanDependents": True, "propagationPolicy": "Background"}, {}),
            (None, {"propagationPolicy": "Bogus"}),
            (None, {"orphanDependents": "true", "propagationPolicy": "Foreground"}),
        ):
            refused = raw.request("DELETE", path, json=body, params=params)
            assert refused.status_code == 422, (body, params, refused.text)
            assert refused.json()["message"].startswith('DeleteOptions.meta.k8s.io "" is invalid: ')
        bad_grace = raw.request("DELETE", path, params={"gracePeriodSeconds": "soon"})
        assert bad_grace.status_code == 400
        undecodable = raw.request("DELETE", path, content=b"{not json")
        assert undecodable.status_code == 500
        assert undecodable.json()["kind"] == "Status"  # a Status body, not a plain-text traceback page
        assert raw.get(path).status_code == 200
        # The body wins: its dryRun applies, the query's does not.
        dry = raw.request("DELETE", path, json={"dryRun": ["All"]}, params={"propagationPolicy": "Bogus"})
        assert dry.status_code == 200
        assert raw.get(path).status_code == 200


def statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }


def test_a_claim_in_use_is_protected_until_its_pods_are_gone(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.apply(StatefulSet.from_dict(statefulset()))
        manual_kube.controller.run_until_stable()
        volume = admin.get(PersistentVolumeClaim, "data-db-0").spec.volumeName
        admin.delete(PersistentVolumeClaim, "data-db-0")
        manual_kube.controller.run_until_stable()
        claim = admin.get(PersistentVolumeClaim, "data-db-0")
        assert claim.metadata.deletionTimestamp is not None
        assert claim.metadata.finalizers == ["kubernetes.io/pvc-protection"]
        admin.delete(StatefulSet, "db")
        manual_kube.controller.run_until_stable()
        with pytest.raises(ApiError):
            admin.get(PersistentVolumeClaim, "data-db-0")
        with pytest.raises(ApiError):  # reclaimPolicy Delete: the provisioned volume goes too
            admin.get(PersistentVolume, volume)


def test_pods_are_deleted_gracefully(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.apply(Deployment.from_dict(deployment(replicas=1)))
        manual_kube.controller.run_until_stable()
        (pod,) = admin.list(Pod, labels={"app": "web"})
        admin.delete(Pod, pod.metadata.name)
        terminating = admin.get(Pod, pod.metadata.name)
        assert (
            terminating.metadata.deletionTimestamp is not None,
            terminating.metadata.deletionGracePeriodSeconds,
        ) == (True, 30)
        manual_kube.controller.run_until_stable()  # the kubelet confirms; the ReplicaSet replaces it
        names = [p.metadata.name for p in admin.list(Pod, labels={"app": "web"})]
        assert len(names) == 1
        assert names != [pod.metadata.name]


def test_namespace_termination(kube: FakeKube, admin: Client) -> None:
    with kube.admin_client(OTHER_NS) as other:
        other.apply(
            Deployment.from_dict(
                {**deployment(), "metadata": {"name": "web", "namespace": OTHER_NS, "labels": {"app": "web"}}}
            )
        )
        other.delete(Namespace, OTHER_NS)
        with pytest.raises(ApiError) as err:
            admin.get(Namespace, OTHER_NS)  # content deleted, then the namespace itself
        assert err.value.status.code == 404
        with pytest.raises(ApiError) as err:
            other.create(ConfigMap(metadata=ObjectMeta(name="late"), data={}))
        assert err.value.status.code == 404
        assert err.value.status.message == f'namespaces "{OTHER_NS}" not found'


def test_creating_in_a_terminating_namespace_is_forbidden(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.delete(Namespace, NS)
        assert admin.get(Namespace, NS).status.phase == "Terminating"
        with pytest.raises(ApiError) as err:
            admin.create(ConfigMap(metadata=ObjectMeta(name="late"), data={}))
        assert err.value.status.code == 403
        assert err.value.status.message == (
            f'configmaps "late" is forbidden: unable to create new content in namespace {NS} because it is being terminated'
        )
        manual_kube.controller.run_until_stable()
        with pytest.raises(ApiError):
            admin.get(Namespace, NS)


def test_a_new_namespace_gets_its_default_service_account(admin: Client) -> None:
    from lightkube.resources.core_v1 import ServiceAccount

    admin.create(from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}))
    assert admin.get(ServiceAccount, "default", namespace="fresh").metadata.name == "default"
