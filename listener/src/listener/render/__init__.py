"""Render one Agent Server deployment into Kubernetes manifests, grouped into ordered apply waves.

Pure: the same spec and options always give the same objects in the same order. The apply layer
applies each wave and waits for it (kstatus, `listener.rollout`) before the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from listener import naming
from listener.render.context import Context, RenderError
from listener.render.dump import redact, to_yaml
from listener.render.routing import render_routing
from listener.render.scaling import render_scaling
from listener.render.secrets import render_secrets
from listener.render.servers import render_servers
from listener.render.stores import render_stores
from listener.spec import AgentServerSpec, RenderOptions

__all__ = ["KINDS", "RenderError", "Wave", "flatten", "redact", "render", "to_yaml"]

KINDS: tuple[tuple[str, str], ...] = (
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.k8s.io/v1", "Ingress"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
)
"""Every kind the renderer emits (plus the claims its StatefulSet creates), in prune order:
dependents first, the stores' NetworkPolicies after the workloads they protect, data last."""

WAVE_SECRETS = "secrets"
WAVE_STORES = "stores"
WAVE_SERVERS = "servers"
WAVE_EXPOSURE = "autoscaling-and-routing"


@dataclass(frozen=True)
class Wave:
    """Objects to apply together; wave N+1 only after wave N is Current."""

    index: int
    name: str
    objects: tuple[dict[str, Any], ...]


def render(spec: AgentServerSpec, options: RenderOptions) -> list[Wave]:
    """Waves 0-3 (secrets, stores, servers, autoscaling/PDB/routing); empty waves are kept so indices
    are stable. Every object carries the spec-hash annotation, computed last."""
    ctx = Context.of(spec, options)
    groups = [
        (WAVE_SECRETS, render_secrets(ctx)),
        (WAVE_STORES, render_stores(ctx)),
        (WAVE_SERVERS, render_servers(ctx)),
        (WAVE_EXPOSURE, render_scaling(ctx) + render_routing(ctx)),
    ]
    if options.store_mode == "external" and spec.external_stores is None:
        raise RenderError("store_mode 'external' needs spec.external_stores (the Secret holding the URIs)")
    return [
        Wave(index=i, name=name, objects=tuple(naming.with_spec_hash(o) for o in objs))
        for i, (name, objs) in enumerate(groups)
    ]


def flatten(waves: list[Wave]) -> list[dict[str, Any]]:
    return [obj for wave in waves for obj in wave.objects]
