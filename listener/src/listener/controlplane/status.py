"""Reporting a revision's rollout status upstream: a port with two adapters.

The public API has no endpoint for a data plane to report revision status (control-plane-api.md
§10, §12). Against real LangSmith the listener therefore uses `LoggingStatusReporter` (the
transition goes to the logs; Kubernetes Events and metrics are the later loop's job) and
heartbeats through `ControlPlaneClient.patch_listener(version=...)`. Against the emulator,
`EmulatorStatusReporter` posts to the emulator's data-plane channel so the public revision
endpoints reflect the rollout, which is what end-to-end tests need.
"""

from __future__ import annotations

import logging
from typing import Protocol, get_args
from uuid import UUID

from listener.controlplane.client import ControlPlaneClient, as_uuid
from listener.controlplane.models import DataPlaneStatus

__all__ = [
    "EMULATOR_STATUS_PATH",
    "EmulatorStatusReporter",
    "LoggingStatusReporter",
    "StatusReporter",
]

log = logging.getLogger(__name__)

EMULATOR_STATUS_PATH = "/_emulator/dataplane/v1/deployments/{deployment_id}/revisions/{revision_id}/status"


class StatusReporter(Protocol):
    def report(
        self,
        deployment_id: UUID | str,
        revision_id: UUID | str,
        status: DataPlaneStatus,
        reason: str | None = None,
    ) -> None: ...


def _check_status(status: str) -> None:
    allowed = get_args(DataPlaneStatus)
    if status not in allowed:
        raise ValueError(f"status must be one of {list(allowed)}, got {status!r}")


class LoggingStatusReporter:
    """For real LangSmith: there is nowhere upstream to send the status, so it is logged (no network call)."""

    def report(
        self,
        deployment_id: UUID | str,
        revision_id: UUID | str,
        status: DataPlaneStatus,
        reason: str | None = None,
    ) -> None:
        _check_status(status)
        revision, deployment = as_uuid(revision_id, "revision_id"), as_uuid(deployment_id, "deployment_id")
        log.info(
            "revision %s of deployment %s is %s%s",
            revision,
            deployment,
            status,
            f": {reason}" if reason else "",
            extra={"deployment_id": str(deployment), "revision_id": str(revision)},
        )


class EmulatorStatusReporter:
    """For the emulator: POSTs the status to its data-plane channel (with the client's auth and retries)."""

    def __init__(self, client: ControlPlaneClient) -> None:
        self._client = client

    def report(
        self,
        deployment_id: UUID | str,
        revision_id: UUID | str,
        status: DataPlaneStatus,
        reason: str | None = None,
    ) -> None:
        _check_status(status)
        path = EMULATOR_STATUS_PATH.format(
            deployment_id=as_uuid(deployment_id, "deployment_id"),
            revision_id=as_uuid(revision_id, "revision_id"),
        )
        # Reporting the same status twice is harmless, so transient failures may be retried.
        self._client.request("POST", path, json={"status": status, "reason": reason}, idempotent=True)
