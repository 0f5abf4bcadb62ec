"""Rules that need the whole stack config: topology, egress, image pinning.

`stack_problems(config)` is pure: it returns every problem at once (not just the first) so a
user fixes a stack file in one pass. Each problem names the stack key it is about.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from components.addon_versions import ENVOY_GATEWAY, selected, unsupported
from components.config import (
    LISTENER_NAMESPACE_PREFIX,
    CidrDestination,
    CreateVpc,
    DomainDestination,
    ExistingCluster,
    InClusterStores,
    ManagedStores,
    StackConfig,
)


@dataclass(frozen=True)
class Problem:
    key: str
    """Path below the project namespace, e.g. `topology.listeners[1].namespaces[0]`."""
    message: str
    value: object = None


def stack_problems(config: StackConfig) -> list[Problem]:
    # Network, egress and EKS settings only mean something when this stack builds the cluster.
    aws_side = [*_egress_problems(config), *_cluster_problems(config)] if config.is_eks else []
    return [
        *_topology_problems(config),
        *aws_side,
        *_image_problems(config),
        *_store_problems(config),
        *_existing_cluster_problems(config),
        *_addon_problems(config),
        *_routing_problems(config),
        *_listener_namespace_problems(config),
    ]


def _topology_problems(config: StackConfig) -> list[Problem]:
    topology = config.topology
    problems: list[Problem] = []

    for field in ("name", "id"):
        counts = Counter(getattr(w, field) for w in topology.workspaces)
        problems += [
            Problem(f"topology.workspaces[{i}].{field}", "is used by another workspace", getattr(w, field))
            for i, w in enumerate(topology.workspaces)
            if counts[getattr(w, field)] > 1
        ]

    names = Counter(listener.name for listener in topology.listeners)
    workspaces = {w.name for w in topology.workspaces}
    compute_ids = Counter((listener.workspace, listener.compute_id) for listener in topology.listeners)
    watchers: dict[str, list[int]] = defaultdict(list)

    for i, listener in enumerate(topology.listeners):
        key = f"topology.listeners[{i}]"
        if names[listener.name] > 1:
            problems.append(Problem(f"{key}.name", "is used by another listener", listener.name))
        if listener.workspace not in workspaces:
            known = ", ".join(sorted(workspaces)) or "none defined"
            problems.append(
                Problem(
                    f"{key}.workspace",
                    f"names no workspace in topology.workspaces ({known})",
                    listener.workspace,
                )
            )
        if compute_ids[(listener.workspace, listener.compute_id)] > 1:
            problems.append(
                Problem(
                    f"{key}.compute_id",
                    f"is used by another listener of workspace '{listener.workspace}'; "
                    "LangSmith refuses a second listener with the same compute_id (409)",
                    listener.compute_id,
                )
            )
        seen: set[str] = set()
        for j, namespace in enumerate(listener.namespaces):
            if namespace in seen:
                problems.append(
                    Problem(f"{key}.namespaces[{j}]", "is listed twice for this listener", namespace)
                )
            seen.add(namespace)
            watchers[namespace].append(i)

    shared = set(topology.shared_namespaces)
    for namespace, owners in sorted(watchers.items()):
        distinct = sorted(set(owners))
        if len(distinct) > 1 and namespace not in shared:
            for i in distinct[1:]:
                j = topology.listeners[i].namespaces.index(namespace)
                first = topology.listeners[distinct[0]].name
                problems.append(
                    Problem(
                        f"topology.listeners[{i}].namespaces[{j}]",
                        f"is already watched by listener '{first}'; two listeners may share a namespace "
                        "only if it is listed in topology.shared_namespaces",
                        namespace,
                    )
                )
    for k, namespace in enumerate(topology.shared_namespaces):
        if len(set(watchers.get(namespace, []))) < 2:
            problems.append(
                Problem(
                    f"topology.shared_namespaces[{k}]",
                    "is not watched by two or more listeners, so there is nothing to share",
                    namespace,
                )
            )
    return problems


def _egress_problems(config: StackConfig) -> list[Problem]:
    network = config.network
    egress = network.egress
    problems: list[Problem] = []
    uses_sg = egress.mode in ("security-group", "both")
    uses_firewall = egress.mode in ("network-firewall", "both")

    if uses_firewall and not isinstance(network, CreateVpc):
        problems.append(
            Problem(
                "network.egress.mode",
                "network-firewall needs a VPC this stack creates: the firewall rewrites the private route "
                "tables, and an adopted VPC's route tables are not ours to change",
                egress.mode,
            )
        )
    for i, destination in enumerate(egress.extra_destinations):
        if isinstance(destination, DomainDestination) and not uses_firewall:
            problems.append(
                Problem(
                    f"network.egress.extra_destinations[{i}].domain",
                    "a domain can only be allowed by the network firewall; set network.egress.mode to "
                    "'network-firewall' or 'both', or give a cidr instead",
                    destination.domain,
                )
            )
        if isinstance(destination, CidrDestination) and not uses_sg:
            problems.append(
                Problem(
                    f"network.egress.extra_destinations[{i}].cidr",
                    "a CIDR can only be allowed by the security group; set network.egress.mode to "
                    "'security-group' or 'both', or give a domain instead",
                    str(destination.cidr),
                )
            )
    if uses_sg and not config.langsmith.ip_cidrs:
        problems.append(
            Problem(
                "langsmith.egress_cidrs",
                "security-group egress needs the control plane's addresses, and a self-hosted LangSmith has "
                "no published list: give them here, or use network.egress.mode 'network-firewall'",
                [],
            )
        )
    return problems


def _cluster_problems(config: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    endpoint = config.cluster.endpoint
    if endpoint.public and not endpoint.public_cidrs:
        problems.append(
            Problem(
                "cluster.endpoint.public_cidrs",
                "a public endpoint needs an allowlist of the CIDRs that may reach it",
                [],
            )
        )
    if not endpoint.public and endpoint.public_cidrs:
        problems.append(
            Problem(
                "cluster.endpoint.public_cidrs",
                "has no effect while cluster.endpoint.public is false; remove it or make the endpoint public",
                [str(c) for c in endpoint.public_cidrs],
            )
        )
    names = Counter(group.name for group in config.cluster.node_groups)
    for i, group in enumerate(config.cluster.node_groups):
        key = f"cluster.node_groups[{i}]"
        if names[group.name] > 1:
            problems.append(Problem(f"{key}.name", "is used by another node group", group.name))
        if not group.min_size <= group.desired_size <= group.max_size:
            problems.append(
                Problem(
                    f"{key}.desired_size",
                    f"must lie between min_size ({group.min_size}) and max_size ({group.max_size})",
                    group.desired_size,
                )
            )
    return problems


def _image_problems(config: StackConfig) -> list[Problem]:
    if config.environment != "dev" and "@sha256:" not in config.listener_image:
        return [
            Problem(
                "listener_image",
                f"must be pinned by digest (…@sha256:<64 hex>) in a {config.environment} stack, so every "
                "rollout runs exactly the image that was reviewed",
                config.listener_image,
            )
        ]
    return []


def _store_problems(config: StackConfig) -> list[Problem]:
    if config.is_prod and isinstance(config.stores, InClusterStores):
        return [
            Problem(
                "stores.mode",
                "in-cluster stores are for dev; a prod stack needs managed stores (RDS and ElastiCache)",
                "in-cluster",
            )
        ]
    return []


# --- In-cluster layer ----------------------------------------------------------------------------

_EKS_ONLY_ADDONS = ("aws_load_balancer_controller", "cluster_autoscaler", "vpc_cni_network_policy")


def _existing_cluster_problems(config: StackConfig) -> list[Problem]:
    if not isinstance(config.cluster, ExistingCluster):
        return []
    problems = []
    if "network" in config.model_fields_set:
        problems.append(
            Problem(
                "network",
                "has no effect with cluster.mode 'existing': this stack creates no VPC and no egress "
                "controls; remove it (the cluster's own network decides egress)",
            )
        )
    if isinstance(config.stores, ManagedStores):
        problems.append(
            Problem(
                "stores.mode",
                "managed stores are created in the VPC of a cluster this stack builds; with cluster.mode "
                "'existing' use 'in-cluster' (dev) or 'external' with postgres_admin_uri/redis_admin_uri",
                "managed",
            )
        )
    for key in _EKS_ONLY_ADDONS:
        if getattr(config.addons, key):
            problems.append(
                Problem(
                    f"addons.{key}",
                    "needs the EKS cluster this stack builds (cluster.mode 'eks'); on an existing cluster "
                    "install it yourself",
                    True,
                )
            )
    return problems


def _addon_problems(config: StackConfig) -> list[Problem]:
    version = config.cluster.kubernetes_version
    problems = []
    for chart in selected(config.addons, config.routing, eks=config.is_eks):
        reason = unsupported(chart, version)
        if reason:
            key = "routing.mode" if chart is ENVOY_GATEWAY else f"addons.{chart.release.replace('-', '_')}"
            problems.append(Problem(key, f"{reason} (cluster.kubernetes_version is {version})"))
    if config.is_eks and config.addons.autoscaler_enabled(True):
        assert not isinstance(config.cluster, ExistingCluster)
        if not any(g.max_size > g.min_size for g in config.cluster.node_groups):
            problems.append(
                Problem(
                    "addons.cluster_autoscaler",
                    "no node group can grow (max_size > min_size), so the autoscaler would have nothing "
                    "to scale; give one room or set this to false",
                )
            )
    return problems


def _routing_problems(config: StackConfig) -> list[Problem]:
    routing = config.routing
    problems = []
    if routing.mode != "none" and not routing.hostname:
        problems.append(
            Problem(
                "routing.hostname",
                f"is required with routing.mode '{routing.mode}': Agent Servers are served at "
                "<hostname>/<deployment>",
            )
        )
    if routing.mode == "ingress":
        for i, listener in enumerate(config.topology.listeners):
            if len(listener.namespaces) > 1:
                problems.append(
                    Problem(
                        "routing.mode",
                        f"an Ingress routes only within its namespace, and topology.listeners[{i}] "
                        f"('{listener.name}') watches {len(listener.namespaces)}; use 'gateway' "
                        "(hybrid-data-plane.md §11)",
                        "ingress",
                    )
                )
        if not routing.allow_from_cidrs and not routing.allow_from_namespaces:
            problems.append(
                Problem(
                    "routing.allow_from_cidrs",
                    "ingress mode needs where the ingress controller's traffic comes from "
                    "(allow_from_cidrs and/or allow_from_namespaces): the agent namespaces deny "
                    "everything else",
                )
            )
    else:
        for key in ("allow_from_cidrs", "allow_from_namespaces", "ingress_class_name"):
            if getattr(routing, key):
                problems.append(Problem(f"routing.{key}", "is only used with routing.mode 'ingress'"))
    if routing.tls_secret_name and routing.mode != "gateway":
        problems.append(Problem("routing.tls_secret_name", "is only used with routing.mode 'gateway'"))
    return problems


def _listener_namespace_problems(config: StackConfig) -> list[Problem]:
    agent_namespaces = {ns for listener in config.topology.listeners for ns in listener.namespaces}
    limit = 63 - len(LISTENER_NAMESPACE_PREFIX)
    problems = []
    for i, listener in enumerate(config.topology.listeners):
        if len(listener.name) > limit:
            problems.append(
                Problem(
                    f"topology.listeners[{i}].name",
                    f"is longer than {limit} characters: the listener runs in the namespace "
                    f"'{LISTENER_NAMESPACE_PREFIX}<name>', at most 63 characters",
                    listener.name,
                )
            )
        if listener.own_namespace in agent_namespaces:
            problems.append(
                Problem(
                    f"topology.listeners[{i}].name",
                    f"its own namespace '{listener.own_namespace}' is also an agent namespace; a listener "
                    "never runs where Agent Servers do",
                    listener.name,
                )
            )
    return problems
