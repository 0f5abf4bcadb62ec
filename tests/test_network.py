"""Network: subnet layout, AZ spread, NAT count, routes, endpoints, adopt mode."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from pydantic import ValidationError

from components.config import CreateVpc
from components.network import pick_zone, plan_subnets
from tests.support import cached_run, named, of_type, one, run_variant

SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"


@pytest.mark.parametrize(("prefix", "az_count"), list(itertools.product(range(16, 22), range(2, 7))))
def test_subnet_plan_is_disjoint_inside_the_vpc_and_large_enough(prefix: int, az_count: int) -> None:
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    plan = plan_subnets(str(vpc), az_count)
    cidrs = [ipaddress.IPv4Network(c) for c in plan.all()]
    assert len(cidrs) == 4 * az_count
    assert all(c.subnet_of(vpc) for c in cidrs)
    assert all(c.prefixlen <= 28 for c in cidrs)
    for a, b in itertools.combinations(cidrs, 2):
        assert not a.overlaps(b), (a, b)


def test_adding_an_az_never_moves_an_existing_subnet() -> None:
    small, large = plan_subnets("10.1.0.0/16", 2), plan_subnets("10.1.0.0/16", 6)
    for tier in ("private", "public", "nat", "firewall"):
        assert getattr(large, tier)[:2] == getattr(small, tier)


def test_subnet_plan_for_a_slash_16() -> None:
    plan = plan_subnets("10.30.0.0/16", 3)
    assert plan.private == ("10.30.0.0/19", "10.30.32.0/19", "10.30.64.0/19")
    assert plan.public == ("10.30.192.0/22", "10.30.196.0/22", "10.30.200.0/22")
    assert plan.nat == ("10.30.224.0/23", "10.30.226.0/23", "10.30.228.0/23")
    assert plan.firewall == ("10.30.240.0/23", "10.30.242.0/23", "10.30.244.0/23")


@pytest.mark.parametrize(("cidr", "az_count"), [("10.0.0.0/22", 2), ("10.0.0.0/16", 1), ("10.0.0.0/16", 7)])
def test_subnet_plan_refuses_what_cannot_work(cidr: str, az_count: int) -> None:
    with pytest.raises(ValueError, match=r"az_count|too small"):
        plan_subnets(cidr, az_count)


@pytest.mark.parametrize("cidr", ["10.0.0.0/15", "10.0.0.0/22"])
def test_config_refuses_vpc_cidrs_outside_16_to_21(cidr: str) -> None:
    with pytest.raises(ValidationError, match="/16 to /21"):
        CreateVpc(cidr=cidr)


def test_pick_zone_explains_a_short_region() -> None:
    assert pick_zone(["us-west-1c", "us-west-1b"], 0, 2) == "us-west-1b"
    with pytest.raises(ValueError, match="only 2 availability zones"):
        pick_zone(["us-west-1b", "us-west-1c"], 0, 3)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_private_subnets_spread_over_distinct_azs_inside_the_vpc(stack: str) -> None:
    result = cached_run(stack, preview=False)
    vpc = ipaddress.IPv4Network(one(result, "aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    private = [s for s in of_type(result, SUBNET) if "-private-" in s.name]
    zones = {s.inputs["availabilityZone"] for s in private}
    assert len(private) >= 2
    assert len(zones) == len(private)
    cidrs = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in of_type(result, SUBNET)]
    assert all(c.subnet_of(vpc) for c in cidrs)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(cidrs, 2))
    assert result.outputs["availabilityZones"] == sorted(zones)


def test_zones_eks_refuses_are_skipped(tmp_path) -> None:
    # us-east-1's use1-az3 is "us-east-1c" in the fake cloud; EKS cannot place its control plane there.
    result = run_variant(tmp_path, "dev", {"network": {"az_count": 3, "interface_endpoints": []}})
    zones = {s.inputs["availabilityZone"] for s in of_type(result, SUBNET)}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1d"}


def test_subnet_tags_let_kubernetes_find_load_balancer_subnets() -> None:
    result = cached_run("prod", preview=False)
    cluster_tag = "kubernetes.io/cluster/lsdp-prod"
    for subnet in of_type(result, SUBNET):
        tags = subnet.inputs["tags"]
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
        if "-private-" in subnet.name:
            assert tags["kubernetes.io/role/internal-elb"] == "1"
            assert tags[cluster_tag] == "shared"
        elif "-public-" in subnet.name:
            assert tags["kubernetes.io/role/elb"] == "1"
            assert tags[cluster_tag] == "shared"
        else:  # NAT and firewall subnets must never receive load balancers
            assert not any(k.startswith("kubernetes.io/") for k in tags)


@pytest.mark.parametrize(("stack", "nats"), [("dev", 1), ("staging", 1), ("prod", 3)])
def test_nat_gateways_per_az_unless_single(stack: str, nats: int) -> None:
    result = cached_run(stack, preview=False)
    gateways = of_type(result, "aws:ec2/natGateway:NatGateway")
    assert len(gateways) == nats
    assert len(of_type(result, "aws:ec2/eip:Eip")) == nats
    nat_subnets = {s.name + "-id" for s in of_type(result, SUBNET) if "-nat-" in s.name}
    assert {g.inputs["subnetId"] for g in gateways} <= nat_subnets


def test_without_firewall_private_subnets_route_to_the_nat_of_their_az(tmp_path) -> None:
    result = run_variant(
        tmp_path,
        "dev",
        {"network": {"az_count": 3, "single_nat_gateway": False, "interface_endpoints": []}},
    )
    assert not of_type(result, "aws:networkfirewall/firewall:Firewall")
    assert not [s for s in of_type(result, SUBNET) if "-firewall-" in s.name]
    for i in range(3):
        route = named(result, f"lsdp-dev-egress-private-{i}-default")
        assert route.inputs["routeTableId"] == f"lsdp-dev-net-private-{i}-id"
        assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
        assert route.inputs["natGatewayId"] == f"lsdp-dev-net-nat-{i}-id"


def test_single_nat_gateway_serves_every_az() -> None:
    result = cached_run("dev", preview=False)
    targets = {
        r.inputs["natGatewayId"]
        for r in of_type(result, ROUTE)
        if r.name.startswith("lsdp-dev-egress-private-")
    }
    assert targets == {"lsdp-dev-net-nat-0-id"}


def test_s3_gateway_endpoint_on_private_route_tables() -> None:
    result = cached_run("prod", preview=False)
    s3 = named(result, "lsdp-prod-net-s3")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert s3.inputs["serviceName"] == "com.amazonaws.us-east-2.s3"
    assert sorted(s3.inputs["routeTableIds"]) == [f"lsdp-prod-net-private-{i}-id" for i in range(3)]


def test_interface_endpoints_use_private_dns_and_accept_https_from_the_vpc_only() -> None:
    result = cached_run("prod", preview=False)
    interface = [
        e
        for e in of_type(result, "aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs.get("vpcEndpointType") == "Interface"
    ]
    services = {e.inputs["serviceName"] for e in interface}
    assert services == {f"com.amazonaws.us-east-2.{s}" for s in ("ecr.api", "ecr.dkr", "sts", "logs", "eks")}
    assert all(e.inputs["privateDnsEnabled"] is True for e in interface)
    assert all(e.inputs["securityGroupIds"] == ["lsdp-prod-net-endpoints-id"] for e in interface)

    sg = named(result, "lsdp-prod-net-endpoints")
    assert "ingress" not in sg.inputs
    assert "egress" not in sg.inputs
    rules = [
        r
        for r in of_type(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.startswith("lsdp-prod-net-")
    ]
    assert [(r.inputs["cidrIpv4"], r.inputs["fromPort"], r.inputs["toPort"]) for r in rules] == [
        ("10.30.0.0/16", 443.0, 443.0)
    ]


def test_dev_has_no_interface_endpoints() -> None:
    result = cached_run("dev", preview=False)
    kinds = [e.inputs["vpcEndpointType"] for e in of_type(result, "aws:ec2/vpcEndpoint:VpcEndpoint")]
    assert kinds == ["Gateway"]


def test_adopted_vpc_creates_no_network_resources(tmp_path) -> None:
    existing = {
        "mode": "existing",
        "vpc_id": "vpc-0123456789abcdef0",
        "vpc_cidr": "10.99.0.0/16",
        "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
        "public_subnet_ids": ["subnet-0bbbbbbbbbbbbbbb1"],
    }
    for preview in (True, False):
        result = run_variant(tmp_path, "dev", {"network": existing}, preview=preview)
        network = one(result, "langsmith:infra:Network")
        assert not [r for r in result.resources if r.parent == network.urn]
        assert result.outputs["vpcId"] == "vpc-0123456789abcdef0"
        assert result.outputs["privateSubnetIds"] == existing["private_subnet_ids"]
        assert result.outputs["publicSubnetIds"] == existing["public_subnet_ids"]
        cluster = one(result, "aws:eks/cluster:Cluster")
        assert cluster.inputs["vpcConfig"]["subnetIds"] == existing["private_subnet_ids"]
        sg = one(result, "aws:ec2/securityGroup:SecurityGroup")
        assert sg.inputs["vpcId"] == "vpc-0123456789abcdef0"


def test_s3_gateway_endpoint_admits_only_ecr_layers_and_the_stacks_buckets(tmp_path) -> None:
    import json

    result = cached_run("prod", preview=False)
    policy = json.loads(named(result, "lsdp-prod-net-s3").inputs["policy"])
    # Gateway endpoint policies must name Principal "*"; the only bucket ECR needs is its layer bucket
    # (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html).
    assert policy["Statement"] == [
        {
            "Sid": "EcrImageLayers",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::prod-us-east-2-starport-layer-bucket/*",
        },
        # registry.k8s.io's layer bucket for the add-ons pulled from it (components.addon_egress).
        {
            "Sid": "StackBuckets",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [
                "arn:aws:s3:::prod-registry-k8s-io-us-east-2",
                "arn:aws:s3:::prod-registry-k8s-io-us-east-2/*",
            ],
        },
    ]
    network = {"az_count": 2, "interface_endpoints": [], "s3_buckets": ["acme-agent-artifacts"]}
    variant = run_variant(tmp_path, "dev", {"network": network})
    statements = json.loads(named(variant, "lsdp-dev-net-s3").inputs["policy"])["Statement"]
    assert statements[1]["Resource"] == [
        "arn:aws:s3:::acme-agent-artifacts",
        "arn:aws:s3:::acme-agent-artifacts/*",
        "arn:aws:s3:::prod-registry-k8s-io-us-east-1",
        "arn:aws:s3:::prod-registry-k8s-io-us-east-1/*",
    ]
    assert statements[0]["Resource"] == "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*"


@pytest.mark.parametrize("bucket", ["Upper", "a", "-dash", "has_underscore"])
def test_s3_bucket_names_follow_s3_naming_rules(bucket: str) -> None:
    with pytest.raises(ValidationError):
        CreateVpc(s3_buckets=[bucket])


def test_flow_logs_capture_all_traffic_with_a_scoped_role() -> None:
    import json

    result = cached_run("prod", preview=False)
    flow = one(result, "aws:ec2/flowLog:FlowLog").inputs
    assert (flow["vpcId"], flow["trafficType"], flow["logDestinationType"]) == (
        "lsdp-prod-net-vpc-id",
        "ALL",
        "cloud-watch-logs",
    )
    group = named(result, "lsdp-prod-net-flow-logs", "aws:cloudwatch/logGroup:LogGroup")
    assert flow["logDestination"].endswith(group.name)
    assert group.inputs["retentionInDays"] == 90
    role = named(result, "lsdp-prod-net-flow-logs", "aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    # https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html (confused-deputy guard)
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    write = json.loads(
        named(result, "lsdp-prod-net-flow-logs", "aws:iam/rolePolicy:RolePolicy").inputs["policy"]
    )
    assert all(r.startswith(flow["logDestination"]) for r in write["Statement"][0]["Resource"])


def test_default_security_group_is_adopted_and_emptied() -> None:
    result = cached_run("dev", preview=False)
    default = one(result, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default["vpcId"] == "lsdp-dev-net-vpc-id"
    assert "ingress" not in default
    assert "egress" not in default


def test_an_adopted_vpc_gets_no_flow_logs_or_default_group_changes(tmp_path) -> None:
    existing = {
        "mode": "existing",
        "vpc_id": "vpc-0123456789abcdef0",
        "vpc_cidr": "10.99.0.0/16",
        "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
    }
    result = run_variant(tmp_path, "dev", {"network": existing})
    assert not of_type(result, "aws:ec2/flowLog:FlowLog")
    assert not of_type(result, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not of_type(result, ROUTE)
