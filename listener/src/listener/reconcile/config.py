"""What the reconciler is told at start: who it is, where it works, and the rules it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal
from uuid import UUID

from listener.desired import Platform
from listener.spec import RenderOptions


@dataclass(frozen=True)
class PrunePolicy:
    """The guards on deleting a deployment's objects (listener/README.md, "Safety rules")."""

    window: timedelta = timedelta(minutes=5)
    """How long a deployment must stay absent from complete lists, confirmed gone, before pruning."""
    max_fraction: float = 0.1
    """At most this fraction of the listener's deployments in the cluster (and at least one) per cycle."""
    allow_empty: bool = False
    """Like Argo CD's `allowEmpty`: may the last of the listener's deployments be pruned?"""


@dataclass(frozen=True)
class ReconcilerConfig:
    listener_id: UUID
    namespaces: tuple[str, ...]
    options: RenderOptions
    platform: Platform
    rollout_timeout: timedelta = timedelta(seconds=600)
    unschedulable_grace: timedelta = timedelta(seconds=15)
    resync_interval: timedelta = timedelta(seconds=300)
    data_retention: Literal["retain", "delete"] = "retain"
    prune: PrunePolicy = field(default_factory=PrunePolicy)
    retry_base: timedelta = timedelta(seconds=2)
    """First wait after a retryable cluster error (409, 429, 5xx, unreachable); doubles each time."""
    retry_max: timedelta = timedelta(seconds=60)
    workers: int = 4
    """Deployments stepped at once (`reconcile.queue`); each step is mostly waiting on the network."""
    cycle_wait: float | None = None
    """Seconds a cycle waits for the steps it queued before it returns (the rest report in a later
    cycle); None waits for all of them (`--once`, tests). The service's loop bounds it, so a slow
    deployment never delays the next poll."""
