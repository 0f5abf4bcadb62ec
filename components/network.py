"""The data plane's network: create a VPC (subnets, NAT, routes, endpoints) or adopt an existing one.

Subnet tiers in create mode, one subnet per AZ each:

* `private`: nodes and pods (VPC CNI gives pods VPC addresses, hence the large blocks); no public IPs.
* `public`: internet-facing load balancers only.
* `nat`: the NAT gateways. They are kept out of `public` because, with the network firewall, the NAT
  subnets' route table sends return traffic for the private subnets back through the firewall; load
  balancers sharing that table would hairpin their traffic to nodes through the firewall, whose
  default `aws:drop_established` would drop it. Having the tier in every mode also means turning the
  firewall on or off never replaces a NAT gateway or changes its Elastic IP.
* `firewall`: the Network Firewall endpoints (only when the egress mode uses the firewall).

The private subnets' default routes live in `components.egress` (their target is the NAT gateway or
the firewall endpoint, depending on the egress mode); everything else is here. The CIDR layout is the
pure function `plan_subnets`.

A created VPC also gets flow logs (all traffic, to CloudWatch), its default security group emptied
(nothing may fall back on its allow-all-from-itself rules), and an S3 gateway endpoint whose policy
admits only ECR's layer bucket and the buckets the stack names.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import CreateVpc, ExistingVpc
from components.egress import PrivateRouting, uses_firewall

MAX_AZS = 6

# EKS refuses to place control-plane ENIs in these zone ids (EKS user guide, "Subnet requirements").
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs per tier, index i belonging to the i-th availability zone."""

    private: tuple[str, ...]
    public: tuple[str, ...]
    nat: tuple[str, ...]
    firewall: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return self.private + self.public + self.nat + self.firewall


def plan_subnets(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Carve the VPC CIDR into per-AZ subnets, deterministically and independently of the egress mode.

    The VPC is cut into eighths: eighths 0-5 are the private subnets (one per possible AZ, so adding
    an AZ never moves an existing subnet), eighth 6 is cut into eight public subnets, eighth 7 into
    sixteen small blocks of which 0-5 are NAT subnets and 8-13 firewall subnets. For a /16: private
    /19, public /22, NAT and firewall /23.
    """
    network = ipaddress.IPv4Network(vpc_cidr)
    if not 2 <= az_count <= MAX_AZS:
        raise ValueError(f"az_count must be between 2 and {MAX_AZS}, got {az_count}")
    if network.prefixlen > 21:
        raise ValueError(f"{vpc_cidr} is too small: the NAT and firewall subnets would be smaller than /28")
    eighths = list(network.subnets(prefixlen_diff=3))
    public = list(eighths[6].subnets(prefixlen_diff=3))
    small = list(eighths[7].subnets(prefixlen_diff=4))
    return SubnetPlan(
        private=tuple(str(c) for c in eighths[:az_count]),
        public=tuple(str(c) for c in public[:az_count]),
        nat=tuple(str(c) for c in small[:az_count]),
        firewall=tuple(str(c) for c in small[8 : 8 + az_count]),
    )


def ecr_layer_bucket(region: str) -> str:
    """The S3 bucket ECR serves image layers from (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html,
    "Minimum Amazon S3 bucket permissions for Amazon ECR")."""
    return f"prod-{region}-starport-layer-bucket"


def s3_endpoint_policy(region: str, buckets: Sequence[str], partition: str = "aws") -> str:
    """The S3 gateway endpoint's policy: ECR layers (read) and the stack's own buckets, nothing else.

    Every request to S3 in this region leaves the VPC through the gateway endpoint (its prefix-list
    route beats 0.0.0.0/0), bypassing the firewall, so the endpoint policy is the egress control for
    S3. A gateway endpoint policy's Principal must be "*"
    (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html).
    """
    statements: list[dict[str, object]] = [
        {
            "Sid": "EcrImageLayers",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:{partition}:s3:::{ecr_layer_bucket(region)}/*",
        }
    ]
    if buckets:
        statements.append(
            {
                "Sid": "StackBuckets",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [
                    arn
                    for b in sorted(set(buckets))
                    for arn in (f"arn:{partition}:s3:::{b}", f"arn:{partition}:s3:::{b}/*")
                ],
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def flow_log_trust_policy(account_id: str) -> str:
    """Only the flow-logs service, and only for this account (confused-deputy guard), may assume the role
    (https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        },
        sort_keys=True,
    )


def flow_log_write_policy(log_group_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogGroups",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": [log_group_arn, f"{log_group_arn}:*"],
                }
            ],
        },
        sort_keys=True,
    )


def pick_zone(names: Sequence[str], index: int, wanted: int) -> str:
    """The index-th usable AZ, or a clear error when the region has fewer than the stack asks for."""
    ordered = sorted(names)
    if len(ordered) < wanted:
        raise ValueError(
            f"network.az_count is {wanted} but only {len(ordered)} availability zones are usable "
            f"here ({', '.join(ordered) or 'none'}); lower network.az_count"
        )
    return ordered[index]


@dataclass(frozen=True)
class NetworkArgs:
    vpc: CreateVpc | ExistingVpc
    region: str
    cluster_name: str
    """The EKS cluster's name, for the `kubernetes.io/cluster/<name>` subnet tags."""
    tags: Mapping[str, str]
    account_id: pulumi.Input[str] | None = None
    """For the flow-log role's trust condition; looked up from the caller's identity when None."""
    partition: str = "aws"


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    availability_zones: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    nat_gateway_count: int
    routing: PrivateRouting | None
    """What `components.egress` routes (default routes, firewall); None for an adopted VPC."""
    endpoints: list[aws.ec2.VpcEndpoint]
    """The S3 gateway and interface endpoints (created VPC only): image pulls and AWS API calls from
    the nodes go through them, so nodes must not boot before they exist."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("langsmith:infra:Network", name, None, opts)
        self._name = name
        self._tags = dict(args.tags)
        self.vpc_cidr = str(args.vpc.cidr if isinstance(args.vpc, CreateVpc) else args.vpc.vpc_cidr)
        self.routing = None
        self.endpoints = []
        if isinstance(args.vpc, CreateVpc):
            self._create(args, args.vpc)
        else:
            self._adopt(args.vpc)
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "vpcCidr": self.vpc_cidr,
                "availabilityZones": self.availability_zones,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    def _opts(self, **kwargs: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)  # type: ignore[arg-type]

    def _tagged(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self._tags, "Name": name, **(extra or {})}

    def _adopt(self, vpc: ExistingVpc) -> None:
        # Nothing is created: an adopted VPC's subnets, routes and tags belong to whoever made it.
        self.vpc_id = pulumi.Output.from_input(vpc.vpc_id)
        self.availability_zones = pulumi.Output.from_input([])
        self.private_subnet_ids = pulumi.Output.from_input(list(vpc.private_subnet_ids))
        self.public_subnet_ids = pulumi.Output.from_input(list(vpc.public_subnet_ids))
        self.nat_gateway_count = 0

    def _create(self, args: NetworkArgs, vpc_cfg: CreateVpc) -> None:
        name = self._name
        az_count = vpc_cfg.az_count
        plan = plan_subnets(self.vpc_cidr, az_count)
        firewall = uses_firewall(vpc_cfg.egress.mode)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        # Looked up (not derived from the region name) because AZ letters differ per account and some
        # regions lack an "a"; a real preview runs this invoke too, so it previews honestly. Opt-in
        # (local/wavelength) zones and zones EKS refuses are left out; sorting keeps the order stable.
        zones = aws.get_availability_zones_output(
            state="available",
            exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
            filters=[
                aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        az_names = [zones.names.apply(lambda n, i=i: pick_zone(n, i, az_count)) for i in range(az_count)]
        self.availability_zones = pulumi.Output.all(*az_names).apply(list)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=self.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # required for interface endpoints' private DNS
            tags=self._tagged(name),
            opts=self._opts(),
        )
        self.vpc_id = vpc.id
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=self._tagged(f"{name}-igw"), opts=self._opts()
        )

        def subnets(tier: str, cidrs: Sequence[str], extra: Mapping[str, str]) -> list[aws.ec2.Subnet]:
            return [
                aws.ec2.Subnet(
                    f"{name}-{tier}-{i}",
                    vpc_id=vpc.id,
                    cidr_block=cidr,
                    availability_zone=az_names[i],
                    # Nothing gets a public IP by accident: NAT gateways use Elastic IPs, load balancers their own.
                    map_public_ip_on_launch=False,
                    tags=self._tagged(f"{name}-{tier}-{i}", extra),
                    opts=self._opts(),
                )
                for i, cidr in enumerate(cidrs)
            ]

        private = subnets("private", plan.private, {**cluster_tag, "kubernetes.io/role/internal-elb": "1"})
        public = subnets("public", plan.public, {**cluster_tag, "kubernetes.io/role/elb": "1"})
        nat_subnets = subnets("nat", plan.nat, {})
        firewall_subnets = subnets("firewall", plan.firewall, {}) if firewall else []
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private]).apply(list)
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public]).apply(list)

        self.nat_gateway_count = 1 if vpc_cfg.single_nat_gateway else az_count
        nats: list[aws.ec2.NatGateway] = []
        for i in range(self.nat_gateway_count):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}", domain="vpc", tags=self._tagged(f"{name}-nat-{i}"), opts=self._opts()
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=nat_subnets[i].id,
                    connectivity_type="public",
                    tags=self._tagged(f"{name}-nat-{i}"),
                    opts=self._opts(depends_on=[igw]),
                )
            )

        def nat_for(i: int) -> aws.ec2.NatGateway:
            return nats[0] if vpc_cfg.single_nat_gateway else nats[i]

        # Routes are separate aws.ec2.Route resources: inline routes on a RouteTable fight with them.
        def route_table(role: str, members: Sequence[aws.ec2.Subnet]) -> aws.ec2.RouteTable:
            table = aws.ec2.RouteTable(
                f"{name}-{role}", vpc_id=vpc.id, tags=self._tagged(f"{name}-{role}"), opts=self._opts()
            )
            for k, subnet in enumerate(members):
                aws.ec2.RouteTableAssociation(
                    f"{name}-{role}-assoc-{k}",
                    subnet_id=subnet.id,
                    route_table_id=table.id,
                    opts=self._opts(),
                )
            return table

        def default_route(role: str, table: aws.ec2.RouteTable, **target: pulumi.Input[str]) -> None:
            aws.ec2.Route(
                f"{name}-{role}-default",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                opts=self._opts(),
                **target,  # type: ignore[arg-type]
            )

        public_rt = route_table("public", public)
        default_route("public", public_rt, gateway_id=igw.id)
        nat_rt = route_table("nat", nat_subnets)
        default_route("nat", nat_rt, gateway_id=igw.id)

        # components.egress owns each private table's default route (NAT or firewall endpoint).
        private_rts = [route_table(f"private-{i}", [subnet]) for i, subnet in enumerate(private)]
        for i, subnet in enumerate(firewall_subnets):
            table = route_table(f"firewall-{i}", [subnet])
            default_route(f"firewall-{i}", table, nat_gateway_id=nat_for(i).id)

        self.routing = PrivateRouting(
            vpc_id=vpc.id,
            vpc_cidr=self.vpc_cidr,
            private_route_table_ids=[t.id for t in private_rts],
            private_subnet_cidrs=list(plan.private),
            nat_gateway_ids=[nat_for(i).id for i in range(az_count)],
            nat_route_table_id=nat_rt.id,
            firewall_subnet_ids=[s.id for s in firewall_subnets],
        )

        # S3 through a gateway endpoint (free): ECR image layers live in S3, and the prefix-list route
        # is more specific than 0.0.0.0/0, so this traffic never reaches the NAT or the firewall;
        # hence the policy (see s3_endpoint_policy).
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in private_rts],
            policy=s3_endpoint_policy(args.region, vpc_cfg.s3_buckets, args.partition),
            tags=self._tagged(f"{name}-s3"),
            opts=self._opts(),
        )
        self.endpoints.append(s3)
        # Nothing may use the default group by accident: the provider adopts it and removes all its
        # rules (ec2.DefaultSecurityGroup, "immediately removes all ingress and egress rules").
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, tags=self._tagged(f"{name}-default"), opts=self._opts()
        )
        self._flow_logs(args, vpc, vpc_cfg)
        if vpc_cfg.interface_endpoints:
            self._interface_endpoints(args.region, vpc, private, vpc_cfg.interface_endpoints)

    def _flow_logs(self, args: NetworkArgs, vpc: aws.ec2.Vpc, vpc_cfg: CreateVpc) -> None:
        name = self._name
        account_id = (
            args.account_id
            if args.account_id is not None
            else aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/aws/vpc/flow-logs/{name}",
            retention_in_days=vpc_cfg.flow_logs_retention_days,
            tags=self._tagged(f"{name}-flow-logs"),
            opts=self._opts(),
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=pulumi.Output.from_input(account_id).apply(flow_log_trust_policy),
            description=f"VPC flow logs of {name} to CloudWatch Logs",
            tags=self._tagged(f"{name}-flow-logs"),
            opts=self._opts(),
        )
        write = aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=log_group.arn.apply(flow_log_write_policy),
            opts=self._opts(),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=self._tagged(f"{name}-flow-logs"),
            opts=self._opts(depends_on=[write]),
        )

    def _interface_endpoints(
        self, region: str, vpc: aws.ec2.Vpc, private: Sequence[aws.ec2.Subnet], services: Sequence[str]
    ) -> None:
        name = self._name
        # Endpoint ENIs only answer; 443 in from the VPC is all they need, and no egress at all.
        sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            name=f"{name}-endpoints",
            description="AWS interface endpoints: HTTPS from inside the VPC only",
            vpc_id=vpc.id,
            tags=self._tagged(f"{name}-endpoints"),
            opts=self._opts(),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=sg.id,
            cidr_ipv4=self.vpc_cidr,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="HTTPS from the VPC",
            tags=self._tagged(f"{name}-endpoints-https"),
            opts=self._opts(),
        )
        for service in sorted(set(services)):
            role = service.replace(".", "-")
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{role}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[sg.id],
                tags=self._tagged(f"{name}-{role}"),
                opts=self._opts(),
            )
            self.endpoints.append(endpoint)
