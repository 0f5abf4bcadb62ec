"""Fetch: what the control plane says (read so that no single bad answer can look like a deletion),
and what the cluster serves.

The reads, each with one job:

* `list_deployments`: the workspace's deployments, all pages or nothing. A failed list ends the
  cycle before anything is changed. Items are validated one by one: an item that does not validate
  but has a readable id is kept apart (`unreadable`), so that one bad record anywhere in the workspace
  does not stop every rollout; an item without a readable id still fails the whole list.
* `listener_record`: `GET /v2/listeners/{id}` must answer with this listener in the same cycle
  before anything is pruned. A wrong `LISTENER_WORKSPACE_ID`, a proxy that answers 404 for
  everything, or a control plane restored from an older backup all fail this check.
* `served_kinds`: discovery, at start and on each resync: which optional kinds the cluster serves.
* `confirm`: `GET /v2/deployments/{id}` for each deployment that the list left out. Only the
  control plane's own not-found answer (`{"detail": "Deployment ID <id> not found."}`,
  control-plane-api.md §4) counts as "deleted"; a 404 with any other body (a proxy's HTML page,
  an ingress default backend) is not evidence of anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from listener.controlplane import ControlPlaneClient, ControlPlaneError, NotFoundError
from listener.controlplane.listing import UnreadableDeployment
from listener.controlplane.models import Deployment
from listener.desired import EXTERNAL_DOCKER, place
from listener.kube import Cluster, ClusterError
from listener.render import KINDS

_NOT_FOUND = re.compile(r"^Deployment ID ([0-9A-Fa-f-]{32,36}) not found\.$")


def documented_not_found(detail: object, deployment_id: UUID) -> bool:
    """Is this 404's `detail` the control plane's own answer for exactly this deployment?"""
    if not isinstance(detail, str):
        return False
    match = _NOT_FOUND.match(detail.strip())
    if not match:
        return False
    try:
        return UUID(match.group(1)) == deployment_id
    except ValueError:
        return False


@dataclass(frozen=True)
class DeploymentList:
    deployments: tuple[Deployment, ...] | None
    error: str | None = None
    unreadable: tuple[UnreadableDeployment, ...] = ()
    """Listed, with a readable id, but not valid: see `desired.refuse_unreadable`."""

    @property
    def complete(self) -> bool:
        return self.deployments is not None


def list_deployments(client: ControlPlaneClient) -> DeploymentList:
    try:
        listing = client.read_deployments()
    except ControlPlaneError as error:
        return DeploymentList(None, str(error))
    return DeploymentList(listing.deployments, unreadable=listing.unreadable)


def listener_record(client: ControlPlaneClient, listener_id: UUID) -> str | None:
    """None when the control plane answered with this listener's record; else why not."""
    try:
        listener = client.get_listener(listener_id)
    except ControlPlaneError as error:
        return f"GET /v2/listeners/{listener_id} failed: {error}"
    if listener.id != listener_id:
        return f"GET /v2/listeners/{listener_id} answered with another listener ({listener.id})"
    return None


Verdict = Literal["deleted", "moved", "present", "unknown"]


@dataclass(frozen=True)
class Confirmation:
    """What the control plane says about one deployment the list did not show where we run it."""

    verdict: Verdict
    detail: str
    namespace: str | None = None
    """For `present`/`moved` to another namespace of this listener: where it is placed now."""


def confirm(
    client: ControlPlaneClient, deployment_id: UUID, listener_id: UUID, namespaces: tuple[str, ...]
) -> Confirmation:
    try:
        deployment = client.get_deployment(deployment_id)
    except NotFoundError as error:
        if documented_not_found(error.detail, deployment_id):
            return Confirmation("deleted", "the control plane answered that it does not exist")
        return Confirmation(
            "unknown",
            f"a 404 without the control plane's own not-found body ({error.detail!r}) proves nothing",
        )
    except ControlPlaneError as error:
        return Confirmation("unknown", f"cannot confirm: {error}")
    if deployment.id != deployment_id:
        return Confirmation("unknown", f"GET answered with another deployment ({deployment.id})")
    placed, refused = place([deployment], listener_id, namespaces)
    if placed:
        return Confirmation("present", "the control plane still has it here", placed[0].namespace)
    if refused:
        return Confirmation("present", f"the control plane still has it, refused: {refused[0].reason}")
    elsewhere = deployment.source_config.listener_id
    if deployment.source != EXTERNAL_DOCKER or elsewhere is None:
        # Not a placement anywhere: `listener_id` is immutable in the real API (changing it means
        # delete and create, control-plane-api.md §9.1), so an answer without one (or with another
        # source) is a broken or restored record, not evidence that it runs elsewhere.
        return Confirmation(
            "unknown",
            f"the control plane answered it without a listener (listener {elsewhere}, source "
            f"{deployment.source}): that does not say it runs elsewhere",
        )
    return Confirmation(
        "moved",
        f"the control plane now places it elsewhere (listener {deployment.source_config.listener_id}, "
        f"source {deployment.source})",
    )


ALWAYS_SERVED = frozenset({"v1", "apps/v1"})


def served_kinds(cluster: Cluster) -> frozenset[tuple[str, str]]:
    """Which of the kinds the listener renders this cluster serves (discovery: no RBAC needed).
    Optional kinds (Gateway API's HTTPRoute, KEDA's ScaledObject) are absent without their CRDs."""
    served: set[tuple[str, str]] = set()
    for api_version in sorted({api_version for api_version, _ in KINDS}):
        kinds = cluster.served(api_version)
        if not kinds and api_version in ALWAYS_SERVED:
            # Every Kubernetes API server serves these: whatever answered is not one.
            raise ClusterError(
                "discover",
                f"/api/{api_version}" if api_version == "v1" else f"/apis/{api_version}",
                404,
                "not served: is this a Kubernetes API server (LISTENER_KUBECONFIG)?",
            )
        served.update((version, kind) for version, kind in KINDS if version == api_version and kind in kinds)
    return frozenset(served)
