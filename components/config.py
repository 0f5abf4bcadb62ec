"""The stack configuration model: what a `stacks/Pulumi.<stack>.yaml` may say, and its defaults.

Pure data and validation: no Pulumi, no network. Every stack key under the project namespace
(`langsmith-dataplane:<key>`) maps to one top-level field of `StackConfig`. Cross-field rules
that need the whole document live in `components.rules`; turning config into this model lives
in `components.load`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, HttpUrl, Tag

from listener.regions import REGIONS, Region, RegionName, self_hosted_control_plane_url

PROJECT = "langsmith-dataplane"
REQUIRED_TAG_KEYS = ("owner", "cost-center")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+|[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def _namespace(value: str) -> str:
    _dns_label(value)
    if value == "default" or value.startswith("kube-"):
        raise ValueError("'default' and 'kube-*' namespaces are reserved; use a namespace of your own")
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value):
        raise ValueError(
            "must be an image reference like 'registry/repo:tag' or 'registry/repo@sha256:<64 hex>'"
        )
    return value


def _private_cidr_allowlist(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if value.prefixlen == 0:
        raise ValueError(
            "0.0.0.0/0 opens the endpoint to the whole internet; list the CIDRs that need access"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Namespace = Annotated[str, AfterValidator(_namespace)]
ImageRef = Annotated[str, AfterValidator(_image)]
AllowlistCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_private_cidr_allowlist)]


def _vpc_cidr(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    # AWS allows /16../28 for a VPC; the subnet layout (components.network.plan_subnets) carves
    # NAT and firewall subnets at prefix+7, and AWS's smallest subnet is a /28.
    if not 16 <= value.prefixlen <= 21:
        raise ValueError("must be a /16 to /21: large enough for a subnet per AZ and tier (smallest /28)")
    return value


VpcCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_vpc_cidr)]


class Model(BaseModel):
    """Unknown keys are errors: a misspelt key must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- LangSmith ---------------------------------------------------------------------------------


class LangSmith(Model):
    """Which LangSmith the data plane talks to: a SaaS region, or a self-hosted URL."""

    region: RegionName | None = None
    url: HttpUrl | None = None
    """Base URL of a self-hosted LangSmith; the control plane is served under `/api-host`."""
    egress_cidrs: list[ipaddress.IPv4Network] = Field(default_factory=list)
    """Self-hosted only: the addresses of `url`, for security-group egress (no list is published)."""

    @property
    def saas_region(self) -> Region | None:
        return REGIONS[self.region] if self.region else None

    @property
    def control_plane_url(self) -> str:
        if self.url is not None:
            return self_hosted_control_plane_url(str(self.url))
        return REGIONS[self.region or "us"].control_plane_url

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hostnames the data plane must reach over HTTPS."""
        if self.url is not None:
            return (self.url.host or "",)
        return REGIONS[self.region or "us"].hosts

    @property
    def ip_cidrs(self) -> tuple[str, ...]:
        if self.url is not None:
            return tuple(str(c) for c in self.egress_cidrs)
        return tuple(f"{ip}/32" for ip in REGIONS[self.region or "us"].published_ips)


# --- Network -----------------------------------------------------------------------------------


class DomainDestination(Model):
    """An extra HTTPS destination by name, e.g. a registry or model endpoint (firewall modes)."""

    domain: str = Field(pattern=r"^\.?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$")
    """A hostname, or `.example.com` for the domain and every subdomain."""


class CidrDestination(Model):
    """An extra destination by address, allowed on one TCP port (security-group modes)."""

    cidr: AllowlistCidr
    port: int = Field(default=443, ge=1, le=65535)


def _destination_kind(value: object) -> str | None:
    if isinstance(value, dict):
        return "domain" if "domain" in value else "cidr" if "cidr" in value else None
    return "domain" if isinstance(value, DomainDestination) else "cidr"


Destination = Annotated[
    Annotated[DomainDestination, Tag("domain")] | Annotated[CidrDestination, Tag("cidr")],
    Discriminator(
        _destination_kind,
        custom_error_type="destination",
        custom_error_message="must have either a 'domain' or a 'cidr' key",
    ),
]

EgressMode = Literal["security-group", "network-firewall", "both"]
InterfaceEndpoint = Literal["ecr.api", "ecr.dkr", "sts", "logs", "eks", "elasticloadbalancing", "ec2"]


class Egress(Model):
    mode: EgressMode = "security-group"
    """`security-group`: an IP allowlist on 443; `network-firewall`: a domain allowlist (TLS SNI/HTTP
    Host) with default drop; `both`: the two together."""
    extra_destinations: list[Destination] = Field(default_factory=list)


class CreateVpc(Model):
    mode: Literal["create"] = "create"
    cidr: VpcCidr = ipaddress.IPv4Network("10.0.0.0/16")
    az_count: int = Field(default=3, ge=2, le=6)
    single_nat_gateway: bool = False
    """One NAT gateway for all AZs: cheaper, but an AZ outage cuts egress for the others."""
    interface_endpoints: list[InterfaceEndpoint] = Field(
        default_factory=lambda: ["ecr.api", "ecr.dkr", "sts", "logs", "eks"]
    )
    egress: Egress = Field(default_factory=Egress)


class ExistingVpc(Model):
    mode: Literal["existing"]
    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    vpc_cidr: ipaddress.IPv4Network
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(min_length=2)
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        default_factory=list
    )
    egress: Egress = Field(default_factory=Egress)


def _network_mode(value: object) -> str:
    # `mode` may be left out: creating the VPC is the default.
    return value.get("mode", "create") if isinstance(value, dict) else value.mode  # type: ignore[attr-defined]


Network = Annotated[
    Annotated[CreateVpc, Tag("create")] | Annotated[ExistingVpc, Tag("existing")],
    Discriminator(_network_mode),
]


# --- Cluster -----------------------------------------------------------------------------------


class Endpoint(Model):
    public: bool = False
    public_cidrs: list[AllowlistCidr] = Field(default_factory=list)


class NodeGroup(Model):
    name: DnsLabel
    instance_types: list[str] = Field(default_factory=lambda: ["m6i.xlarge"], min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    ami_type: str = "AL2023_x86_64_STANDARD"
    min_size: int = Field(default=2, ge=0)
    desired_size: int = Field(default=2, ge=0)
    max_size: int = Field(default=4, ge=1)
    disk_size_gib: int = Field(default=50, ge=20, le=16384)
    labels: dict[str, str] = Field(default_factory=dict)


ClusterLog = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]


class Cluster(Model):
    mode: Literal["eks"] = "eks"
    """`eks`: this stack creates the EKS cluster; `existing`: see `ExistingCluster`."""
    kubernetes_version: str = Field(default="1.33", pattern=r"^1\.[0-9]{2}$")
    endpoint: Endpoint = Field(default_factory=Endpoint)
    node_groups: list[NodeGroup] = Field(default_factory=lambda: [NodeGroup(name="default")], min_length=1)
    admin_principal_arns: list[
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$")]
    ] = Field(default_factory=list)
    """IAM roles or users granted cluster-admin through EKS access entries."""
    log_types: list[ClusterLog] = Field(default_factory=lambda: ["api", "audit", "authenticator"])


# --- Backing stores ----------------------------------------------------------------------------


class RdsPostgres(Model):
    instance_class: str = Field(default="db.t4g.large", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(default="16", pattern=r"^1[6-9](\.[0-9]+)?$")
    allocated_storage_gib: int = Field(default=20, ge=20, le=65536)
    max_allocated_storage_gib: int = Field(default=100, ge=20, le=65536)
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    multi_az: bool | None = None
    """Defaults to true in prod, false elsewhere."""
    deletion_protection: bool | None = None
    """Defaults to true in prod, false elsewhere. The policy pack refuses false in prod."""


class ElastiCacheRedis(Model):
    node_type: str = Field(default="cache.t4g.medium", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(default="7.1", pattern=r"^[67]\.[0-9]+$")
    num_cache_clusters: int | None = Field(default=None, ge=1, le=6)
    """Defaults to 2 (a replica in another AZ, automatic failover) in prod, 1 elsewhere."""


class ManagedStores(Model):
    mode: Literal["managed"]
    postgres: RdsPostgres = Field(default_factory=RdsPostgres)
    redis: ElastiCacheRedis = Field(default_factory=ElastiCacheRedis)


class InClusterStores(Model):
    """Postgres and Redis run inside the cluster, one pair per Agent Server (dev only)."""

    mode: Literal["in-cluster"]


class ExternalStores(Model):
    """Shared Postgres and Redis this stack does not create (e.g. on an existing cluster): their admin
    connection URIs are the secret stack keys `postgres_admin_uri` and `redis_admin_uri`."""

    mode: Literal["external"]
    egress_cidrs: list[AllowlistCidr] = Field(min_length=1)
    """Where the stores are: the only addresses Agent Servers and listeners may reach on 5432/6379."""


Stores = Annotated[ManagedStores | InClusterStores | ExternalStores, Field(discriminator="mode")]


# --- Topology ----------------------------------------------------------------------------------


class Workspace(Model):
    name: DnsLabel
    id: UUID
    """The LangSmith workspace id (sent as `X-Tenant-Id`)."""


LISTENER_NAMESPACE_PREFIX = "listener-"


class ListenerSpec(Model):
    name: DnsLabel
    """Names the listener's Kubernetes objects; unique in the stack."""
    workspace: str
    """The `name` of a workspace in `topology.workspaces`."""
    compute_id: str = Field(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    )
    """The listener's `compute_id` in LangSmith; unique per workspace."""
    namespaces: list[Namespace] = Field(min_length=1)
    adopt_listener_id: UUID | None = None
    """An existing LangSmith listener to adopt instead of registering a new one."""
    service_account_role_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"
    )
    """IRSA: an IAM role for the listener's ServiceAccount (EKS only; the role's trust policy is yours)."""

    @property
    def own_namespace(self) -> str:
        """The namespace the listener itself runs in (never one it watches)."""
        return f"{LISTENER_NAMESPACE_PREFIX}{self.name}"


class Topology(Model):
    workspaces: list[Workspace] = Field(default_factory=list)
    listeners: list[ListenerSpec] = Field(default_factory=list)
    shared_namespaces: list[Namespace] = Field(default_factory=list)
    """Namespaces that several listeners may watch (the "single namespace for multiple workspaces"
    layout). Every other namespace belongs to exactly one listener, as the official chart requires."""


# --- In-cluster layer: cluster source, add-ons, routing, agent namespaces -----------------------


class ExistingCluster(Model):
    """A Kubernetes cluster this stack does not create: only the in-cluster layer is deployed into it.

    Access comes from the secret stack key `kubeconfig`, or, when `eks_cluster_name` is given, from
    that EKS cluster's endpoint (looked up with the stack's AWS credentials) and `aws eks get-token`."""

    mode: Literal["existing"]
    kubernetes_version: str = Field(pattern=r"^1\.[0-9]{2}$")
    """The cluster's version (`kubectl version`): decides schemas, Pod Security labels and add-on pins."""
    eks_cluster_name: str | None = Field(default=None, pattern=r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
    context: str | None = None
    """The kubeconfig context to use (default: the kubeconfig's current context)."""
    api_server_cidrs: list[AllowlistCidr] = Field(default_factory=list)
    """Where the Kubernetes API server's endpoints are, for the listener's egress NetworkPolicy
    (default: anywhere on `api_server_port`)."""
    api_server_port: int = Field(default=443, ge=1, le=65535)
    """The port the API server's endpoints listen on after the `kubernetes` Service's translation
    (443 on EKS, GKE and AKS; often 6443 on kubeadm clusters). NetworkPolicies see this port."""


def _cluster_mode(value: object) -> str:
    return value.get("mode", "eks") if isinstance(value, dict) else value.mode  # type: ignore[attr-defined]


ClusterSource = Annotated[
    Annotated[Cluster, Tag("eks")] | Annotated[ExistingCluster, Tag("existing")],
    Discriminator(_cluster_mode),
]


class Addons(Model):
    """Cluster add-ons the stack installs (versions are pinned in `components.addons`).

    `None` means "the default for the cluster mode": on for our EKS, off (not ours to install) on an
    existing cluster."""

    keda: bool = True
    """KEDA: Agent Server queue autoscaling on pending runs (installed before any listener)."""
    metrics_server: bool = True
    """metrics-server: what HorizontalPodAutoscalers read (the listener's fallback when KEDA is off)."""
    aws_load_balancer_controller: bool = False
    """EKS only: NLBs/ALBs for the Gateway's Service or Ingresses (with its IRSA role)."""
    cluster_autoscaler: bool | None = None
    """EKS only (default on): adds nodes to the managed node groups when Agent Servers don't fit."""
    vpc_cni_network_policy: bool | None = None
    """EKS only (default on): makes the VPC CNI enforce NetworkPolicies."""

    def autoscaler_enabled(self, eks: bool) -> bool:
        return eks if self.cluster_autoscaler is None else self.cluster_autoscaler

    def network_policy_enabled(self, eks: bool) -> bool:
        return eks if self.vpc_cni_network_policy is None else self.vpc_cni_network_policy


_HOSTNAME = r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$"


class Routing(Model):
    """How Agent Servers are reached from outside the cluster (each at `<hostname>/<deployment>`)."""

    mode: Literal["none", "gateway", "ingress"] = "none"
    """`gateway`: Gateway API CRDs, Envoy Gateway and one shared Gateway (required when a listener
    watches several namespaces); `ingress`: an Ingress per deployment for your ingress controller;
    `none`: in-cluster only."""
    hostname: str | None = Field(default=None, pattern=_HOSTNAME, max_length=253)
    tls_secret_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """gateway: a TLS Secret in the gateway's namespace (e.g. from cert-manager) for an HTTPS listener."""
    internal: bool = True
    """gateway on EKS with the load balancer controller: an internal NLB (false: internet-facing)."""
    ingress_class_name: str | None = None
    allow_from_cidrs: list[AllowlistCidr] = Field(default_factory=list)
    """Ingress mode: where the ingress controller's traffic comes from (e.g. the VPC for ALB IP targets)."""
    allow_from_namespaces: list[Namespace | Literal["kube-system"]] = Field(default_factory=list)
    """Ingress mode: namespaces of an in-cluster ingress controller."""


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
Quantity = Annotated[str, Field(pattern=_QUANTITY)]


QuotaResource = Literal[
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "requests.storage",
    "persistentvolumeclaims",
    "pods",
    "services",
    "secrets",
]


class LimitRangeSettings(Model):
    default_request: dict[Literal["cpu", "memory"], Quantity] = Field(default_factory=dict)
    default_limit: dict[Literal["cpu", "memory"], Quantity] = Field(default_factory=dict)
    max: dict[Literal["cpu", "memory"], Quantity] = Field(default_factory=dict)


class AgentNamespaceSettings(Model):
    """Applied to every agent namespace (the namespaces listeners watch)."""

    resource_quota: dict[QuotaResource, Quantity] = Field(default_factory=dict)
    """A ResourceQuota's `hard` map, e.g. `{requests.cpu: "32", limits.memory: 128Gi, pods: "200"}`."""
    limit_range: LimitRangeSettings | None = None
    """A LimitRange for containers that declare no resources (Agent Servers always declare them)."""


# --- The whole stack ---------------------------------------------------------------------------

Environment = Literal["dev", "staging", "prod"]


class StackConfig(Model):
    name: Annotated[str, AfterValidator(_dns_label), Field(max_length=24)]
    """Prefix of every resource name (cluster, VPC, stores); short, because AWS names are."""
    environment: Environment
    aws_region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
    tags: dict[str, str]
    langsmith: LangSmith = Field(default_factory=LangSmith)
    network: Network = Field(default_factory=CreateVpc)
    cluster: ClusterSource = Field(default_factory=Cluster)
    stores: Stores = Field(default_factory=lambda: InClusterStores(mode="in-cluster"))
    topology: Topology = Field(default_factory=Topology)
    listener_image: ImageRef
    addons: Addons = Field(default_factory=Addons)
    routing: Routing = Field(default_factory=Routing)
    agent_namespaces: AgentNamespaceSettings = Field(default_factory=AgentNamespaceSettings)

    @property
    def is_eks(self) -> bool:
        """The stack creates its EKS cluster (and so its VPC, egress and managed stores)."""
        return isinstance(self.cluster, Cluster)

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags on every taggable AWS resource: the stack's own plus what identifies the stack."""
        return {**self.tags, "environment": self.environment, "managed-by": "pulumi", "dataplane": self.name}
