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

from components.versions import DEFAULT_KUBERNETES_VERSION, KubernetesVersion, SupportType
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


def _stack_name(value: str) -> str:
    # The name prefixes the RDS identifier, the ElastiCache replication group id, the RDS subnet and
    # parameter groups and the security group names. RDS and ElastiCache identifiers must start with a
    # letter and never hold two hyphens in a row (terraform-provider-aws validateRdsIdentifier; RDS
    # CreateDBInstance and ElastiCache CreateReplicationGroup constraints), and EC2 refuses security
    # group names starting with `sg-` (CreateSecurityGroup GroupName). A DNS label allows all three.
    if not value[:1].isalpha():
        raise ValueError("must start with a letter: RDS and ElastiCache identifiers do")
    if "--" in value:
        raise ValueError("must not contain '--': RDS and ElastiCache identifiers may not")
    if value.startswith("sg-"):
        raise ValueError("must not start with 'sg-': EC2 refuses such security group names")
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


# RFC 1918 plus the shared address space (RFC 6598) that VPNs and peered networks use: the only
# sources that can reach a private endpoint, whose addresses live inside the VPC.
_PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def _private_source(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if not any(value.subnet_of(r) for r in _PRIVATE_RANGES):
        raise ValueError(
            "the private endpoint is only reachable over the VPC, a VPN, peering or Direct Connect, so a "
            "public range never reaches it; list private ranges (RFC 1918 or 100.64.0.0/10), or use "
            "cluster.endpoint.public_cidrs for a public endpoint"
        )
    return value


# AWS tag rules (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html#tag-conventions):
# keys 1-128 and values 0-256 characters of letters, digits, spaces and _ . : / = + - @; the `aws:`
# prefix is reserved. EC2 refuses anything else with InvalidParameterValue at create time.
_TAG_TEXT = re.compile(r"^[\w\s.:/=+\-@]*$")  # \w: Unicode letters, digits and _


# AWS allows 50 user tags per resource; the program adds up to 6 of its own to some (Name,
# environment, managed-by, dataplane and, on subnets, the two kubernetes.io discovery tags).
MAX_STACK_TAGS = 50 - 6


def _tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_STACK_TAGS:
        raise ValueError(
            f"has {len(value)} tags; AWS allows 50 per resource and the program adds up to 6, so at most "
            f"{MAX_STACK_TAGS}"
        )
    for key, text in value.items():
        if not 1 <= len(key) <= 128 or not _TAG_TEXT.match(key) or key.lower().startswith("aws:"):
            raise ValueError(
                f"tag key {key!r} is not allowed by AWS: 1-128 letters, digits, spaces or _ . : / = + - @, "
                "not starting with 'aws:'"
            )
        if len(text) > 256 or not _TAG_TEXT.match(text):
            raise ValueError(
                f"the value of tag {key!r} is not allowed by AWS: at most 256 letters, digits, spaces or "
                "_ . : / = + - @"
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
    if isinstance(value, DomainDestination | CidrDestination):
        return "domain" if isinstance(value, DomainDestination) else "cidr"
    return None


Destination = Annotated[
    Annotated[DomainDestination, Tag("domain")] | Annotated[CidrDestination, Tag("cidr")],
    Discriminator(
        _destination_kind,
        custom_error_type="destination",
        custom_error_message="must have either a 'domain' or a 'cidr' key",
    ),
]

EgressMode = Literal["security-group", "network-firewall", "both"]
AwsService = Literal[
    "ecr.api",
    "ecr.dkr",
    "sts",
    "logs",
    "eks",
    "ec2",
    "elasticloadbalancing",
    "autoscaling",
    "ssm",
    "ssmmessages",
    "ec2messages",
    "secretsmanager",
]
"""AWS APIs by their endpoint service name (`com.amazonaws.<region>.<service>`)."""
InterfaceEndpoint = AwsService
NODE_AWS_APIS: tuple[AwsService, ...] = ("ecr.api", "ecr.dkr", "sts", "ec2")
"""What every node calls: image pulls (ECR), IRSA token exchange (STS), VPC CNI and EBS CSI (EC2)."""

RegistryHost = Annotated[
    str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[0-9]{1,5})?$")
]
# S3 bucket naming rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
# The values CloudWatch Logs accepts for retentionInDays (PutRetentionPolicy).
LogRetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]


class Egress(Model):
    mode: EgressMode = "security-group"
    """`security-group`: an IP allowlist on 443; `network-firewall`: a domain allowlist (TLS SNI/HTTP
    Host) with default drop; `both`: the two together."""
    extra_destinations: list[Destination] = Field(default_factory=list)
    aws_apis: list[AwsService] = Field(default_factory=lambda: list(NODE_AWS_APIS))
    """AWS APIs the nodes and pods call. Behind the firewall each is reached through its interface
    endpoint when `network.interface_endpoints` lists it, or else allowed by name. The in-cluster
    add-ons add theirs (load balancers: elasticloadbalancing, ec2; autoscaler: autoscaling, eks)."""
    image_registries: list[RegistryHost] = Field(default_factory=list)
    """Registries the Agent Server images are pulled from (e.g. `docker.io`). With a firewall, each
    registry's hosts must be allowed (checked), like the listener image's."""


class CreateVpc(Model):
    mode: Literal["create"] = "create"
    cidr: VpcCidr = ipaddress.IPv4Network("10.0.0.0/16")
    az_count: int = Field(default=3, ge=2, le=6)
    single_nat_gateway: bool = False
    """One NAT gateway for all AZs: cheaper, but an AZ outage cuts egress for the others."""
    interface_endpoints: list[InterfaceEndpoint] = Field(
        default_factory=lambda: ["ecr.api", "ecr.dkr", "sts", "logs", "eks"]
    )
    s3_buckets: list[BucketName] = Field(default_factory=list)
    """Buckets reachable through the S3 gateway endpoint besides ECR's layer bucket. The endpoint
    carries every request to S3 in this region, so any other bucket is unreachable from the VPC."""
    flow_logs_retention_days: LogRetentionDays = 90
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

    @property
    def interface_endpoints(self) -> list[InterfaceEndpoint]:
        # Whatever endpoints an adopted VPC has are not ours to know; assume none.
        return []


def _network_mode(value: object) -> str | None:
    # `mode` may be left out: creating the VPC is the default. Anything but a mapping (a stack file
    # saying `network: create`, say) has no tag: None makes pydantic report it as a config error.
    if isinstance(value, dict):
        return value.get("mode", "create")
    return value.mode if isinstance(value, CreateVpc | ExistingVpc) else None


Network = Annotated[
    Annotated[CreateVpc, Tag("create")] | Annotated[ExistingVpc, Tag("existing")],
    Discriminator(
        _network_mode,
        custom_error_type="network",
        custom_error_message="must be a mapping whose 'mode' is 'create' (the default) or 'existing'",
    ),
]


# --- Cluster -----------------------------------------------------------------------------------


SecurityGroupId = Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]
RoleArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")]
PrincipalArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]+$")]
PrivateSourceCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_private_source)]


def principal_slug(arn: str) -> str:
    """A stable, readable resource-name part for an IAM principal (keyed by ARN, not list position)."""
    tail = arn.rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9-]+", "-", tail).strip("-")[:40] or "principal"


class Bastion(Model):
    """A small instance in a private subnet, reached only through SSM Session Manager (no SSH, no
    public IP, IMDSv2), for port-forwarding to the private API endpoint."""

    instance_type: str = Field(default="t4g.nano", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


class Endpoint(Model):
    public: bool = False
    public_cidrs: list[AllowlistCidr] = Field(default_factory=list)
    private_access_cidrs: list[PrivateSourceCidr] = Field(default_factory=list)
    """Networks (VPN, peered VPC, in-VPC CI runners' subnets) allowed to reach the private endpoint on 443."""
    private_access_security_group_ids: list[SecurityGroupId] = Field(default_factory=list)
    """Security groups (e.g. of in-VPC CI runners) allowed to reach the private endpoint on 443."""
    bastion: Bastion | None = None


class Access(Model):
    """Who administers the cluster through EKS access entries, stated rather than implied."""

    deployer_role_arn: RoleArn | None = None
    """The role `pulumi up` runs as. Set: it gets an explicit cluster-admin access entry and EKS's
    implicit creator entry is turned off. It must then be exactly the identity that creates the cluster."""
    ci_role_arns: list[RoleArn] = Field(default_factory=list)
    """Roles CI runs `pulumi preview`/`up` as. Cluster-admin: a preview's server-side dry run needs the
    same Kubernetes rights as the update it previews."""


# Linux AMI types of EKS managed node groups (https://docs.aws.amazon.com/eks/latest/APIReference/API_Nodegroup.html,
# amiType). AL2 types are absent: EKS publishes no AL2 AMIs for Kubernetes 1.33 and later.
AmiType = Literal[
    "AL2023_x86_64_STANDARD",
    "AL2023_ARM_64_STANDARD",
    "AL2023_x86_64_NVIDIA",
    "AL2023_ARM_64_NVIDIA",
    "AL2023_x86_64_NEURON",
    "BOTTLEROCKET_x86_64",
    "BOTTLEROCKET_ARM_64",
    "BOTTLEROCKET_x86_64_NVIDIA",
    "BOTTLEROCKET_ARM_64_NVIDIA",
]


def ami_architecture(ami_type: str) -> Literal["arm64", "x86_64"]:
    return "arm64" if "ARM_64" in ami_type else "x86_64"


_INSTANCE_TYPE = re.compile(r"^(?P<family>[a-z]+)(?P<generation>[0-9]+)(?P<attributes>[a-z-]*)\.[a-z0-9]+$")


def instance_architecture(instance_type: str) -> Literal["arm64", "x86_64"] | None:
    """The CPU architecture of an EC2 instance type, from its name; None if the name is not EC2's shape.

    EC2 instance naming (https://docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html):
    a `g` among the attributes after the generation means an AWS Graviton (arm64) processor (m7g,
    c6gn, r8gd, t4g, is4gen); the first Graviton family, a1, predates that convention.
    """
    match = _INSTANCE_TYPE.match(instance_type)
    if match is None:
        return None
    if match["family"] == "a" and match["generation"] == "1":
        return "arm64"
    return "arm64" if "g" in match["attributes"] else "x86_64"


# EKS node labels (CreateNodegroup `labels`, https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateNodegroup.html):
# keys and values 1-63 characters each, and Kubernetes label syntax
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
# EKS also refuses the prefixes it and Kubernetes reserve (aws/containers-roadmap#1451:
# "cannot contain reserved prefixes [kubernetes.io/, k8s.io/, eks.amazonaws.com/]").
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "eks.amazonaws.com")


def _node_labels(value: dict[str, str]) -> dict[str, str]:
    for key, text in value.items():
        prefix, _, name = key.rpartition("/")
        if (
            not 1 <= len(key) <= 63
            or not _LABEL_NAME.match(name)
            or (prefix and not _LABEL_PREFIX.match(prefix))
        ):
            raise ValueError(
                f"label key {key!r} is not allowed by EKS: at most 63 characters, an optional DNS prefix and "
                "'/', then letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        if any(prefix == d or prefix.endswith("." + d) for d in _RESERVED_LABEL_DOMAINS):
            raise ValueError(
                f"label key {key!r} uses a prefix EKS reserves (kubernetes.io, k8s.io, eks.amazonaws.com)"
            )
        if not 1 <= len(text) <= 63 or not _LABEL_NAME.match(text):
            raise ValueError(
                f"the value of label {key!r} is not allowed by EKS: 1-63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit"
            )
    return value


class NodeGroup(Model):
    name: Annotated[DnsLabel, Field(max_length=36)]
    """At most 36 characters: the group is created with the name prefix `<name>-` plus a 26-character
    unique suffix, and EKS node group names are at most 63 (terraform-provider-aws
    node_group_name_prefix: StringLenBetween(0, 63-id.UniqueIDSuffixLength))."""
    instance_types: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]] = Field(
        default_factory=lambda: ["m6i.xlarge"], min_length=1
    )
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    ami_type: AmiType = "AL2023_x86_64_STANDARD"
    min_size: int = Field(default=2, ge=0)
    desired_size: int = Field(default=2, ge=0)
    max_size: int = Field(default=4, ge=1)
    disk_size_gib: int = Field(default=50, ge=20, le=16384)
    labels: Annotated[dict[str, str], AfterValidator(_node_labels)] = Field(default_factory=dict)


ClusterLog = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
CoreAddon = Literal["vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver"]


class Cluster(Model):
    mode: Literal["eks"] = "eks"
    """`eks`: this stack creates the EKS cluster; `existing`: see `ExistingCluster`."""
    kubernetes_version: KubernetesVersion = DEFAULT_KUBERNETES_VERSION
    """Control plane, node groups and add-ons all follow it. EKS upgrades one minor version at a time."""
    upgrade_policy: SupportType = "STANDARD"
    """STANDARD: EKS upgrades the cluster itself when the version leaves standard support. EXTENDED:
    it stays on the version into extended support, at extra cost."""
    endpoint: Endpoint = Field(default_factory=Endpoint)
    access: Access = Field(default_factory=Access)
    node_groups: list[NodeGroup] = Field(default_factory=lambda: [NodeGroup(name="default")], min_length=1)
    admin_principal_arns: list[PrincipalArn] = Field(default_factory=list)
    """IAM roles or users granted cluster-admin through EKS access entries."""
    log_types: list[ClusterLog] = Field(default_factory=lambda: ["api", "audit", "authenticator"])
    log_retention_days: LogRetentionDays = 90
    addon_versions: dict[
        CoreAddon, Annotated[str, Field(pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")]
    ] = Field(default_factory=dict)
    """Pins for the core add-ons. Unpinned ones get EKS's default version for `kubernetes_version`,
    looked up at deploy time (so a real preview shows it, and a version change moves them too)."""

    def access_entries(self) -> list[tuple[str, str, str]]:
        """(stack key, resource-name part, principal ARN) of every cluster-admin access entry.

        The one place that names them: `components.cluster` creates them under these names, and
        `components.rules` refuses two that would share one (a duplicate resource name).
        """
        access = self.access
        return [
            *(
                (("cluster.access.deployer_role_arn", "deployer", access.deployer_role_arn),)
                if access.deployer_role_arn
                else ()
            ),
            *(
                (f"cluster.access.ci_role_arns[{i}]", f"ci-{principal_slug(arn)}", arn)
                for i, arn in enumerate(access.ci_role_arns)
            ),
            *(
                (f"cluster.admin_principal_arns[{i}]", f"admin-{principal_slug(arn)}", arn)
                for i, arn in enumerate(self.admin_principal_arns)
            ),
        ]


# --- Backing stores ----------------------------------------------------------------------------


# RDS for PostgreSQL major versions in RDS standard support
# (https://docs.aws.amazon.com/AmazonRDS/latest/PostgreSQLReleaseNotes/postgresql-release-calendar.html),
# at or above what Agent Servers need (15.8, see hybrid-data-plane.md).
POSTGRES_MAJORS = ("15", "16", "17")
MIN_POSTGRES = (15, 8)


def _postgres_version(value: str) -> str:
    major, _, minor = value.partition(".")
    if major not in POSTGRES_MAJORS:
        raise ValueError(f"major version {major!r} is not one of {', '.join(POSTGRES_MAJORS)}")
    if minor and (int(major), int(minor)) < MIN_POSTGRES:
        raise ValueError(f"Agent Servers need PostgreSQL {MIN_POSTGRES[0]}.{MIN_POSTGRES[1]} or later")
    return value


class RdsPostgres(Model):
    instance_class: str = Field(default="db.t4g.large", pattern=r"^db\.[a-z0-9-]+\.[a-z0-9]+$")
    engine_version: Annotated[
        str, Field(pattern=r"^[0-9]{2}(\.[0-9]+)?$"), AfterValidator(_postgres_version)
    ] = "16"
    """A major version (RDS picks its default minor and upgrades minors itself), or major.minor."""
    allocated_storage_gib: int = Field(default=20, ge=20, le=65536)
    max_allocated_storage_gib: int = Field(default=100, ge=20, le=65536)
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    multi_az: bool | None = None
    """Defaults to true in prod, false elsewhere."""
    deletion_protection: bool | None = None
    """Defaults to true in prod, false elsewhere. The policy pack refuses false in prod."""
    master_password: Literal["secrets-manager", "generated"] = "secrets-manager"  # noqa: S105 (a mode, not a password)
    """`secrets-manager`: RDS keeps the master password in Secrets Manager (never in Pulumi state; the
    program exports the secret's ARN). `generated`: a random password in state (as a Pulumi secret)."""


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


def _cluster_mode(value: object) -> str | None:
    # As for `network`: anything but a mapping (a stack file saying `cluster: existing`, say) has no
    # tag, and None makes pydantic report it as a config error instead of raising AttributeError.
    if isinstance(value, dict):
        return value.get("mode", "eks")
    return value.mode if isinstance(value, Cluster | ExistingCluster) else None


ClusterSource = Annotated[
    Annotated[Cluster, Tag("eks")] | Annotated[ExistingCluster, Tag("existing")],
    Discriminator(
        _cluster_mode,
        custom_error_type="cluster",
        custom_error_message="must be a mapping whose 'mode' is 'eks' (the default) or 'existing'",
    ),
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
    """gateway: an internal load balancer for the Gateway's proxies (false: internet-facing). An NLB
    with our load balancer controller on EKS; otherwise the cloud's own Service load balancer, made
    internal with the AWS, Azure and GKE annotations (any other must be set up by you)."""
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
    name: Annotated[str, AfterValidator(_dns_label), AfterValidator(_stack_name), Field(max_length=24)]
    """Prefix of every resource name (cluster, VPC, stores); short, because AWS names are."""
    environment: Environment
    aws_region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
    aws_account_id: str = Field(pattern=r"^[0-9]{12}$")
    """The only account this stack may touch (the AWS provider's allowed_account_ids): credentials for
    any other account fail before anything is created."""
    tags: Annotated[dict[str, str], AfterValidator(_tags)]
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
    def listeners_read_master_secret(self) -> bool:
        """RDS keeps the managed Postgres master password in Secrets Manager and each listener reads it
        there through an IRSA role (components.listener); `generated` hands the password over instead."""
        stores = self.stores
        return (
            self.is_eks
            and isinstance(stores, ManagedStores)
            and stores.postgres.master_password == "secrets-manager"  # noqa: S105 (a mode)
        )

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags on every taggable AWS resource: the stack's own plus what identifies the stack."""
        return {**self.tags, "environment": self.environment, "managed-by": "pulumi", "dataplane": self.name}
