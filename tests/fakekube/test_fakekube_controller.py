"""The fake controller, observed through lightkube the way the listener will observe a real cluster."""

from __future__ import annotations

from typing import Any

from lightkube import Client
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import Event, PersistentVolumeClaim, Pod

from tests.fakekube.conftest import NS, deployment
from tools.fakekube import FakeKube, PodState


def rollout_state(d: Any) -> str:
    """The reference's kstatus-like classifier (listener-engineering.md, 2.2), as the listener will use it."""
    st = d.status
    if st is None or (st.observedGeneration or 0) < d.metadata.generation:
        return "InProgress"
    if any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in st.conditions or []):
        return "Failed"
    want = d.spec.replicas
    updated = st.updatedReplicas or 0
    if updated < want or (st.replicas or 0) > updated or (st.availableReplicas or 0) < updated:
        return "InProgress"
    return "Current"


def conditions(d: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in d.status.conditions}


def test_auto_mode_drives_a_deployment_to_available(client: Client) -> None:
    client.apply(Deployment.from_dict(deployment(replicas=3)))
    d = client.get(Deployment, "web")
    assert rollout_state(d) == "Current"
    assert (d.status.replicas, d.status.readyReplicas, d.status.availableReplicas) == (3, 3, 3)
    assert conditions(d) == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    pods = list(client.list(Pod, labels={"app": "web"}))
    assert len(pods) == 3
    assert all(p.metadata.ownerReferences[0].kind == "ReplicaSet" for p in pods)
    assert all(p.status.phase == "Running" for p in pods)


def test_manual_mode_moves_only_on_step(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as client:
        client.apply(Deployment.from_dict(deployment()))
        assert rollout_state(client.get(Deployment, "web")) == "InProgress"
        assert list(client.list(Pod)) == []
        # One step is one pass of each controller over what is dirty: the Deployment controller
        # creates the ReplicaSet, the ReplicaSet controller runs on the next step, and so on.
        assert manual_kube.controller.step() is True
        assert list(client.list(Pod)) == []
        assert manual_kube.controller.run_until_stable() >= 1
        assert rollout_state(client.get(Deployment, "web")) == "Current"
        assert manual_kube.controller.step() is False  # a fixed point: nothing more to write
        client.apply(Deployment.from_dict(deployment(image="app:2")))
        d = client.get(Deployment, "web")
        assert (d.metadata.generation, d.status.observedGeneration) == (2, 1)
        assert manual_kube.controller.run_until_stable() >= 1
        d = client.get(Deployment, "web")
        assert rollout_state(d) == "Current"
        images = {p.spec.containers[0].image for p in client.list(Pod, labels={"app": "web"})}
        assert images == {"app:2"}


def test_crash_looping_pods_keep_the_old_ones_and_time_out(kube: FakeKube, client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    kube.controller.set_pod_behaviour(PodState.CRASH_LOOP, image="app:2")
    client.apply(Deployment.from_dict(deployment(image="app:2")))
    d = client.get(Deployment, "web")
    assert rollout_state(d) == "InProgress"
    # 2 replicas with the default 25%/25%: maxSurge rounds up to 1, maxUnavailable down to 0, so one
    # new pod is added and no old one goes until it is available (deployment/util.ResolveFenceposts).
    assert (d.status.replicas, d.status.updatedReplicas, d.status.availableReplicas) == (3, 1, 2)
    new_pods = [p for p in client.list(Pod, labels={"app": "web"}) if p.spec.containers[0].image == "app:2"]
    assert len(new_pods) == 1
    for pod in new_pods:
        cs = pod.status.containerStatuses[0]
        assert cs.state.waiting.reason == "CrashLoopBackOff"
        assert cs.restartCount > 0
    warnings = list(client.list(Event, fields={"reason": "BackOff"}))
    assert {e.involvedObject.name for e in warnings} == {p.metadata.name for p in new_pods}
    kube.controller.mark_progress_deadline_exceeded(NS, "web")
    d = client.get(Deployment, "web")
    assert rollout_state(d) == "Failed"
    assert conditions(d)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    # A fixed image is a new generation: progress restarts and completes.
    client.apply(Deployment.from_dict(deployment(image="app:3")))
    assert rollout_state(client.get(Deployment, "web")) == "Current"
    assert {p.spec.containers[0].image for p in client.list(Pod, labels={"app": "web"})} == {"app:3"}


def test_image_pull_failure_and_unschedulable_pods_per_workload(kube: FakeKube, client: Client) -> None:
    kube.controller.set_pod_behaviour(PodState.IMAGE_PULL_BACKOFF, image="missing:1")
    kube.controller.set_pod_behaviour(
        PodState.UNSCHEDULABLE,
        namespace=NS,
        workload="big",
        message="0/2 nodes are available: 2 Insufficient memory.",
    )
    client.apply(Deployment.from_dict(deployment("pull", image="missing:1", replicas=1)))
    client.apply(Deployment.from_dict(deployment("big", image="missing:1", replicas=1)))  # workload rule wins

    (pull,) = client.list(Pod, labels={"app": "pull"})
    assert pull.status.phase == "Pending"
    assert pull.status.containerStatuses[0].state.waiting.reason == "ImagePullBackOff"

    (big,) = client.list(Pod, labels={"app": "big"})
    scheduled = {c.type: c for c in big.status.conditions}["PodScheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message == "0/2 nodes are available: 2 Insufficient memory."
    assert big.status.containerStatuses is None

    kube.controller.clear_pod_behaviours()
    assert rollout_state(client.get(Deployment, "pull")) == "Current"
    assert rollout_state(client.get(Deployment, "big")) == "Current"


def test_err_image_pull_is_distinct(kube: FakeKube, client: Client) -> None:
    kube.controller.set_pod_behaviour(PodState.ERR_IMAGE_PULL, namespace=NS, workload="web")
    client.apply(Deployment.from_dict(deployment(replicas=1)))
    (pod,) = client.list(Pod, labels={"app": "web"})
    assert pod.status.containerStatuses[0].state.waiting.reason == "ErrImagePull"


def test_partial_rollout_holds_new_pods_unready(kube: FakeKube, client: Client) -> None:
    client.apply(Deployment.from_dict(deployment(replicas=3)))
    kube.controller.hold_rollout(NS, "web", ready=1)
    client.apply(Deployment.from_dict(deployment(image="app:2", replicas=3)))
    d = client.get(Deployment, "web")
    # maxSurge 1, maxUnavailable 0: the first new pod became ready, so one old pod went and a second
    # new pod was added; it is held unready, so two old pods still serve.
    assert (d.status.replicas, d.status.updatedReplicas, d.status.readyReplicas) == (4, 2, 3)
    assert rollout_state(d) == "InProgress"
    assert kube.controller.expire_progress_deadlines() == [f"{NS}/web"]
    assert rollout_state(client.get(Deployment, "web")) == "Failed"
    kube.controller.hold_rollout(NS, "web", ready=None)
    d = client.get(Deployment, "web")
    # Still the same generation: the deadline condition sticks even though the pods are now fine.
    assert (d.status.replicas, d.status.updatedReplicas, d.status.readyReplicas) == (3, 3, 3)
    assert conditions(d)["Progressing"][1] == "ProgressDeadlineExceeded"


def statefulset(image: str = "db:1", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }


def test_statefulset_rolls_out_by_revision_and_keeps_claims(kube: FakeKube, client: Client) -> None:
    client.apply(StatefulSet.from_dict(statefulset()))
    s = client.get(StatefulSet, "db")
    assert (s.status.readyReplicas, s.status.currentRevision) == (2, s.status.updateRevision)
    assert sorted(p.metadata.name for p in client.list(Pod, labels={"app": "db"})) == ["db-0", "db-1"]
    kube.controller.set_pod_behaviour(PodState.CRASH_LOOP, image="db:2")
    client.apply(StatefulSet.from_dict(statefulset(image="db:2")))
    s = client.get(StatefulSet, "db")
    # The highest ordinal is replaced first and crash-loops, so the update stops there.
    assert s.status.currentRevision != s.status.updateRevision
    assert s.status.updatedReplicas == 1
    images = {p.metadata.name: p.spec.containers[0].image for p in client.list(Pod, labels={"app": "db"})}
    assert images == {"db-0": "db:1", "db-1": "db:2"}
    kube.controller.clear_pod_behaviours()
    s = client.get(StatefulSet, "db")
    assert s.status.currentRevision == s.status.updateRevision
    assert s.status.updatedReplicas == 2
    client.delete(StatefulSet, "db")
    # Background deletion: the garbage collector removes the pods after the response.
    assert list(client.list(Pod, labels={"app": "db"})) == []
    claims = sorted(c.metadata.name for c in client.list(PersistentVolumeClaim))
    assert claims == ["data-db-0", "data-db-1"]
