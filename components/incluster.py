"""The in-cluster layer of one stack: add-ons, agent namespaces and every listener, on one provider.

Called by `components.program` once it has a cluster (built on EKS, or an existing one). Pure
planning (`plan_listeners`, `plan_namespaces`) decides everything that is known from config; the
components declare it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.addon_versions import ENVOY_GATEWAY, GATEWAY_NAME, KEDA
from components.addons import ClusterAddons, ClusterAddonsArgs, EksFacts, summary
from components.agent_namespaces import AgentNamespacePlan, AgentNamespaces, AgentNamespacesArgs, watchers
from components.config import CreateVpc, ExistingCluster, InClusterStores, ManagedStores, StackConfig
from components.listener import Listener, ListenerArgs, ListenerPlan, MasterSecretAccess, Routing
from components.network_policies import AgentTraffic, ListenerTraffic
from components.rules import listener_irsa_role_name
from components.secrets import StackSecrets


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster the layer goes into."""

    provider: k8s.Provider
    eks: EksFacts | None = None
    """EKS facts when this stack built the cluster (EKS-only add-ons need them)."""
    store_cidrs: Sequence[str] = ()
    """Where managed or external stores are (empty for in-cluster stores)."""
    aws_provider: pulumi.ProviderResource | None = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


def _listener_routing(config: StackConfig) -> Routing:
    routing = config.routing
    if routing.mode == "gateway":
        return Routing("httproute", routing.hostname, GATEWAY_NAME, ENVOY_GATEWAY.namespace)
    if routing.mode == "ingress":
        return Routing("ingress", routing.hostname, ingress_class_name=routing.ingress_class_name)
    return Routing()


def cluster_cidrs(config: StackConfig) -> list[str]:
    """The cluster's own address ranges Agent Servers must not reach on 443 (see
    `network_policies.public_https_exceptions`): the VPC of a cluster this stack builds, or the API
    server's endpoints of an existing one when the stack names them."""
    cluster = config.cluster
    if isinstance(cluster, ExistingCluster):
        return [str(c) for c in cluster.api_server_cidrs]
    network = config.network
    return [str(network.cidr if isinstance(network, CreateVpc) else network.vpc_cidr)]


def plan_namespaces(config: StackConfig, store_cidrs: Sequence[str]) -> list[AgentNamespacePlan]:
    in_cluster_stores = isinstance(config.stores, InClusterStores)
    routing = config.routing
    own = {listener.name: listener.own_namespace for listener in config.topology.listeners}
    ingress_namespaces: list[str] = []
    if routing.mode == "gateway":
        ingress_namespaces = [ENVOY_GATEWAY.namespace]
    elif routing.mode == "ingress":
        ingress_namespaces = list(routing.allow_from_namespaces)
    return [
        AgentNamespacePlan(
            namespace=namespace,
            watched_by=names,
            traffic=AgentTraffic(
                listener_namespaces=[own[name] for name in names],
                ingress_namespaces=ingress_namespaces,
                ingress_cidrs=[str(c) for c in routing.allow_from_cidrs] if routing.mode == "ingress" else [],
                store_cidrs=[] if in_cluster_stores else list(store_cidrs),
                keda_namespace=KEDA.namespace if config.addons.keda and in_cluster_stores else None,
                private_https_cidrs=[str(c) for c in config.langsmith.egress_cidrs],
                cluster_cidrs=cluster_cidrs(config),
            ),
        )
        for namespace, names in watchers(config.topology.listeners).items()
    ]


def plan_listeners(
    config: StackConfig, secrets: StackSecrets, store_cidrs: Sequence[str]
) -> list[ListenerPlan]:
    in_cluster_stores = isinstance(config.stores, InClusterStores)
    cluster = config.cluster
    api_cidrs = [str(c) for c in cluster.api_server_cidrs] if isinstance(cluster, ExistingCluster) else []
    api_port = cluster.api_server_port if isinstance(cluster, ExistingCluster) else 443
    control_plane = (
        ("LISTENER_CONTROL_PLANE_URL", config.langsmith.control_plane_url)
        if config.langsmith.url is not None
        else ("LISTENER_REGION", config.langsmith.region or "us")
    )
    workspaces = {w.name: (i, w) for i, w in enumerate(config.topology.workspaces)}
    plans = []
    for i, spec in enumerate(config.topology.listeners):
        index, workspace = workspaces[spec.workspace]
        _, key_source = secrets.api_key_for(spec.workspace)
        plans.append(
            ListenerPlan(
                spec=spec,
                stack_key=f"topology.listeners[{i}]",
                workspace_id=str(workspace.id),
                workspace_key=f"topology.workspaces[{index}].id",
                environment=config.environment,
                kubernetes_version=cluster.kubernetes_version,
                image=config.listener_image,
                control_plane=control_plane,
                control_plane_url=config.langsmith.control_plane_url,
                api_key_source=key_source,
                traffic=ListenerTraffic(
                    watched_namespaces=spec.namespaces,
                    store_cidrs=[] if in_cluster_stores else list(store_cidrs),
                    api_server_cidrs=api_cidrs,
                    api_server_port=api_port,
                ),
                routing=_listener_routing(config),
                autoscaler="keda" if config.addons.keda else "hpa",
                store_mode="in-cluster" if in_cluster_stores else "managed",
                rds_ca=isinstance(config.stores, ManagedStores),
                aws_region=config.aws_region,
                reads_master_secret=config.listeners_read_master_secret,
            )
        )
    return plans


def build_in_cluster(
    config: StackConfig,
    secrets: StackSecrets,
    target: ClusterTarget,
    *,
    postgres_admin_uri: pulumi.Input[str] | None = None,
    redis_admin_uri: pulumi.Input[str] | None = None,
    postgres_master_secret_arn: pulumi.Input[str] | None = None,
) -> dict[str, object]:
    """Declare the layer; returns its stack outputs."""
    master_secret = None
    if config.listeners_read_master_secret:
        if target.eks is None or postgres_master_secret_arn is None:
            raise ValueError(
                "listeners reading the RDS master secret need the EKS facts and the secret's ARN"
            )
        master_secret = MasterSecretAccess(
            secret_arn=postgres_master_secret_arn,
            oidc_provider_arn=target.eks.oidc_provider_arn,
            oidc_issuer_url=target.eks.oidc_issuer_url,
            partition=target.eks.partition,
            tags=target.eks.tags,
        )
    providers: dict[str, pulumi.ProviderResource] = {"kubernetes": target.provider}
    if target.aws_provider is not None:
        providers["aws"] = target.aws_provider
    opts = pulumi.ResourceOptions(providers=providers, depends_on=list(target.depends_on))

    addons = ClusterAddons(
        f"{config.name}-addons",
        ClusterAddonsArgs(
            addons=config.addons,
            routing=config.routing,
            kubernetes_version=config.cluster.kubernetes_version,
            environment=config.environment,
            eks=target.eks,
        ),
        opts=opts,
    )
    namespaces = AgentNamespaces(
        f"{config.name}-agents",
        AgentNamespacesArgs(
            plans=plan_namespaces(config, target.store_cidrs),
            settings=config.agent_namespaces,
            environment=config.environment,
            kubernetes_version=config.cluster.kubernetes_version,
            protect=config.is_prod,
        ),
        opts=opts,
    )
    listeners = []
    for plan in plan_listeners(config, secrets, target.store_cidrs):
        api_key, _ = secrets.api_key_for(plan.spec.workspace)
        listener = Listener(
            f"{config.name}-listener-{plan.spec.name}",
            ListenerArgs(
                plan=plan,
                api_key=api_key,
                postgres_admin_uri=postgres_admin_uri,
                redis_admin_uri=redis_admin_uri,
                master_secret=master_secret,
                irsa_role_name=listener_irsa_role_name(config, plan.spec.name),
                watched_namespaces=[namespaces.namespaces[ns] for ns in plan.spec.namespaces],
                prerequisites=addons.prerequisites,
                guarded=[namespaces, addons],
            ),
            opts=opts,
        )
        listeners.append((plan, listener))

    return {
        "addons": summary(addons.charts),
        "agentNamespaces": {ns: list(names) for ns, names in watchers(config.topology.listeners).items()},
        "listeners": [
            {
                "name": plan.spec.name,
                "workspace": plan.spec.workspace,
                "computeId": plan.spec.compute_id,
                "namespaces": list(plan.spec.namespaces),
                "listenerNamespace": plan.namespace,
            }
            for plan, _ in listeners
        ],
        # Known only once LangSmith has registered them (unknown in a preview).
        "listenerIds": {plan.spec.name: listener.listener_id for plan, listener in listeners},
    }
