"""Rules that need the whole stack config: topology, egress, endpoint access, images, node groups.

`stack_problems(config)` is pure: it returns every problem at once (not just the first) so a
user fixes a stack file in one pass. Each problem names the stack key it is about.
`stack_warnings(config, today)` returns what is allowed but deserves a word before `pulumi up`.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass

from components.addon_versions import ENVOY_GATEWAY, Chart, selected, unsupported
from components.config import (
    LISTENER_NAMESPACE_PREFIX,
    CidrDestination,
    CreateVpc,
    DomainDestination,
    ExistingCluster,
    InClusterStores,
    ManagedStores,
    StackConfig,
    ami_architecture,
    instance_architecture,
)
from components.egress import MAX_FIREWALL_DOMAINS, egress_allowlist
from components.registries import ecr_region, hosts_for_registry, registry_host, uncovered
from components.versions import EKS_VERSIONS, support_phase

# Session Manager needs these three APIs (https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-create-vpc.html).
SSM_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages")


@dataclass(frozen=True)
class Problem:
    key: str
    """Path below the project namespace, e.g. `topology.listeners[1].namespaces[0]`."""
    message: str
    value: object = None
    context: tuple[str, ...] = ()
    """Other keys the verdict depends on: when one of them is itself invalid the problem is not reported
    (it would judge a default, not the file)."""


def stack_problems(config: StackConfig) -> list[Problem]:
    # Network, egress and EKS settings only mean something when this stack builds the cluster.
    aws_side = (
        [
            *_egress_problems(config),
            *_cluster_problems(config),
            *_endpoint_access_problems(config),
            *_node_group_problems(config),
            *_registry_problems(config),
        ]
        if config.is_eks
        else []
    )
    return [
        *_topology_problems(config),
        *aws_side,
        *_image_problems(config),
        *_store_problems(config),
        *_master_secret_problems(config),
        *_existing_cluster_problems(config),
        *_addon_problems(config),
        *_routing_problems(config),
        *_listener_namespace_problems(config),
    ]


def stack_warnings(config: StackConfig, today: datetime.date) -> list[Problem]:
    """What a stack may do but a reviewer should hear about (printed by the program and the plan)."""
    warnings: list[Problem] = []
    cluster = config.cluster
    if isinstance(cluster, ExistingCluster):
        return warnings  # EKS's support calendar is about clusters this stack builds
    version = cluster.kubernetes_version
    window = EKS_VERSIONS[version]
    phase = support_phase(version, today)
    if phase == "ended":
        warnings.append(
            Problem(
                "cluster.kubernetes_version",
                f"left EKS extended support on {window.end_of_extended_support}: EKS upgrades such clusters "
                "itself, outside Pulumi; move to a newer version",
                version,
            )
        )
    elif phase == "extended" and cluster.upgrade_policy == "STANDARD":
        warnings.append(
            Problem(
                "cluster.kubernetes_version",
                f"left EKS standard support on {window.end_of_standard_support}; with upgrade_policy "
                "STANDARD EKS upgrades the cluster itself, outside Pulumi: move to a newer version, or set "
                "cluster.upgrade_policy EXTENDED (extra cost per cluster hour)",
                version,
            )
        )
    elif phase == "extended":
        warnings.append(
            Problem(
                "cluster.kubernetes_version",
                f"is in EKS extended support (extra cost) until {window.end_of_extended_support}",
                version,
            )
        )
    warnings += _endpoint_path_warnings(config)
    if config.network.egress.mode == "security-group":
        warnings.append(
            Problem(
                "network.egress.mode",
                "security-group egress states the allowlist but enforces nothing: every node also carries "
                "the EKS cluster security group, which allows all egress. Use 'network-firewall' or 'both' "
                "to enforce it (the policy pack requires that outside dev)",
                "security-group",
            )
        )
    return warnings


def _endpoint_path_warnings(config: StackConfig) -> list[Problem]:
    """What the program cannot set up for the private endpoint's callers, said before `pulumi up`."""
    network = config.network
    endpoint = config.cluster.endpoint
    warnings: list[Problem] = []
    if isinstance(network, CreateVpc):
        # The endpoint's ENIs answer from the private subnets, whose route tables this program owns and
        # route only the VPC locally (everything else to the NAT gateway or the firewall). A source
        # outside the VPC (VPN, peering, Transit Gateway) gets no reply until someone adds its route.
        outside = [str(c) for c in endpoint.private_access_cidrs if not c.subnet_of(network.cidr)]
        if outside:
            warnings.append(
                Problem(
                    "cluster.endpoint.private_access_cidrs",
                    "lie outside the VPC and the program does not route them: unless the connection "
                    "translates its sources into VPC addresses, add a route for each to every private route "
                    "table (to the peering connection, Transit Gateway or virtual private gateway), or the API "
                    "endpoint's replies leave through the NAT gateway or firewall and connections hang",
                    outside,
                )
            )
    elif endpoint.bastion is not None:
        # The bastion's only egress is HTTPS inside the VPC, so Session Manager needs interface endpoints
        # there (https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-create-vpc.html).
        warnings.append(
            Problem(
                "cluster.endpoint.bastion",
                "in an adopted VPC the bastion reaches Session Manager only through interface endpoints for "
                f"{', '.join(SSM_ENDPOINTS)} with private DNS in that VPC; the program cannot check they exist",
            )
        )
    return warnings


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
    if uses_firewall:
        domains = egress_allowlist(
            config.langsmith,
            egress,
            region=config.aws_region,
            interface_endpoints=network.interface_endpoints,
            rds_truststore=isinstance(config.stores, ManagedStores),
            master_secret=config.listeners_read_master_secret,
        ).firewall_domains
        if len(domains) > MAX_FIREWALL_DOMAINS:
            # The rule group's capacity is fixed at creation; CreateRuleGroup/UpdateRuleGroup fail with
            # "StatefulRules capacity exceeded" (components.egress.domain_list_capacity).
            problems.append(
                Problem(
                    "network.egress.extra_destinations",
                    f"the firewall allowlist would hold {len(domains)} domains (control plane, AWS APIs without "
                    f"an interface endpoint, and these); its rule group holds at most {MAX_FIREWALL_DOMAINS}: "
                    "use wildcard domains (.example.com) or interface endpoints",
                    context=("network", "langsmith"),
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
                    context=(f"{key}.min_size", f"{key}.max_size"),
                )
            )
    return problems


def _endpoint_access_problems(config: StackConfig) -> list[Problem]:
    cluster = config.cluster
    endpoint = cluster.endpoint
    problems: list[Problem] = []
    private_paths = (
        endpoint.private_access_cidrs or endpoint.private_access_security_group_ids or endpoint.bastion
    )
    if not endpoint.public and not private_paths:
        # The cluster security group admits only itself (nodes, control plane), so nothing else can
        # reach a private-only endpoint, and `pulumi up` fails creating the first Kubernetes object.
        problems.append(
            Problem(
                "cluster.endpoint",
                "is private with no way in for whoever runs `pulumi up`: set private_access_cidrs (VPN, "
                "peered network, in-VPC CI runners), private_access_security_group_ids, bastion (SSM port "
                "forwarding), or public with public_cidrs",
            )
        )
    for field, values in (
        ("private_access_cidrs", [str(c) for c in endpoint.private_access_cidrs]),
        ("private_access_security_group_ids", list(endpoint.private_access_security_group_ids)),
    ):
        counts = Counter(values)
        problems += [
            # EC2 refuses a second identical rule (InvalidPermission.Duplicate).
            Problem(f"cluster.endpoint.{field}[{i}]", "is listed twice", value)
            for i, value in enumerate(values)
            if counts[value] > 1 and values.index(value) != i
        ]
    if endpoint.bastion is not None and isinstance(config.network, CreateVpc):
        missing = [s for s in SSM_ENDPOINTS if s not in config.network.interface_endpoints]
        if missing:
            problems.append(
                Problem(
                    "network.interface_endpoints",
                    f"cluster.endpoint.bastion needs the Session Manager endpoints {', '.join(missing)} "
                    "(the bastion has no route to the internet's SSM endpoints of its own)",
                    list(config.network.interface_endpoints),
                )
            )
    seen_arns: set[str] = set()
    seen_names: dict[str, str] = {}
    for key, name, arn in cluster.access_entries():
        if arn in seen_arns:
            # EKS allows one access entry per principal: a second CreateAccessEntry fails with
            # ResourceInUseException.
            problems.append(
                Problem(key, "is already given an access entry above; EKS allows one per principal", arn)
            )
        elif name in seen_names:
            # Entries are named after the principal's last ARN segment, so role/a/admin and
            # user/admin (or two long names sharing 40 characters) would register two resources of
            # one name, which the engine refuses.
            problems.append(
                Problem(
                    key,
                    f"would get the same access-entry resource name ({name}) as {seen_names[name]}; "
                    "use principals whose names differ in their first 40 characters after the last '/'",
                    arn,
                )
            )
        seen_arns.add(arn)
        seen_names.setdefault(name, key)
    return problems


def _node_group_problems(config: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    for i, group in enumerate(config.cluster.node_groups):
        wanted = ami_architecture(group.ami_type)
        for j, instance_type in enumerate(group.instance_types):
            actual = instance_architecture(instance_type)
            if actual is not None and actual != wanted:
                # EKS refuses the node group (InvalidParameterException) or, with a launch template,
                # its instances never join: the AMI cannot boot on the other architecture.
                problems.append(
                    Problem(
                        f"cluster.node_groups[{i}].instance_types[{j}]",
                        f"is an {actual} instance type but ami_type {group.ami_type} is {wanted}; use "
                        f"a {wanted} instance type or an {actual} ami_type",
                        instance_type,
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


def _registry_problems(config: StackConfig) -> list[Problem]:
    """Behind the firewall, every host an image pull touches must be allowed, or pulls time out."""
    egress = config.network.egress
    if egress.mode not in ("network-firewall", "both"):
        return []
    allowed = [d.domain for d in egress.extra_destinations if isinstance(d, DomainDestination)]
    wanted = [("listener_image", registry_host(config.listener_image), config.listener_image)]
    wanted += [
        (f"network.egress.image_registries[{i}]", host, host)
        for i, host in enumerate(egress.image_registries)
    ]
    problems: list[Problem] = []
    for key, host, shown in wanted:
        if ecr_region(host) == config.aws_region:
            # Same-region ECR is reached through the ecr.api/ecr.dkr endpoints or the AWS API allowlist,
            # and its layers through the S3 gateway endpoint.
            if not {"ecr.api", "ecr.dkr"} <= set(egress.aws_apis):
                problems.append(
                    Problem(
                        "network.egress.aws_apis",
                        f"{key} is in this region's ECR, so ecr.api and ecr.dkr must be listed",
                        list(egress.aws_apis),
                        context=("listener_image",),
                    )
                )
            continue
        missing = uncovered(hosts_for_registry(host), allowed)
        if missing:
            problems.append(
                Problem(
                    key,
                    f"is pulled from {host}, which the firewall would block: add "
                    + ", ".join(f"{{domain: {h}}}" for h in missing)
                    + " to network.egress.extra_destinations (or mirror the image to this region's ECR)",
                    shown,
                    context=("network.egress",),
                )
            )
    return problems


def _store_problems(config: StackConfig) -> list[Problem]:
    stores = config.stores
    if config.is_prod and isinstance(stores, InClusterStores):
        return [
            Problem(
                "stores.mode",
                "in-cluster stores are for dev; a prod stack needs managed stores (RDS and ElastiCache)",
                "in-cluster",
            )
        ]
    if isinstance(stores, ManagedStores):
        postgres = stores.postgres
        # RDS storage autoscaling: CreateDBInstance fails with InvalidParameterCombination unless
        # MaxAllocatedStorage exceeds AllocatedStorage by at least 10 percent ("Max storage size must be
        # greater than storage size"; "The maximum allocated storage must be increased by at least 10
        # percent"; https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIOPS.Autoscaling.html).
        if postgres.max_allocated_storage_gib * 10 < postgres.allocated_storage_gib * 11:
            least = -(-postgres.allocated_storage_gib * 11 // 10)
            return [
                Problem(
                    "stores.postgres.max_allocated_storage_gib",
                    f"must be at least 10% above allocated_storage_gib ({postgres.allocated_storage_gib}), "
                    f"so at least {least}: RDS refuses a smaller storage-autoscaling ceiling",
                    postgres.max_allocated_storage_gib,
                    context=("stores.postgres.allocated_storage_gib",),
                )
            ]
    return []


IAM_ROLE_NAME_MAX = 64
"""IAM CreateRole: RoleName is 1-64 characters (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html)."""
AUTONAME_SUFFIX = 8
"""Pulumi's auto-naming appends '-' and 7 random characters to a resource's name."""


def listener_irsa_role_name(config: StackConfig, listener: str) -> str:
    """The Pulumi name of a listener's IRSA role (components.incluster); AWS's name adds the suffix."""
    return f"{config.name}-listener-{listener}-irsa"


def _master_secret_problems(config: StackConfig) -> list[Problem]:
    """Managed stores in `secrets-manager` mode: each listener gets an IRSA role of the program's
    (exactly GetSecretValue on the RDS master secret), so it must not also name a role of its own."""
    if not config.listeners_read_master_secret:
        return []
    problems = []
    for i, listener in enumerate(config.topology.listeners):
        key = f"topology.listeners[{i}]"
        if listener.service_account_role_arn is not None:
            problems.append(
                Problem(
                    f"{key}.service_account_role_arn",
                    "cannot be combined with stores.mode 'managed' and stores.postgres.master_password "
                    "'secrets-manager': the program gives the listener an IRSA role that may read only the "
                    "RDS master secret; remove this key (or use master_password 'generated')",
                    listener.service_account_role_arn,
                    context=("stores",),
                )
            )
        role = listener_irsa_role_name(config, listener.name)
        if len(role) + AUTONAME_SUFFIX > IAM_ROLE_NAME_MAX:
            problems.append(
                Problem(
                    f"{key}.name",
                    f"is too long for its IAM role name '{role}-xxxxxxx' (IAM allows {IAM_ROLE_NAME_MAX} "
                    f"characters); shorten it to at most "
                    f"{IAM_ROLE_NAME_MAX - AUTONAME_SUFFIX - len(role) + len(listener.name)} characters",
                    listener.name,
                    context=("name", "stores"),
                )
            )
    return problems


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
    if config.cluster.eks_cluster_name is not None and config.cluster.context is not None:
        # The program writes that cluster's kubeconfig itself, with one context named after the
        # cluster; any other name fails the Kubernetes provider at `pulumi up` (context not found).
        problems.append(
            Problem(
                "cluster.context",
                "is only used with the kubeconfig secret; with cluster.eks_cluster_name the program "
                "writes the kubeconfig itself (one context); remove it",
                config.cluster.context,
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


def _addon_key(chart: Chart) -> str:
    return "routing.mode" if chart is ENVOY_GATEWAY else f"addons.{chart.release.replace('-', '_')}"


def _addon_problems(config: StackConfig) -> list[Problem]:
    version = config.cluster.kubernetes_version
    problems = []
    for chart in selected(config.addons, config.routing, eks=config.is_eks):
        reason = unsupported(chart, version)
        if reason:
            problems.append(Problem(_addon_key(chart), f"{reason} (cluster.kubernetes_version is {version})"))
    if config.is_eks and config.addons.autoscaler_enabled(True):
        assert not isinstance(config.cluster, ExistingCluster)
        if not any(g.max_size > g.min_size for g in config.cluster.node_groups):
            problems.append(
                Problem(
                    "addons.cluster_autoscaler",
                    "no node group can grow (max_size > min_size), so the autoscaler would have nothing "
                    "to scale; give one room or set this to false",
                    context=("cluster.node_groups",),
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
    # The namespaces this stack's add-ons are installed into: the program declares each of them once
    # as the add-on's own (PSA baseline, no default-deny), so as an agent namespace it would be
    # declared twice (the second create of one object fails: AlreadyExists), get a default-deny
    # policy that cuts the add-on off, and hand the listener a Role over the add-on's Secrets.
    addon_namespaces = {
        chart.namespace: chart
        for chart in selected(config.addons, config.routing, eks=config.is_eks)
        if chart.namespace != "kube-system"
    }
    limit = 63 - len(LISTENER_NAMESPACE_PREFIX)
    problems = []
    for i, listener in enumerate(config.topology.listeners):
        for j, namespace in enumerate(listener.namespaces):
            chart = addon_namespaces.get(namespace)
            if chart is not None:
                problems.append(
                    Problem(
                        f"topology.listeners[{i}].namespaces[{j}]",
                        f"is the namespace of the {chart.release} add-on this stack installs; Agent "
                        "Servers need a namespace of their own",
                        namespace,
                        context=(_addon_key(chart),),
                    )
                )
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
