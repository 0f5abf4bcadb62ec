"""The reconcile loop, one module per step (Flux kustomize-controller's order):

    fetch → render → apply → health → prune → status

* `cycle`  — `Reconciler.run_once`: the thin orchestrator of one cycle.
* `fetch`  — control-plane reads and cluster discovery.
* `unit`   — the per-deployment unit of work (`step`, `DeploymentRecord`); rendering is `listener.render`.
* `apply`  — server-side apply in waves; API-server answers turned into outcomes.
* `health` — is a wave's rollout Current, InProgress or Failed.
* `prune`  — the prune rules (`decide`, pure) and their shell.
* `status` — Events, the status annotation, the status reporter.
"""

from listener.reconcile.config import PrunePolicy, ReconcilerConfig
from listener.reconcile.cycle import CycleReport, Reconciler
from listener.reconcile.health import Prober
from listener.reconcile.status import EVENT_SOURCE, STATUS_ANNOTATION
from listener.reconcile.unit import DeploymentRecord, StepContext, StepResult, step

__all__ = [
    "EVENT_SOURCE",
    "STATUS_ANNOTATION",
    "CycleReport",
    "DeploymentRecord",
    "Prober",
    "PrunePolicy",
    "Reconciler",
    "ReconcilerConfig",
    "StepContext",
    "StepResult",
    "step",
]
