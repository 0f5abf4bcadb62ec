"""Wave 3: HPA or KEDA ScaledObject, and PodDisruptionBudgets, for the API server and the queue."""

from __future__ import annotations

from typing import Any

from listener.render.context import COMPONENT_API, COMPONENT_QUEUE, Context
from listener.render.resources import Scale, api_scale, queue_scale
from listener.render.servers import is_autoscaled

# The operator's KEDA trigger (0.1.17, helm#505): runs waiting for or holding a worker.
PENDING_RUNS_QUERY = "SELECT COUNT(*) FROM run WHERE status = 'pending' OR status = 'running'"


def _target(name: str) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}


def hpa(ctx: Context, name: str, component: str, scale: Scale) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": ctx.metadata(name, component),
        "spec": {
            "maxReplicas": max(scale.max, 1),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": ctx.options.hpa_cpu_utilization,
                        },
                    },
                }
            ],
            # The HPA cannot scale to zero (that needs KEDA).
            "minReplicas": max(scale.min, 1),
            "scaleTargetRef": _target(name),
        },
    }


def scaled_object(ctx: Context, name: str, component: str, scale: Scale) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": ctx.metadata(name, component),
        "spec": {
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
                }
            },
            "cooldownPeriod": 300,
            "maxReplicaCount": max(scale.max, 1),
            "minReplicaCount": scale.min,
            "pollingInterval": 30,
            "scaleTargetRef": {"name": name},
            "triggers": [
                {
                    "type": "postgresql",
                    "metadata": {
                        # KEDA reads the variable from the target's container (envFrom or secretKeyRef).
                        "connectionFromEnv": "POSTGRES_URI",
                        "query": PENDING_RUNS_QUERY,
                        "targetQueryValue": str(max(ctx.options.jobs_per_worker, 1)),
                    },
                }
            ],
        },
    }


def pdb(ctx: Context, name: str, component: str) -> dict[str, Any]:
    # maxUnavailable 1 rather than minAvailable: with a single replica minAvailable 1 would block
    # every node drain, while maxUnavailable 1 still limits voluntary evictions to one pod at a time.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": ctx.metadata(name, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": ctx.selector(component)},
            # Let a crash-looping pod be evicted even when the budget is spent, or drains hang.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_scaling(ctx: Context) -> list[dict[str, Any]]:
    rs = ctx.spec.resources
    workloads = [(ctx.names.api, COMPONENT_API, api_scale(rs))]
    if ctx.options.queue_enabled:
        workloads.append((ctx.names.queue, COMPONENT_QUEUE, queue_scale(rs)))
    objs: list[dict[str, Any]] = []
    for name, component, scale in workloads:
        if is_autoscaled(ctx, scale):
            make = scaled_object if ctx.options.autoscaler == "keda" else hpa
            objs.append(make(ctx, name, component, scale))
    objs += [pdb(ctx, name, component) for name, component, _ in workloads]
    return objs
