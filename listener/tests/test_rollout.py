"""Rollout classification over status fixtures (kstatus / gitops-engine rules) and pod fail-fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from listener import naming
from listener.rollout import Failure, RolloutState, pods_failure, rollout_state, workload_state

NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
REV = "rev-new"
OLD_REV = "rev-old"


def deployment(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, generation: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a-api", "generation": generation},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 600, **(spec or {})},
        "status": status if status is not None else {},
    }


def done(n: int = 2, generation: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": n,
        "availableReplicas": n,
        "conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
        **extra,
    }


DEADLINE = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "a-api-5d9c" has timed out progressing.',
}

DEPLOYMENT_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("current", deployment(status=done()), "Current", "2 replicas"),
    ("generation-not-observed", deployment(status=done(generation=1)), "InProgress", "generation 2"),
    ("no-status-yet", deployment(status={}), "InProgress", "generation 2"),
    (
        "updating",
        deployment(status={**done(), "updatedReplicas": 1}),
        "InProgress",
        "1 of 2 replicas updated",
    ),
    ("old-terminating", deployment(status={**done(), "replicas": 3}), "InProgress", "1 old replicas"),
    (
        "not-available",
        deployment(status={**done(), "availableReplicas": 1}),
        "InProgress",
        "1 of 2 updated replicas available",
    ),
    ("not-ready", deployment(status={**done(), "readyReplicas": 1}), "InProgress", "1 of 2 replicas ready"),
    (
        "available-false",
        deployment(
            status={
                **done(),
                "conditions": [{"type": "Available", "status": "False", "message": "min not met"}],
            }
        ),
        "InProgress",
        "min not met",
    ),
    (
        "deadline-exceeded",
        deployment(status={**done(), "updatedReplicas": 1, "conditions": [DEADLINE]}),
        "Failed",
        "timed out progressing",
    ),
    (
        "deadline-unset-still-classified",
        deployment(spec={"progressDeadlineSeconds": None}, status={**done(), "updatedReplicas": 1}),
        "InProgress",
        "1 of 2",
    ),
    (
        "paused",
        deployment(spec={"paused": True}, status={**done(), "updatedReplicas": 0}),
        "InProgress",
        "paused",
    ),
    (
        "zero-replicas",
        deployment(spec={"replicas": 0}, status={"observedGeneration": 2}),
        "Current",
        "0 replicas",
    ),
    (
        "zero-replicas-old-pods-left",
        deployment(spec={"replicas": 0}, status={"observedGeneration": 2, "replicas": 1}),
        "InProgress",
        "old replicas",
    ),
    (
        "autoscaled-no-spec-replicas",
        deployment(spec={"replicas": None}, status=done(1)),
        "Current",
        "1 replicas",
    ),
    ("autoscaled-scaled-up", {**deployment(status=done(5)), "spec": {}}, "Current", "replicas"),
]


@pytest.mark.parametrize(
    ("obj", "state", "reason"), [c[1:] for c in DEPLOYMENT_CASES], ids=[c[0] for c in DEPLOYMENT_CASES]
)
def test_deployment_state(obj: dict[str, Any], state: str, reason: str) -> None:
    obj = {**obj, "spec": {k: v for k, v in obj["spec"].items() if v is not None}}
    result = workload_state(obj)
    assert result.state == state
    assert reason in result.reason


def statefulset(
    status: dict[str, Any], replicas: int = 1, strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "a-pg", "generation": 3},
        "spec": {"replicas": replicas, "updateStrategy": strategy or {"type": "RollingUpdate"}},
        "status": status,
    }


STS_DONE = {
    "observedGeneration": 3,
    "replicas": 1,
    "readyReplicas": 1,
    "updatedReplicas": 1,
    "currentReplicas": 1,
    "currentRevision": "a-pg-7f",
    "updateRevision": "a-pg-7f",
}
STATEFULSET_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("current", statefulset(STS_DONE), "Current"),
    ("generation", statefulset({**STS_DONE, "observedGeneration": 2}), "InProgress"),
    ("not-ready", statefulset({**STS_DONE, "readyReplicas": 0}), "InProgress"),
    ("revision-rolling", statefulset({**STS_DONE, "updateRevision": "a-pg-8a"}), "InProgress"),
    (
        "not-updated",
        statefulset({**STS_DONE, "updatedReplicas": 0, "updateRevision": "a-pg-8a"}),
        "InProgress",
    ),
    (
        "on-delete",
        statefulset({**STS_DONE, "updateRevision": "a-pg-8a"}, strategy={"type": "OnDelete"}),
        "Current",
    ),
    (
        "partitioned",
        statefulset(
            {**STS_DONE, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1, "updateRevision": "x"},
            replicas=3,
            strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        ),
        "Current",
    ),
    ("zero", statefulset({"observedGeneration": 3}, replicas=0), "Current"),
]


@pytest.mark.parametrize(
    ("obj", "state"), [c[1:] for c in STATEFULSET_CASES], ids=[c[0] for c in STATEFULSET_CASES]
)
def test_statefulset_state(obj: dict[str, Any], state: str) -> None:
    assert workload_state(obj).state == state


def test_other_kinds_are_current_once_applied() -> None:
    assert workload_state({"kind": "Service", "metadata": {"name": "s"}}) == RolloutState(
        "Current", "Service has no rollout status"
    )


def pod(
    name: str,
    revision: str = REV,
    *,
    waiting: tuple[str, str] | None = None,
    restarts: int = 0,
    last_terminated: dict[str, Any] | None = None,
    scheduled: dict[str, Any] | None = None,
    deleting: bool = False,
    init: bool = False,
    template_hash: str = "5d9c",
) -> dict[str, Any]:
    cs: dict[str, Any] = {
        "name": "api-server",
        "image": "repo/agent:2",
        "restartCount": restarts,
        "ready": False,
        "state": {"running": {}},
    }
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    if last_terminated:
        cs["lastState"] = {"terminated": last_terminated}
    status: dict[str, Any] = {"phase": "Pending", "conditions": [scheduled] if scheduled else []}
    status["initContainerStatuses" if init else "containerStatuses"] = [cs]
    meta: dict[str, Any] = {
        "name": name,
        "labels": {naming.LABEL_REVISION_ID: revision, "pod-template-hash": template_hash},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-09-01T11:59:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "api-server", "image": "repo/agent:2"}]},
        "status": status,
    }


def unschedulable(seconds_ago: int) -> dict[str, Any]:
    since = (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "lastTransitionTime": since,
        "message": "0/3 nodes are available: 3 Insufficient cpu.",
    }


PULL_MSG = 'Back-off pulling image "repo/agent:2": not found'
POD_CASES: list[tuple[str, list[dict[str, Any]], str | None, list[str]]] = [
    ("healthy", [pod("p1")], None, []),
    (
        "image-pull-backoff",
        [pod("p1", waiting=("ImagePullBackOff", PULL_MSG))],
        "ImagePullBackOff",
        ['"repo/agent:2"', PULL_MSG, "api-server"],
    ),
    (
        "err-image-pull",
        [pod("p1", waiting=("ErrImagePull", "unauthorized"))],
        "ErrImagePull",
        ["unauthorized", "repo/agent:2"],
    ),
    (
        "crash-loop",
        [
            pod(
                "p1",
                waiting=("CrashLoopBackOff", "back-off 40s"),
                restarts=4,
                last_terminated={"reason": "Error", "exitCode": 3, "message": "KeyError: OPENAI_API_KEY"},
            )
        ],
        "CrashLoopBackOff",
        ["api-server", "restarted 4 times", "Error", "exit code 3", "OPENAI_API_KEY"],
    ),
    (
        "missing-secret-key",
        [
            pod(
                "p1",
                waiting=(
                    "CreateContainerConfigError",
                    "couldn't find key token in Secret agents/team-secrets",
                ),
            )
        ],
        "CreateContainerConfigError",
        ["team-secrets", "token"],
    ),
    (
        "run-as-non-root",
        [
            pod(
                "p1",
                waiting=(
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image will run as root",
                ),
            )
        ],
        "CreateContainerConfigError",
        ["runAsNonRoot"],
    ),
    (
        "init-container-crash",
        [
            pod(
                "p1",
                init=True,
                waiting=("CrashLoopBackOff", ""),
                restarts=2,
                last_terminated={"reason": "Error", "exitCode": 1},
            )
        ],
        "CrashLoopBackOff",
        ["exit code 1"],
    ),
    (
        "unschedulable-long",
        [pod("p1", scheduled=unschedulable(60))],
        "Unschedulable",
        ["60s", "Insufficient cpu"],
    ),
    ("unschedulable-within-window", [pod("p1", scheduled=unschedulable(5))], None, []),
    (
        "old-revision-crashing-ignored",
        [pod("old", OLD_REV, waiting=("CrashLoopBackOff", "")), pod("p1")],
        None,
        [],
    ),
    ("terminating-ignored", [pod("p1", waiting=("CrashLoopBackOff", ""), deleting=True)], None, []),
    ("containercreating-is-fine", [pod("p1", waiting=("ContainerCreating", ""))], None, []),
    (
        "first-by-name",
        [pod("p2", waiting=("ErrImagePull", "x")), pod("p1", waiting=("CrashLoopBackOff", ""))],
        "CrashLoopBackOff",
        ["p1"],
    ),
]


@pytest.mark.parametrize(
    ("pods", "cause", "needles"), [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES]
)
def test_pods_failure(pods: list[dict[str, Any]], cause: str | None, needles: list[str]) -> None:
    failure = pods_failure(pods, NOW, revision_id=REV)
    if cause is None:
        assert failure is None
        return
    assert isinstance(failure, Failure)
    assert failure.cause == cause
    assert failure.state == "Failed"
    for needle in needles:
        assert needle in failure.reason


def test_without_revision_filter_old_pods_count() -> None:
    pods = [pod("old", OLD_REV, waiting=("CrashLoopBackOff", ""))]
    assert pods_failure(pods, NOW) is not None
    assert pods_failure(pods, NOW, revision_id=REV) is None


def test_template_hash_filter() -> None:
    pods = [pod("old", REV, waiting=("CrashLoopBackOff", ""), template_hash="aaaa")]
    assert pods_failure(pods, NOW, template_hash="bbbb") is None
    assert pods_failure(pods, NOW, template_hash="aaaa") is not None


def test_unschedulable_window_is_configurable() -> None:
    pods = [pod("p1", scheduled=unschedulable(60))]
    assert pods_failure(pods, NOW, unschedulable_window=timedelta(minutes=5)) is None
    assert pods_failure(pods, NOW, unschedulable_window=timedelta(seconds=30)) is not None


def test_rollout_state_combines_workload_and_pods() -> None:
    rolling = deployment(status={**done(), "updatedReplicas": 1})
    crashing = [pod("p1", waiting=("CrashLoopBackOff", ""), restarts=3)]
    assert rollout_state(rolling, crashing, NOW, revision_id=REV).state == "Failed"
    assert rollout_state(rolling, [pod("p1")], NOW, revision_id=REV).state == "InProgress"
    # Once Current, a later crash is a health matter, not this rollout's failure.
    assert rollout_state(deployment(status=done()), crashing, NOW, revision_id=REV).state == "Current"
    deadline = deployment(status={**done(), "conditions": [DEADLINE]})
    assert rollout_state(deadline, [], NOW).reason.startswith("progress deadline exceeded")


def test_replica_failure_fails_fast_with_the_controllers_message() -> None:
    # The ReplicaSet cannot create pods (a ResourceQuota, PodSecurity or admission rejection): the
    # deployment controller sets ReplicaFailure=True with the API server's reason (FailedCreate), and
    # no pod ever appears for pods_failure() to look at. Waiting out the deadline cannot help.
    status = {
        "observedGeneration": 2,
        "replicas": 0,
        "updatedReplicas": 0,
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "a-api-5d" is forbidden: exceeded quota: compute, requested: cpu=2',
            },
        ],
    }
    state = rollout_state(deployment(status=status), [], NOW)
    assert state.state == "Failed"
    assert "FailedCreate" in state.reason
    assert "exceeded quota" in state.reason
    cleared = {**status, "conditions": [{**status["conditions"][1], "status": "False"}]}
    assert workload_state(deployment(status=cleared)).state == "InProgress"
