"""The agent namespaces: where listeners roll out Agent Servers.

Each namespace of the topology is declared once, even when several listeners share it, and carries a
`listeners.langsmith-dataplane/<listener>: watching` label per listener. Pod Security Admission
enforces `restricted` (the listener renders only pods that meet it), a default-deny NetworkPolicy
plus the allows of `components.network_policies` applies, and an optional ResourceQuota and
LimitRange bound what the namespace may consume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components import labels as lbl
from components.config import AgentNamespaceSettings, ListenerSpec
from components.kubeobjects import declare
from components.network_policies import AgentTraffic, agent_namespace_policies


@dataclass(frozen=True)
class AgentNamespacePlan:
    namespace: str
    watched_by: tuple[str, ...]
    """Listener names, in topology order."""
    traffic: AgentTraffic


def watchers(listeners: Sequence[ListenerSpec]) -> dict[str, tuple[str, ...]]:
    """namespace -> the listeners watching it, each namespace once, in first-mention order."""
    found: dict[str, list[str]] = {}
    for listener in listeners:
        for namespace in listener.namespaces:
            found.setdefault(namespace, []).append(listener.name)
    return {ns: tuple(names) for ns, names in found.items()}


def namespace_manifests(
    plan: AgentNamespacePlan,
    settings: AgentNamespaceSettings,
    *,
    environment: str,
    kubernetes_version: str,
) -> list[dict[str, Any]]:
    common = lbl.common(environment)
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": plan.namespace,
            "labels": {
                **common,
                **lbl.pod_security("restricted", kubernetes_version),
                lbl.NAMESPACE_ROLE: lbl.AGENTS,
                **{f"{lbl.WATCHED_BY_PREFIX}{name}": lbl.WATCHING for name in plan.watched_by},
            },
        },
    }
    manifests = [namespace, *agent_namespace_policies(plan.namespace, plan.traffic, common)]
    if settings.resource_quota:
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "agents", "namespace": plan.namespace, "labels": common},
                "spec": {"hard": dict(settings.resource_quota)},
            }
        )
    limits = settings.limit_range
    if limits is not None:
        item: dict[str, Any] = {"type": "Container"}
        for field, key in (
            ("default_request", "defaultRequest"),
            ("default_limit", "default"),
            ("max", "max"),
        ):
            values = getattr(limits, field)
            if values:
                item[key] = dict(values)
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": "agents", "namespace": plan.namespace, "labels": common},
                "spec": {"limits": [item]},
            }
        )
    return manifests


@dataclass(frozen=True)
class AgentNamespacesArgs:
    plans: Sequence[AgentNamespacePlan]
    settings: AgentNamespaceSettings
    environment: str
    kubernetes_version: str
    protect: bool = False
    """Pulumi `protect` on the namespaces (prod): deleting one deletes every Agent Server in it."""


class AgentNamespaces(pulumi.ComponentResource):
    """Every agent namespace of the stack with its policies. `namespaces` maps name -> Namespace."""

    namespaces: Mapping[str, pulumi.Resource]

    def __init__(
        self, name: str, args: AgentNamespacesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("langsmith:infra:AgentNamespaces", name, None, opts)
        namespaces: dict[str, pulumi.Resource] = {}
        for plan in args.plans:
            manifests = namespace_manifests(
                plan, args.settings, environment=args.environment, kubernetes_version=args.kubernetes_version
            )
            ns_resource = declare(
                f"{name}-{plan.namespace}",
                manifests[0],
                pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            namespaces[plan.namespace] = ns_resource
            inside = pulumi.ResourceOptions(parent=self, depends_on=[ns_resource])
            for manifest in manifests[1:]:
                suffix = f"{manifest['kind'].lower()}-{manifest['metadata']['name']}"
                declare(f"{name}-{plan.namespace}-{suffix}", manifest, inside)
        self.namespaces = namespaces
        self.register_outputs({"namespaces": sorted(namespaces)})
