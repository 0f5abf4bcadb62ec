"""Status: record what happened where people look — Events, an annotation, and upstream.

Every revision transition (`DEPLOYING`, `DEPLOYED`, `DEPLOY_FAILED` + reason) goes to a Kubernetes
Event, to the `langsmith-dataplane/status` annotation on the API server Deployment (or, before it
exists, on the revision's env Secret), and to the status reporter (the emulator's data-plane channel,
or only the logs against real LangSmith). Refused prunes and foreign objects become Warning Events.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from listener import naming, ownership
from listener.controlplane import ConflictError, ControlPlaneError, StatusReporter
from listener.kube import Cluster, ClusterError

if TYPE_CHECKING:
    from listener.reconcile.inventory import Inventory

log = logging.getLogger(__name__)

STATUS_ANNOTATION = "langsmith-dataplane/status"
EVENT_SOURCE = "langsmith-dataplane-listener"
REASONS = {"DEPLOYING": "RolloutStarted", "DEPLOYED": "RolloutSucceeded", "DEPLOY_FAILED": "RolloutFailed"}

Target = tuple[str, str, str]
"""(apiVersion, kind, name) of an object in the deployment's namespace."""


def status_record(annotations: Mapping[str, str]) -> dict[str, Any]:
    """The recorded status annotation, or {} when missing or unreadable."""
    try:
        recorded = json.loads(annotations.get(STATUS_ANNOTATION, "{}"))
    except json.JSONDecodeError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def status_target(
    cluster: Cluster,
    namespace: str,
    candidates: list[Target],
    listener_id: str,
    inventory: Inventory | None = None,
) -> Target | None:
    """The first candidate that exists and is the listener's (a rollout stopped by a foreign object
    must never annotate that object). With an inventory, its rows answer (the listener's own
    writes are in them at once); without one, a GET per candidate."""
    for api_version, kind, name in candidates:
        if inventory is not None:
            seen = inventory.lookup(namespace, api_version, kind, name)
            if seen is not None and seen.owned:
                return (api_version, kind, name)
            continue
        live = cluster.get(api_version, kind, namespace, name)
        if live is not None and ownership.owned(live, listener_id):
            return (api_version, kind, name)
    return None


def recorded_since(recorded: Mapping[str, Any], now: datetime) -> datetime | None:
    """When the recorded rollout started (so a restart does not reset its deadline); None when
    missing, unreadable or in the future (a clock that jumped back starts it again, never shortens it)."""
    try:
        since = datetime.fromisoformat(str(recorded["since"]))
    except (KeyError, ValueError):
        return None
    if since.tzinfo is None or since > now:
        return None
    return since


def annotate_status(
    cluster: Cluster,
    namespace: str,
    target: Target,
    revision_id: str,
    status: str,
    reason: str,
    since: datetime | None = None,
    render: str | None = None,
) -> None:
    record = {"revision": revision_id, "status": status, "reason": reason}
    if since is not None:
        record["since"] = since.isoformat()
    if render is not None:
        record["render"] = render
    cluster.annotate(
        target[0], target[1], namespace, target[2], {STATUS_ANNOTATION: json.dumps(record, sort_keys=True)}
    )


def event(
    cluster: Cluster,
    namespace: str,
    involved: Target,
    *,
    name: str,
    reason: str,
    message: str,
    warning: bool,
) -> None:
    """Create an Event; one that exists already (409: the same thing recorded before) is fine."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name[:253], "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved[0],
            "kind": involved[1],
            "name": involved[2],
            "namespace": namespace,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        cluster.create(body)
    except ClusterError as error:
        if error.status != 409:
            raise


def event_name(*parts: str) -> str:
    """A deterministic Event name: the same occurrence is recorded once (409 after that)."""
    base = parts[0]
    suffix = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return f"{base}.{suffix}"


def transition_event_name(base: str, revision_id: str, status: str) -> str:
    revision = revision_id.replace("-", "")[:12]
    return f"{base}.{revision}.{status.lower().replace('_', '-')}"


def report_upstream(
    reporter: StatusReporter, deployment_id: str, revision_id: str, status: str, reason: str
) -> bool:
    """True when the reporter took it (so it is not sent again); False to retry next cycle."""
    try:
        reporter.report(deployment_id, revision_id, status, reason)  # type: ignore[arg-type]
    except ConflictError as error:
        # The revision is final upstream already (e.g. DEPLOYED before a restart): nothing to resend.
        log.info("status %s for %s not taken upstream: %s", status, deployment_id, error)
    except ControlPlaneError as error:
        log.warning("could not report %s for %s: %s (will retry)", status, deployment_id, error)
        return False
    return True


def foreign_warning(obj: Mapping[str, Any]) -> str:
    return (
        f"{ownership.describe(obj)} carries this listener's labels but was not written by it "
        f"(no '{naming.MANAGED_BY}' field manager): it is never written or deleted"
    )
