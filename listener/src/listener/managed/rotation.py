"""`rotate-credentials`: a new database password with no moment where a running pod holds a dead one.

Phase 1 gives the deployment's *other* login role a new password (Redis, in ACL mode: adds the new
password next to the old), writes the new credentials to the deployment's credentials Secret with
the annotation `langsmith-dataplane/rotating-from: <old role>`, and restarts the deployment's
Deployments the way `kubectl rollout restart` does. Old pods keep working with the old role while
new pods start with the new one. Phase 2 runs only once every Deployment has rolled out: the old role
loses LOGIN and its password (Redis: only the new password remains), and the annotation goes.

If the rollout does not finish in time, nothing is revoked: the command fails saying so, and a
re-run sees the annotation and resumes with phase 2 instead of starting over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from listener import naming
from listener.kube import Cluster
from listener.managed.credentials import ANNOTATION_ROTATING_FROM, Credentials, read_secret, secret_data
from listener.managed.names import StoreNames
from listener.render.context import COMPONENT_MANAGED_STORES
from listener.rollout import deployment_state

if TYPE_CHECKING:
    from listener.managed.stores import ManagedStores

COMPONENT_STORES: Final = COMPONENT_MANAGED_STORES
"""`app.kubernetes.io/component` of a deployment's credentials Secret: how rotation finds it."""
ROTATE_FIELD_MANAGER: Final = "langsmith-dataplane-listener-rotate"
_MANAGED_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")


class RotationError(Exception):
    """Rotation cannot proceed or did not finish; the message says what state it left and what to do."""


@dataclass(frozen=True)
class RotationResult:
    deployment_id: str
    namespace: str
    secret: str
    old_role: str
    new_role: str
    restarted: tuple[str, ...]
    resumed: bool
    """True when a previous, unfinished rotation was completed instead of a new one started."""


def credentials_selector(listener_id: str, deployment_id: str) -> dict[str, str]:
    return {**naming.ownership_selector(listener_id, deployment_id), naming.LABEL_COMPONENT: COMPONENT_STORES}


def find_credentials_secret(
    cluster: Cluster, namespaces: Sequence[str], listener_id: str, deployment_id: str
) -> dict[str, Any]:
    found = [
        secret
        for namespace in namespaces
        for secret in cluster.list(
            "v1", "Secret", namespace, credentials_selector(listener_id, deployment_id)
        )
        if naming.is_ours(secret, listener_id)
    ]
    if not found:
        raise RotationError(
            f"no credentials Secret of deployment {deployment_id!r} in {', '.join(namespaces)} "
            f"(labels {naming.selector_string(credentials_selector(listener_id, deployment_id))}); "
            "is it a managed-mode deployment of this listener?"
        )
    if len(found) > 1:
        where = ", ".join(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in found)
        raise RotationError(
            f"deployment {deployment_id!r} has several credentials Secrets ({where}); remove the stale one"
        )
    return found[0]


def credentials_secret_manifest(
    existing: Mapping[str, Any],
    credentials: Credentials,
    env: Mapping[str, str],
    *,
    rotating_from: str | None,
) -> dict[str, Any]:
    """`existing` with new credentials; labels and other annotations kept exactly."""
    meta = existing["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_ROTATING_FROM}
    if rotating_from is not None:
        annotations[ANNOTATION_ROTATING_FROM] = rotating_from
    metadata = {k: v for k, v in meta.items() if k not in _MANAGED_METADATA}
    metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": existing.get("type", "Opaque"),
        "stringData": secret_data(credentials, env),
    }


def rotate_credentials(
    cluster: Cluster,
    stores: ManagedStores,
    *,
    listener_id: str,
    namespaces: Sequence[str],
    deployment_id: str,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    timeout: timedelta,
    poll_seconds: float = 2.0,
) -> RotationResult:
    names = StoreNames.of(deployment_id)
    secret = find_credentials_secret(cluster, namespaces, listener_id, deployment_id)
    namespace, secret_name = secret["metadata"]["namespace"], secret["metadata"]["name"]
    stored = read_secret(secret, names)
    resumed = stored.rotating_from is not None
    if resumed:
        new, old_role = stored.credentials, stored.rotating_from
    else:
        old_role = stored.credentials.role
        new = stores.begin_rotation(deployment_id, stored.credentials)
        secret = cluster.apply(
            credentials_secret_manifest(secret, new, stores.env(deployment_id, new), rotating_from=old_role),
            field_manager=ROTATE_FIELD_MANAGER,
        )
    workloads = [
        d
        for d in cluster.list(
            "apps/v1", "Deployment", namespace, naming.ownership_selector(listener_id, deployment_id)
        )
        if naming.is_ours(d, listener_id)
    ]
    token = clock().isoformat()
    for workload in workloads:
        cluster.restart("apps/v1", "Deployment", namespace, workload["metadata"]["name"], token)
    _wait_for_rollouts(
        cluster,
        namespace,
        [w["metadata"]["name"] for w in workloads],
        clock,
        sleep,
        timeout,
        poll_seconds,
        old_role,
    )
    stores.finish_rotation(deployment_id, new)
    cluster.apply(
        credentials_secret_manifest(secret, new, stores.env(deployment_id, new), rotating_from=None),
        field_manager=ROTATE_FIELD_MANAGER,
    )
    return RotationResult(
        deployment_id=deployment_id,
        namespace=namespace,
        secret=secret_name,
        old_role=str(old_role),
        new_role=new.role,
        restarted=tuple(w["metadata"]["name"] for w in workloads),
        resumed=resumed,
    )


def _wait_for_rollouts(
    cluster: Cluster,
    namespace: str,
    names: Sequence[str],
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    timeout: timedelta,
    poll_seconds: float,
    old_role: str | None,
) -> None:
    keep = (
        f"the old role {old_role} keeps working; fix the rollout and run rotate-credentials again to finish"
    )
    deadline = clock() + timeout
    while True:
        waiting = []
        for name in names:
            obj = cluster.get("apps/v1", "Deployment", namespace, name)
            if obj is None:
                continue  # deleted meanwhile: no pod of it can hold the old password
            state = deployment_state(obj)
            if state.state == "Failed":
                raise RotationError(
                    f"Deployment {namespace}/{name} failed to roll out ({state.reason}); {keep}"
                )
            if state.state != "Current":
                waiting.append(f"{name}: {state.reason}")
        if not waiting:
            return
        if clock() >= deadline:
            raise RotationError(
                f"pods did not all restart within {timeout.total_seconds():g} s ({'; '.join(waiting)}); {keep}"
            )
        sleep(poll_seconds)
