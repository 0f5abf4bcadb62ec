"""The scheduler, kubelet and admission: pods that the API server stored but that still do not run.

Messages are the ones real components produce: the kubelet's InvalidImageName (pkg/kubelet/images)
and CreateContainerConfigError (kubelet_pods.go makeEnvironmentVariables, verifyRunAsNonRoot), the
scheduler's "0/N nodes are available" (pkg/scheduler), the quota and LimitRanger admission plugins
(plugin/pkg/admission/{resourcequota,limitranger,serviceaccount}), Pod Security admission
(staging/src/k8s.io/pod-security-admission/policy).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    Namespace,
    PersistentVolumeClaim,
    Pod,
    Secret,
    ServiceAccount,
)
from lightkube.resources.storage_v1 import StorageClass

from tests.fakekube.conftest import NS, deployment, http
from tools.fakekube import FakeKube, NodeSpec


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS, field_manager="test") as c:
        yield c


def only_pod(admin: Client, app: str = "web") -> Any:
    (pod,) = admin.list(Pod, labels={"app": app})
    return pod


def waiting(pod: Any) -> tuple[str, str | None]:
    state = pod.status.containerStatuses[0].state.waiting
    return state.reason, state.message


def dep(name: str = "web", **container: Any) -> dict[str, Any]:
    d = deployment(name, replicas=1)
    d["spec"]["template"]["spec"]["containers"][0].update(container)
    return d


def test_invalid_image_references(admin: Client) -> None:
    # kubelet applyDefaultImageTag -> ParseNormalizedNamed (distribution/reference normalize.go): the
    # lowercase check names the repository after the registry domain ("Team/App").
    admin.apply(Deployment.from_dict(dep(image="Registry.example.com/Team/App:1")))
    reason, message = waiting(only_pod(admin))
    assert reason == "InvalidImageName"
    assert message == (
        'Failed to apply default image tag "Registry.example.com/Team/App:1": couldn\'t parse image name '
        '"Registry.example.com/Team/App:1": invalid reference format: repository name (Team/App) must be lowercase'
    )
    admin.apply(Deployment.from_dict(dep("digest", image="app@sha256:abc123")))
    assert waiting(only_pod(admin, "digest"))[1].endswith("invalid reference format")
    admin.apply(
        Deployment.from_dict(dep("ok", image="registry.example.com:5000/team/app@sha256:" + "a" * 64))
    )
    assert only_pod(admin, "ok").status.phase == "Running"


def test_missing_secrets_and_config_maps(admin: Client) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    admin.apply(Deployment.from_dict(dep(env=env)))
    assert waiting(only_pod(admin)) == ("CreateContainerConfigError", 'secret "creds" not found')
    admin.create(Secret(metadata=ObjectMeta(name="creds"), stringData={"other": "x"}))
    assert waiting(only_pod(admin)) == (
        "CreateContainerConfigError",
        f"couldn't find key token in Secret {NS}/creds",
    )
    admin.patch(Secret, "creds", {"stringData": {"token": "t"}})
    assert only_pod(admin).status.phase == "Running"  # the Secret's write re-checks the pods that use it
    optional = [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}}
    ]
    admin.apply(Deployment.from_dict(dep("optional", env=optional)))
    assert only_pod(admin, "optional").status.phase == "Running"
    volume = dep("mounts", volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}])
    volume["spec"]["template"]["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "settings"}}]
    admin.apply(Deployment.from_dict(volume))
    assert waiting(only_pod(admin, "mounts")) == ("ContainerCreating", None)
    mounts = [e.message for e in admin.list(Event, fields={"reason": "FailedMount"})]
    assert 'MountVolume.SetUp failed for volume "cfg" : configmap "settings" not found' in mounts
    admin.create(ConfigMap(metadata=ObjectMeta(name="settings"), data={"a": "b"}))
    assert only_pod(admin, "mounts").status.phase == "Running"


def test_run_as_non_root_against_the_images_user(kube: FakeKube, admin: Client) -> None:
    manifest = dep()
    manifest["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    admin.apply(Deployment.from_dict(manifest))
    pod = only_pod(admin)
    reason, message = waiting(pod)
    assert reason == "CreateContainerConfigError"
    assert message.startswith("container has runAsNonRoot and image will run as root (pod: ")
    kube.controller.set_image_user("app:1", "app")
    assert waiting(only_pod(admin))[1].startswith(
        "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"
    )
    kube.controller.set_image_user("app:1", 1000)
    assert only_pod(admin).status.phase == "Running"
    explicit = copy.deepcopy(manifest)
    explicit["metadata"]["name"] = "zero"
    explicit["spec"]["selector"]["matchLabels"]["app"] = explicit["spec"]["template"]["metadata"]["labels"][
        "app"
    ] = "zero"
    explicit["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    admin.apply(Deployment.from_dict(explicit))
    assert waiting(only_pod(admin, "zero"))[1].startswith("container's runAsUser breaks non-root policy")


def test_requests_must_fit_a_node(admin: Client) -> None:
    admin.apply(Deployment.from_dict(dep(resources={"requests": {"cpu": "64"}})))
    pod = only_pod(admin)
    scheduled = {c.type: c for c in pod.status.conditions}["PodScheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message == (
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 No preemption victims found for incoming pod."
    )
    assert pod.spec.nodeName is None
    assert [e.message for e in admin.list(Event, fields={"reason": "FailedScheduling"})] == [
        scheduled.message
    ]


def test_nodes_fill_up() -> None:
    with (
        FakeKube([NS], nodes=[NodeSpec("small", cpu="1", memory="1Gi")]) as kube,
        kube.admin_client(NS) as admin,
    ):
        big = deployment(replicas=3)
        big["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "requests": {"cpu": "400m", "memory": "100Mi"}
        }
        admin.apply(Deployment.from_dict(big))
        phases = sorted(p.status.phase for p in admin.list(Pod, labels={"app": "web"}))
        assert phases == ["Pending", "Running", "Running"]
        d = admin.get(Deployment, "web")
        assert (d.status.readyReplicas, d.status.unavailableReplicas) == (2, 1)


def test_claims_bind_only_with_a_storage_class() -> None:
    sts = {
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
    with FakeKube([NS], storage_classes=()) as kube, kube.admin_client(NS) as admin:
        admin.apply(StatefulSet.from_dict(sts))
        claim = admin.get(PersistentVolumeClaim, "data-db-0")
        assert (claim.status.phase, claim.spec.storageClassName) == ("Pending", None)
        pod = admin.get(Pod, "db-0")
        assert (
            "pod has unbound immediate PersistentVolumeClaims"
            in {c.type: c for c in pod.status.conditions}["PodScheduled"].message
        )
        events = [e.message for e in admin.list(Event, fields={"involvedObject.name": "data-db-0"})]
        assert "no persistent volumes available for this claim and no storage class is set" in events
        admin.create(
            StorageClass.from_dict(
                {
                    "metadata": {
                        "name": "gp3",
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    },
                    "provisioner": "ebs.csi.aws.com",
                }
            )
        )
        claim = admin.get(PersistentVolumeClaim, "data-db-0")  # RetroactiveDefaultStorageClass, then bound
        assert (claim.status.phase, claim.spec.storageClassName, claim.status.capacity) == (
            "Bound",
            "gp3",
            {"storage": "1Gi"},
        )
        assert claim.spec.volumeName == f"pvc-{claim.metadata.uid}"
        assert admin.get(StatefulSet, "db").status.readyReplicas == 1


def test_an_unnamed_claim_template_fails_at_claim_creation(admin: Client) -> None:
    # ValidateStatefulSetSpec checks claim templates' specs, not their names (found by fuzzing): the
    # StatefulSet controller's claim "-db-0" is then refused, so no pod is created (FailedCreate).
    sts = {
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
                {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
            ],
        },
    }
    admin.create(StatefulSet.from_dict(sts))
    assert list(admin.list(Pod, labels={"app": "db"})) == []
    events = [
        e for e in admin.list(Event, fields={"involvedObject.name": "db"}) if e.reason == "FailedCreate"
    ]
    assert events
    assert events[0].message.startswith("create Claim -db-0 for Pod db-0 in StatefulSet db failed error:")


def test_a_named_storage_class_must_exist(admin: Client) -> None:
    admin.create(
        PersistentVolumeClaim.from_dict(
            {
                "metadata": {"name": "c"},
                "spec": {
                    "storageClassName": "fast",
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
    )
    assert admin.get(PersistentVolumeClaim, "c").status.phase == "Pending"
    assert 'storageclass.storage.k8s.io "fast" not found' in [
        e.message for e in admin.list(Event, fields={"reason": "ProvisioningFailed"})
    ]


def test_a_quota_stops_pod_creation_with_replica_failure(admin: Client) -> None:
    admin.create(
        from_dict(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "pods"},
                "spec": {"hard": {"pods": "1"}},
            }
        )
    )
    admin.apply(Deployment.from_dict(deployment(replicas=2)))
    assert len(list(admin.list(Pod, labels={"app": "web"}))) == 1
    (rs,) = admin.list(ReplicaSet, labels={"app": "web"})
    failure = {c.type: c for c in rs.status.conditions}["ReplicaFailure"]
    assert (failure.status, failure.reason) == ("True", "FailedCreate")
    assert (
        "is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1"
        in failure.message
    )
    d = admin.get(Deployment, "web")
    assert {c.type: c.reason for c in d.status.conditions}["ReplicaFailure"] == "FailedCreate"
    quota = admin.get(
        from_dict({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"}}).__class__,
        "pods",
    )
    assert (quota.status.hard, quota.status.used) == ({"pods": "1"}, {"pods": "1"})
    admin.patch(quota.__class__, "pods", {"spec": {"hard": {"pods": "5"}}})
    assert admin.get(Deployment, "web").status.readyReplicas == 2
    assert "ReplicaFailure" not in {c.type for c in admin.get(Deployment, "web").status.conditions}


def test_a_compute_quota_requires_limits(admin: Client) -> None:
    admin.create(
        from_dict(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "compute"},
                "spec": {"hard": {"limits.cpu": "2"}},
            }
        )
    )
    admin.apply(Deployment.from_dict(deployment(replicas=1)))
    (rs,) = admin.list(ReplicaSet, labels={"app": "web"})
    message = {c.type: c for c in rs.status.conditions}["ReplicaFailure"].message
    assert message.endswith("is forbidden: failed quota: compute: must specify limits.cpu for: app")


def test_limit_ranges_default_and_bound_container_resources(admin: Client) -> None:
    admin.create(
        from_dict(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": "limits"},
                "spec": {
                    "limits": [
                        {
                            "type": "Container",
                            "default": {"memory": "256Mi"},
                            "defaultRequest": {"memory": "128Mi"},
                            "max": {"cpu": "1"},
                        }
                    ]
                },
            }
        )
    )
    admin.apply(Deployment.from_dict(dep()))
    res = only_pod(admin).spec.containers[0].resources
    # The LimitRange's defaults; max without default means default = max (SetDefaults_LimitRangeItem).
    assert (res.requests, res.limits) == ({"memory": "128Mi", "cpu": "1"}, {"memory": "256Mi", "cpu": "1"})
    admin.apply(Deployment.from_dict(dep("greedy", resources={"limits": {"cpu": "2"}})))
    (rs,) = admin.list(ReplicaSet, labels={"app": "greedy"})
    assert {c.type: c for c in rs.status.conditions}["ReplicaFailure"].message.endswith(
        "is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    )


def test_pods_need_their_service_account(admin: Client) -> None:
    manifest = dep()
    manifest["spec"]["template"]["spec"]["serviceAccountName"] = "runner"
    admin.apply(Deployment.from_dict(manifest))
    assert list(admin.list(Pod, labels={"app": "web"})) == []
    events = [e.message for e in admin.list(Event, fields={"reason": "FailedCreate"})]
    assert any(
        f'error looking up service account {NS}/runner: serviceaccount "runner" not found' in m
        for m in events
    )
    admin.create(ServiceAccount(metadata=ObjectMeta(name="runner")))
    assert only_pod(admin).spec.serviceAccountName == "runner"


def test_pod_security_restricted_namespaces(kube: FakeKube, admin: Client) -> None:
    admin.patch(Namespace, NS, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    with http(kube) as client:
        answer = client.patch(
            f"/apis/apps/v1/namespaces/{NS}/deployments/web",
            params={"fieldManager": "t"},
            json=dep(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    assert answer.status_code == 201  # workloads are only warned about
    expected = (
        'PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "app" must set '
        'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "app" must set '
        'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "app" must set '
        'securityContext.runAsNonRoot=true), seccompProfile (pod or container "app" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    assert answer.headers.get_list("warning") == [
        '299 - "would violate ' + expected.replace('"', '\\"') + '"'
    ]
    (rs,) = admin.list(ReplicaSet, labels={"app": "web"})
    assert {c.type: c for c in rs.status.conditions}["ReplicaFailure"].message.endswith(
        "is forbidden: violates " + expected
    )
    hardened = dep(
        "hardened", securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    )
    hardened["spec"]["template"]["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    admin.apply(Deployment.from_dict(hardened))
    assert only_pod(admin, "hardened").status.phase == "Running"


def test_a_probe_on_an_undeclared_port_name_never_becomes_ready(admin: Client) -> None:
    """Validation accepts any IANA_SVC_NAME as a probe port (pkg/apis/core/validation ValidatePortNumOrName);
    the kubelet resolves the name when it probes (pkg/kubelet/prober/prober.go -> findPortByName,
    "couldn't find port"), the probe errors and the container is never Ready."""
    probe = {"httpGet": {"path": "/ok", "port": "http"}}
    admin.apply(Deployment.from_dict(dep(readinessProbe=probe)))
    pod = only_pod(admin)
    assert pod.status.phase == "Running"
    assert pod.status.containerStatuses[0].ready is False
    unhealthy = [e.message for e in admin.list(Event, fields={"reason": "Unhealthy"})]
    assert any("couldn't find port: http" in m for m in unhealthy)
    named = dep("named", readinessProbe=probe, ports=[{"name": "http", "containerPort": 8000}])
    admin.apply(Deployment.from_dict(named))
    assert only_pod(admin, "named").status.containerStatuses[0].ready is True
