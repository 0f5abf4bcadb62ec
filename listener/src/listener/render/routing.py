"""Wave 3: expose the API Service under `/<slug>-<id hash>` via Gateway API or Ingress.

The path carries the deployment id's hash (the object names' stem), so two deployments whose names
slug the same ("My Agent" and "my-agent", or two CJK names) never share a path on one hostname.
"""

from __future__ import annotations

from typing import Any

from listener.render.context import API_PORT, COMPONENT_ROUTING, Context, RenderError


def route_path(ctx: Context) -> str:
    return "/" + ctx.names.base


def httproute(ctx: Context) -> dict[str, Any]:
    opts = ctx.options
    if not opts.gateway_name:
        raise RenderError("routing 'httproute' needs gateway_name")
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": opts.gateway_name,
    }
    if opts.gateway_namespace:
        parent["namespace"] = opts.gateway_namespace
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if opts.hostname:
        spec["hostnames"] = [opts.hostname]
    spec["rules"] = [
        {
            "backendRefs": [{"name": ctx.names.api, "port": API_PORT}],
            # Agent Servers serve at `/`: strip the per-deployment prefix.
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                }
            ],
            "matches": [{"path": {"type": "PathPrefix", "value": route_path(ctx)}}],
        }
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": ctx.metadata(ctx.names.api, COMPONENT_ROUTING),
        "spec": spec,
    }


def ingress(ctx: Context) -> dict[str, Any]:
    """Prefix stripping is controller-specific for Ingress, so none is attempted (prefer HTTPRoute)."""
    opts = ctx.options
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "backend": {"service": {"name": ctx.names.api, "port": {"number": API_PORT}}},
                    "path": route_path(ctx),
                    "pathType": "Prefix",
                }
            ]
        }
    }
    if opts.hostname:
        rule["host"] = opts.hostname
    spec: dict[str, Any] = {"rules": [rule]}
    if opts.ingress_class_name:
        spec["ingressClassName"] = opts.ingress_class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": ctx.metadata(ctx.names.api, COMPONENT_ROUTING),
        "spec": spec,
    }


def render_routing(ctx: Context) -> list[dict[str, Any]]:
    if ctx.options.routing == "httproute":
        return [httproute(ctx)]
    if ctx.options.routing == "ingress":
        return [ingress(ctx)]
    return []
