"""The fake scheduler and kubelet: where a pod that the API server accepted still fails.

A pod is scheduled only when its PersistentVolumeClaims are bound and its requests fit a node's
allocatable (else ``PodScheduled=False/Unschedulable`` with the scheduler's message); it starts only
when its image reference parses (else ``InvalidImageName``), every Secret/ConfigMap it references
(and the key) exists (else ``CreateContainerConfigError``, or ``ContainerCreating`` with a
``FailedMount`` event for volumes), and ``runAsNonRoot`` agrees with the image's user (a per-image
fake setting; images run as root unless told otherwise, like images without a ``USER``).

Past those checks, the test's scripted behaviour decides: ready, unready, slow (pending),
crash-looping, failing to pull. Pod status is a pure function of the pod and its state, with
timestamps from the pod, so re-reconciling an unchanged pod writes nothing.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tools.fakekube import images, quantity


class PodState(enum.StrEnum):
    READY = "ready"
    # Running, containers started, readiness probe failing: holds a rollout without failing it.
    UNREADY = "unready"
    PENDING = "pending"  # ContainerCreating (a slow start)
    CRASH_LOOP = "crash-loop"
    ERR_IMAGE_PULL = "err-image-pull"
    IMAGE_PULL_BACKOFF = "image-pull-backoff"
    UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True)
class PodBehaviour:
    state: PodState
    message: str | None = None


@dataclass(frozen=True)
class NodeSpec:
    """A fake node: its name, allocatable resources and labels."""

    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    zone: str = "zone-a"

    def body(self) -> dict[str, Any]:
        allocatable = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": "100Gi",
        }
        return {
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": self.zone,
                },
            },
            "spec": {},
            "status": {
                "capacity": dict(allocatable),
                "allocatable": allocatable,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.37.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }


DEFAULT_NODES = (NodeSpec("fakekube-node-1", zone="zone-a"), NodeSpec("fakekube-node-2", zone="zone-b"),
                 NodeSpec("fakekube-node-3", zone="zone-c"))  # fmt: skip


@dataclass(frozen=True)
class Waiting:
    """A container the kubelet cannot start: the waiting reason and message (and an Event)."""

    reason: str
    message: str
    event_reason: str = "Failed"


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """The scheduler's view: the sum of container requests (init containers: the max)."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for r, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[r] = total.get(r, Decimal(0)) + quantity.parse(v).value
    for c in spec.get("initContainers") or []:
        for r, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[r] = max(total.get(r, Decimal(0)), quantity.parse(v).value)
    return total


def schedule(
    pod: Mapping[str, Any], nodes: list[Mapping[str, Any]], pods_on: Mapping[str, list[Mapping[str, Any]]]
) -> tuple[str | None, str]:
    """(node name, "") or (None, the scheduler's FailedScheduling message)."""
    need = pod_requests(pod)
    if not nodes:
        return None, "no nodes available to schedule pods"
    reasons: dict[str, int] = {}
    for node in nodes:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        running = pods_on.get(node["metadata"]["name"], [])
        used: dict[str, Decimal] = {}
        for p in running:
            for r, v in pod_requests(p).items():
                used[r] = used.get(r, Decimal(0)) + v
        short = []
        if len(running) + 1 > int(alloc.get("pods", "110")):
            short.append("Too many pods")
        for r, v in need.items():
            have = quantity.parse(alloc[r]).value if r in alloc else Decimal(0)
            if used.get(r, Decimal(0)) + v > have:
                short.append(f"Insufficient {r}")
        if not short:
            return node["metadata"]["name"], ""
        for s in short:
            reasons[s] = reasons.get(s, 0) + 1
    n = len(nodes)
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return None, (
        f"0/{n} nodes are available: {detail}. preemption: 0/{n} nodes are available: "
        f"{n} No preemption victims found for incoming pod."
    )


def config_problems(
    pod: Mapping[str, Any], secrets: Mapping[str, Any], configmaps: Mapping[str, Any]
) -> tuple[Waiting | None, Waiting | None]:
    """(env problem -> CreateContainerConfigError, volume problem -> ContainerCreating + FailedMount)."""
    spec = pod.get("spec") or {}
    ns = pod["metadata"]["namespace"]
    sources = {"Secret": secrets, "ConfigMap": configmaps}

    def missing(kind: str, name: str, key: str | None) -> str | None:
        obj = sources[kind].get(name)
        if obj is None:
            return f'{kind.lower()} "{name}" not found'
        if key is not None:
            data = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
            if key not in data:
                return f"couldn't find key {key} in {kind} {ns}/{name}"
        return None

    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            for e in c.get("env") or []:
                source = e.get("valueFrom") or {}
                for ref_name, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    ref = source.get(ref_name)
                    if ref and not ref.get("optional"):
                        problem = missing(kind, ref.get("name", ""), ref.get("key"))
                        if problem:
                            return Waiting("CreateContainerConfigError", problem), None
            for ef in c.get("envFrom") or []:
                for ref_name, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    ref = ef.get(ref_name)
                    if ref and not ref.get("optional"):
                        problem = missing(kind, ref.get("name", ""), None)
                        if problem:
                            return Waiting("CreateContainerConfigError", problem), None
    for v in spec.get("volumes") or []:
        for source_name, kind, name_field in (
            ("secret", "Secret", "secretName"),
            ("configMap", "ConfigMap", "name"),
        ):
            src = v.get(source_name)
            if src and not src.get("optional"):
                problem = missing(kind, src.get(name_field, ""), None)
                if problem is None:
                    for item in src.get("items") or []:
                        problem = missing(kind, src.get(name_field, ""), item.get("key"))
                        if problem:
                            break
                if problem:
                    return None, Waiting(
                        "ContainerCreating",
                        "",
                        event_reason=f'MountVolume.SetUp failed for volume "{v.get("name")}" : {problem}',
                    )
    return None, None


def probe_problem(pod: Mapping[str, Any]) -> str | None:
    """A readiness or startup probe whose port is a name the container does not declare.

    Validation only checks that such a port is a valid IANA_SVC_NAME; the kubelet resolves it when it
    probes (pkg/kubelet/prober/prober.go runProbe -> probe.ResolveContainerPort -> findPortByName:
    "couldn't find port"), the probe errors, the worker throws the result away and the container stays
    not ready (readiness starts as failure; a startup probe never succeeds, so readiness never runs).
    """
    for c in (pod.get("spec") or {}).get("containers") or []:
        names = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
        for field, what in (("startupProbe", "Startup"), ("readinessProbe", "Readiness")):
            probe = c.get(field) or {}
            for handler in ("httpGet", "tcpSocket"):
                port = (probe.get(handler) or {}).get("port")
                if isinstance(port, str) and port not in names:
                    return f"{what} probe errored: couldn't find port: {port} in container {c.get('name')}"
    return None


def image_problem(pod: Mapping[str, Any], users: Mapping[str, str], default_user: str) -> Waiting | None:
    """InvalidImageName, then the kubelet's runAsNonRoot verification against the image's user."""
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    pod_name = pod["metadata"]["name"]
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        image = c.get("image", "")
        err = images.kubelet_error(image)
        if err:
            return Waiting("InvalidImageName", err, event_reason="InspectFailed")
        csc = c.get("securityContext") or {}
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if not non_root:
            continue
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        where = f'(pod: "{pod_name}_{pod["metadata"]["namespace"]}({pod["metadata"].get("uid", "")})", container: {c["name"]})'
        if uid is not None:
            if uid == 0:
                return Waiting(
                    "CreateContainerConfigError", f"container's runAsUser breaks non-root policy {where}"
                )
            continue
        user = users.get(image, default_user)
        if not user.isdigit():
            return Waiting(
                "CreateContainerConfigError",
                f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {where}",
            )
        if int(user) == 0:
            return Waiting(
                "CreateContainerConfigError", f"container has runAsNonRoot and image will run as root {where}"
            )
    return None


def _cond(
    type_: str, ok: bool, since: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "type": type_,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def unschedulable_status(pod: Mapping[str, Any], message: str) -> dict[str, Any]:
    since = pod["metadata"]["creationTimestamp"]
    return {
        "phase": "Pending",
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        "conditions": [_cond("PodScheduled", False, since, "Unschedulable", message)],
    }


def pod_status(
    pod: Mapping[str, Any], behaviour: PodBehaviour, waiting: Waiting | None = None
) -> dict[str, Any]:
    """What kubelet would report for this pod in this state (timestamps from the pod, so it is stable)."""
    since = pod["metadata"]["creationTimestamp"]
    containers = (pod.get("spec") or {}).get("containers") or []
    state = behaviour.state
    ready = waiting is None and state is PodState.READY
    statuses = []
    for c in containers:
        image = c.get("image", "")
        cs: dict[str, Any] = {
            "name": c["name"],
            "image": image,
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
        }
        if waiting is not None:
            body = {"reason": waiting.reason, **({"message": waiting.message} if waiting.message else {})}
            cs.update(started=False, state={"waiting": body})
        elif state in (PodState.READY, PodState.UNREADY):
            cs.update(started=True, state={"running": {"startedAt": since}})
            if ready:
                cs["imageID"] = (
                    f"docker.io/library/{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
                )
        elif state is PodState.CRASH_LOOP:
            message = (
                behaviour.message
                or f"back-off 5m0s restarting failed container={c['name']} pod={pod['metadata']['name']}"
            )
            cs.update(
                started=False,
                restartCount=5,
                state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                lastState={
                    "terminated": {"exitCode": 1, "reason": "Error", "startedAt": since, "finishedAt": since}
                },
            )
        elif state is PodState.ERR_IMAGE_PULL:
            message = behaviour.message or f'failed to pull and unpack image "{image}": not found'
            cs.update(started=False, state={"waiting": {"reason": "ErrImagePull", "message": message}})
        elif state is PodState.IMAGE_PULL_BACKOFF:
            message = behaviour.message or f'Back-off pulling image "{image}"'
            cs.update(started=False, state={"waiting": {"reason": "ImagePullBackOff", "message": message}})
        else:
            cs.update(started=False, state={"waiting": {"reason": "ContainerCreating"}})
        statuses.append(cs)
    not_ready = "containers with unready status: [" + " ".join(c["name"] for c in containers) + "]"
    running = waiting is None and state in (PodState.READY, PodState.UNREADY, PodState.CRASH_LOOP)
    status: dict[str, Any] = {
        "phase": "Running" if running else "Pending",
        "hostIP": "10.0.0.10",
        "hostIPs": [{"ip": "10.0.0.10"}],
        "startTime": since,
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        "conditions": [
            _cond(
                "PodReadyToStartContainers", waiting is None or waiting.reason != "ContainerCreating", since
            ),
            _cond("Initialized", True, since),
            _cond(
                "Ready", ready, since, None if ready else "ContainersNotReady", None if ready else not_ready
            ),
            _cond(
                "ContainersReady",
                ready,
                since,
                None if ready else "ContainersNotReady",
                None if ready else not_ready,
            ),
            _cond("PodScheduled", True, since),
        ],
        "containerStatuses": statuses,
    }
    if running:
        status["podIP"] = "10.244.0.10"
        status["podIPs"] = [{"ip": "10.244.0.10"}]
    return status


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def claims_of(pod: Mapping[str, Any]) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v.get("persistentVolumeClaim"), dict)
    ]


def referenced(pod: Mapping[str, Any], kind: str) -> set[str]:
    """Names of the Secrets or ConfigMaps a pod references (env, envFrom, volumes, projections)."""
    spec = pod.get("spec") or {}
    out: set[str] = set()
    key_ref, env_ref, volume, name_field = (
        ("secretKeyRef", "secretRef", "secret", "secretName")
        if kind == "Secret"
        else ("configMapKeyRef", "configMapRef", "configMap", "name")
    )
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get(key_ref)
                if ref and ref.get("name"):
                    out.add(ref["name"])
            for ef in c.get("envFrom") or []:
                ref = ef.get(env_ref)
                if ref and ref.get("name"):
                    out.add(ref["name"])
    for v in spec.get("volumes") or []:
        src = v.get(volume)
        if src and src.get(name_field):
            out.add(src[name_field])
        for projected in ((v.get("projected") or {}).get("sources")) or []:
            src = projected.get(volume)
            if src and src.get("name"):
                out.add(src["name"])
    if kind == "Secret":
        out |= {r["name"] for r in spec.get("imagePullSecrets") or [] if r.get("name")}
    return out
