"""Control-plane egress: exact allowlists per LangSmith region, the firewall, and its routes."""

from __future__ import annotations

import pytest

from components.egress import RDS_TRUSTSTORE_DOMAIN, endpoint_for_subnet
from listener.regions import REGIONS
from tests.support import cached_run, named, of_type, one, run_variant
from tools import fake_cloud
from tools.harness import stack_names

EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
# In prod's own region: behind the firewall it needs no allowlist entry, so the domain sets below
# stay exactly what the test is about.
PROD_ECR_IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/listener@sha256:" + "a" * 64
RULE_GROUP = "aws:networkfirewall/ruleGroup:RuleGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"


def _sg_rules(result) -> set[tuple[str, float, float, str]]:
    return {
        (r.inputs["cidrIpv4"], r.inputs["fromPort"], r.inputs["toPort"], r.inputs["ipProtocol"])
        for r in of_type(result, EGRESS_RULE)
    }


# Nodes behind the firewall also pull prod's add-ons (components.addon_egress adds their registries):
# KEDA from GHCR, metrics-server and the autoscaler from registry.k8s.io, the load balancer controller
# from ECR Public, Envoy Gateway from Docker Hub.
PROD_REGISTRIES = {
    "ghcr.io",
    "pkg-containers.githubusercontent.com",
    "registry.k8s.io",
    "public.ecr.aws",
    "registry-1.docker.io",
    "auth.docker.io",
    "production.cloudflare.docker.com",
    "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
}


def _firewall_domains(result) -> list[str]:
    source = one(result, RULE_GROUP).inputs["ruleGroup"]["rulesSource"]["rulesSourceList"]
    assert source["generatedRulesType"] == "ALLOWLIST"
    assert sorted(source["targetTypes"]) == ["HTTP_HOST", "TLS_SNI"]
    return source["targets"]


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_security_group_mode_allows_exactly_the_published_ips_on_443(tmp_path, region: str) -> None:
    result = run_variant(tmp_path, "dev", {"langsmith": {"region": region}})
    expected = {(f"{ip}/32", 443.0, 443.0, "tcp") for ip in REGIONS[region].published_ips}
    assert _sg_rules(result) == expected
    sg = named(result, "lsdp-dev-egress-sg")
    assert "egress" not in sg.inputs
    assert "ingress" not in sg.inputs
    assert {r.inputs["securityGroupId"] for r in of_type(result, EGRESS_RULE)} == {"lsdp-dev-egress-sg-id"}
    assert not of_type(result, RULE_GROUP)
    allowlist = result.outputs["egressAllowlist"]
    assert allowlist["mode"] == "security-group"
    assert allowlist["controlPlaneHosts"] == list(REGIONS[region].hosts)
    assert {(r["cidr"], r["port"]) for r in allowlist["securityGroupRules"]} == {
        (f"{ip}/32", 443) for ip in REGIONS[region].published_ips
    }
    assert allowlist["firewallDomains"] == []


SECRETS_MANAGER = "secretsmanager.us-east-2.amazonaws.com"


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_firewall_mode_allows_exactly_the_control_plane_hosts(tmp_path, region: str) -> None:
    network = {"cidr": "10.30.0.0/16", "az_count": 3, "egress": {"mode": "network-firewall"}}
    result = run_variant(
        tmp_path,
        "prod",
        {"langsmith": {"region": region}, "network": network, "listener_image": PROD_ECR_IMAGE},
    )
    # The default interface endpoints cover ECR, STS, logs and EKS; EC2 (VPC CNI, EBS CSI) is not one.
    assert sorted(_firewall_domains(result)) == sorted(
        {
            *REGIONS[region].hosts,
            "ec2.us-east-2.amazonaws.com",
            *PROD_REGISTRIES,
            RDS_TRUSTSTORE_DOMAIN,
            SECRETS_MANAGER,
        }
    )
    assert not of_type(result, EGRESS_RULE)
    # The stores' groups admit clients; no group exists for egress, the firewall is the control.
    assert sorted(s.name for s in of_type(result, SG)) == [
        "lsdp-prod-net-endpoints",
        "lsdp-prod-stores-postgres",
        "lsdp-prod-stores-redis",
    ]
    assert result.outputs["egressAllowlist"]["firewallDomains"] == sorted(_firewall_domains(result))


def test_firewall_allows_aws_apis_by_name_only_without_their_endpoints(tmp_path) -> None:
    network = {"az_count": 2, "interface_endpoints": [], "egress": {"mode": "network-firewall"}}
    result = run_variant(tmp_path, "prod", {"network": network, "listener_image": PROD_ECR_IMAGE})
    assert set(_firewall_domains(result)) == {
        *REGIONS["aws-us"].hosts,
        "api.ecr.us-east-2.amazonaws.com",
        ".dkr.ecr.us-east-2.amazonaws.com",
        "sts.us-east-2.amazonaws.com",
        "ec2.us-east-2.amazonaws.com",
        *PROD_REGISTRIES,
        RDS_TRUSTSTORE_DOMAIN,  # the listener fetches the RDS CA bundle (managed stores)
        SECRETS_MANAGER,  # and reads the RDS master secret (sts is listed above already)
    }


def test_self_hosted_langsmith_uses_its_host_and_given_cidrs(tmp_path) -> None:
    langsmith = {
        "url": "https://langsmith.example.com",
        "egress_cidrs": ["203.0.113.0/28", "198.51.100.7/32"],
    }
    network = {
        "az_count": 2,
        "egress": {"mode": "both", "extra_destinations": [{"cidr": "192.0.2.10/32", "port": 8443}]},
    }
    result = run_variant(
        tmp_path, "prod", {"langsmith": langsmith, "network": network, "listener_image": PROD_ECR_IMAGE}
    )
    assert _sg_rules(result) == {
        ("203.0.113.0/28", 443.0, 443.0, "tcp"),
        ("198.51.100.7/32", 443.0, 443.0, "tcp"),
        ("192.0.2.10/32", 8443.0, 8443.0, "tcp"),
    }
    assert set(_firewall_domains(result)) == {
        "langsmith.example.com",
        "ec2.us-east-2.amazonaws.com",
        *PROD_REGISTRIES,
        RDS_TRUSTSTORE_DOMAIN,
        SECRETS_MANAGER,
    }


def test_prod_firewall_holds_hosts_and_extra_domains() -> None:
    result = cached_run("prod", preview=False)
    assert _firewall_domains(result) == sorted(
        {
            *REGIONS["aws-us"].hosts,
            "ghcr.io",
            "pkg-containers.githubusercontent.com",
            ".docker.io",
            "production.cloudflare.docker.com",
            "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
            "api.openai.com",
            "api.anthropic.com",
            "ec2.us-east-2.amazonaws.com",
            # Added for the add-ons; the rest of PROD_REGISTRIES is covered by the entries above.
            "registry.k8s.io",
            "public.ecr.aws",
            RDS_TRUSTSTORE_DOMAIN,  # where the listener's pod fetches the RDS CA bundle
            SECRETS_MANAGER,  # where it reads the RDS master secret (STS: the default interface endpoint)
        }
    )


def test_listeners_reach_secrets_manager_and_sts_by_name_or_through_their_endpoints(tmp_path) -> None:
    """A listener reading the RDS master secret calls STS (IRSA) and Secrets Manager in the region; each
    is allowed by name unless an interface endpoint keeps it in the VPC, even when the stack's own
    `aws_apis` leave STS out."""
    network = {
        "az_count": 2,
        "interface_endpoints": ["ecr.api", "ecr.dkr", "secretsmanager"],
        "egress": {"mode": "network-firewall", "aws_apis": ["ecr.api", "ecr.dkr", "ec2"]},
    }
    result = run_variant(tmp_path, "prod", {"network": network, "listener_image": PROD_ECR_IMAGE})
    assert result.outputs["egressAllowlist"]["awsServiceDomains"] == [
        "ec2.us-east-2.amazonaws.com",
        "sts.us-east-2.amazonaws.com",
    ]
    endpoints = {e.inputs["serviceName"] for e in of_type(result, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert "com.amazonaws.us-east-2.secretsmanager" in endpoints
    generated = run_variant(
        tmp_path,
        "prod",
        {
            "network": network,
            "listener_image": PROD_ECR_IMAGE,
            "stores": {"mode": "managed", "postgres": {"master_password": "generated"}},
        },
    )
    assert generated.outputs["egressAllowlist"]["awsServiceDomains"] == ["ec2.us-east-2.amazonaws.com"]


@pytest.mark.parametrize("stack", stack_names())
@pytest.mark.parametrize("preview", [True, False])
def test_no_security_group_anywhere_opens_the_internet(stack: str, preview: bool) -> None:
    result = cached_run(stack, preview=preview)
    for sg in of_type(result, SG):
        assert "egress" not in sg.inputs, sg.name
        assert "ingress" not in sg.inputs, sg.name
    for rule in result.resources:
        if rule.type.startswith("aws:vpc/securityGroup"):
            assert rule.inputs.get("cidrIpv4") != "0.0.0.0/0", rule.name
            assert rule.inputs.get("ipProtocol") != "-1", rule.name


def test_firewall_policy_is_strict_order_with_default_drop() -> None:
    result = cached_run("prod", preview=False)
    group = one(result, RULE_GROUP)
    assert group.inputs["type"] == "STATEFUL"
    assert group.inputs["ruleGroup"]["statefulRuleOptions"]["ruleOrder"] == "STRICT_ORDER"
    assert group.inputs["ruleGroup"]["ruleVariables"]["ipSets"][0]["ipSet"]["definitions"] == ["10.30.0.0/16"]
    policy = one(result, "aws:networkfirewall/firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]
    assert policy["statefulEngineOptions"]["ruleOrder"] == "STRICT_ORDER"
    assert "aws:drop_established" in policy["statefulDefaultActions"]
    assert policy["statelessDefaultActions"] == ["aws:forward_to_sfe"]
    assert (
        policy["statefulRuleGroupReferences"][0]["resourceArn"]
        == fake_cloud.outputs(RULE_GROUP, group.name, group.inputs, "us-east-2")["arn"]
    )


def test_firewall_sits_in_its_own_subnet_per_az() -> None:
    result = cached_run("prod", preview=False)
    firewall = one(result, "aws:networkfirewall/firewall:Firewall")
    assert sorted(m["subnetId"] for m in firewall.inputs["subnetMappings"]) == [
        f"lsdp-prod-net-firewall-{i}-id" for i in range(3)
    ]
    subnets = {s.name: s.inputs["availabilityZone"] for s in of_type(result, "aws:ec2/subnet:Subnet")}
    assert len({subnets[f"lsdp-prod-net-firewall-{i}"] for i in range(3)}) == 3
    for i in range(3):
        assert subnets[f"lsdp-prod-net-firewall-{i}"] == subnets[f"lsdp-prod-net-private-{i}"]


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_firewall_routes_keep_each_az_symmetric(stack: str) -> None:
    result = cached_run(stack, preview=False)
    firewall = one(result, "aws:networkfirewall/firewall:Firewall")
    endpoints = {
        a["subnetId"]: a["endpointId"]
        for state in fake_cloud.outputs(firewall.type, firewall.name, firewall.inputs, "")[
            "firewallStatuses"
        ][0]["syncStates"]
        for a in state["attachments"]
    }
    routes = {r.name: r.inputs for r in of_type(result, "aws:ec2/route:Route")}
    private_cidrs = {
        s.name: s.inputs["cidrBlock"]
        for s in of_type(result, "aws:ec2/subnet:Subnet")
        if "-private-" in s.name
    }
    for i in range(3):
        endpoint = endpoints[f"{stack_prefix(stack)}-net-firewall-{i}-id"]
        out = routes[f"{stack_prefix(stack)}-egress-private-{i}-default"]
        assert out == {
            "routeTableId": f"{stack_prefix(stack)}-net-private-{i}-id",
            "destinationCidrBlock": "0.0.0.0/0",
            "vpcEndpointId": endpoint,
        }
        back = routes[f"{stack_prefix(stack)}-egress-return-{i}-via-firewall"]
        assert back == {
            "routeTableId": f"{stack_prefix(stack)}-net-nat-id",
            "destinationCidrBlock": private_cidrs[f"{stack_prefix(stack)}-net-private-{i}"],
            "vpcEndpointId": endpoint,
        }
        # The firewall subnet forwards to a NAT gateway; private subnets never bypass the firewall.
        assert "natGatewayId" in routes[f"{stack_prefix(stack)}-net-firewall-{i}-default"]
        private_table = f"{stack_prefix(stack)}-net-private-{i}-id"
        assert [r for r in routes.values() if r["routeTableId"] == private_table] == [out]


def stack_prefix(stack: str) -> str:
    return f"lsdp-{stack}"


def test_endpoint_lookup_matches_by_subnet_not_position() -> None:
    statuses = [
        {
            "sync_states": [
                {
                    "availability_zone": "b",
                    "attachments": [{"subnet_id": "subnet-b", "endpoint_id": "vpce-b"}],
                },
                {
                    "availability_zone": "a",
                    "attachments": [{"subnet_id": "subnet-a", "endpoint_id": "vpce-a"}],
                },
            ]
        }
    ]
    assert endpoint_for_subnet(statuses, "subnet-a") == "vpce-a"
    assert endpoint_for_subnet(statuses, "subnet-b") == "vpce-b"
    with pytest.raises(ValueError, match="subnet-c"):
        endpoint_for_subnet(statuses, "subnet-c")


def test_firewall_routes_are_unknown_not_wrong_in_preview() -> None:
    result = cached_run("prod", preview=True)
    route = named(result, "lsdp-prod-egress-private-0-default")
    assert type(route.inputs["vpcEndpointId"]).__name__ == "Unknown"


# --- Switching the egress mode is an update, not a collision ------------------------------------------

GHCR = [{"domain": "ghcr.io"}, {"domain": "pkg-containers.githubusercontent.com"}]
FIREWALL_TYPES = {
    "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/route:Route",
    "aws:networkfirewall/ruleGroup:RuleGroup",
    "aws:networkfirewall/firewallPolicy:FirewallPolicy",
    "aws:networkfirewall/firewall:Firewall",
    "aws:networkfirewall/loggingConfiguration:LoggingConfiguration",
    "aws:cloudwatch/logGroup:LogGroup",
}


def _mode_variant(tmp_path, mode: str):
    network = {
        "cidr": "10.10.0.0/16",
        "az_count": 2,
        "single_nat_gateway": True,
        "interface_endpoints": [],
        "egress": {"mode": mode, "extra_destinations": GHCR if mode != "security-group" else []},
    }
    (tmp_path / mode).mkdir()
    return run_variant(tmp_path / mode, "dev", {"network": network})


@pytest.mark.parametrize("target", ["network-firewall", "both"])
def test_switching_egress_mode_keeps_every_shared_resource_and_updates_the_default_routes(
    tmp_path, target: str
) -> None:
    from tools.plan import diff_plans

    before = _mode_variant(tmp_path, "security-group")
    after = _mode_variant(tmp_path, target)
    diff = diff_plans(before, after)
    types = {r.urn: r.type for r in [*before.resources, *after.resources]}

    # The private default routes are the same resources (same URN) whose target changes: EC2 updates
    # them with ReplaceRoute. Two differently named routes for 0.0.0.0/0 in one table would make the
    # switch fail, since CreateRoute refuses a second route to the same destination (RouteAlreadyExists).
    routes = [r for r in before.resources if r.name.startswith("lsdp-dev-egress-private-")]
    assert [r.name for r in routes] == [
        "lsdp-dev-egress-private-0-default",
        "lsdp-dev-egress-private-1-default",
    ]
    for route in routes:
        assert diff.changed[route.urn] == ("natGatewayId", "vpcEndpointId")
        assert route.urn not in diff.added + diff.removed
    # Nothing that exists in both modes is re-created: VPC, subnets, NAT, EKS keep their URNs.
    assert {types[u] for u in diff.added} <= FIREWALL_TYPES
    # Only the control-plane egress group can go (network-firewall alone has none).
    expected_removed = set() if target == "both" else {SG, EGRESS_RULE}
    assert {types[u] for u in diff.removed} == expected_removed
    # And every added route is new in its table: none targets a table's default the other mode had.
    added_routes = [r for r in after.resources if r.urn in diff.added and r.type == "aws:ec2/route:Route"]
    assert sorted(r.name for r in added_routes) == [
        "lsdp-dev-egress-return-0-via-firewall",
        "lsdp-dev-egress-return-1-via-firewall",
        "lsdp-dev-net-firewall-0-default",
        "lsdp-dev-net-firewall-1-default",
    ]


def test_switching_back_restores_the_nat_route_in_place(tmp_path) -> None:
    from tools.plan import diff_plans

    diff = diff_plans(_mode_variant(tmp_path, "network-firewall"), _mode_variant(tmp_path, "security-group"))
    changed_routes = [
        u for u in diff.changed if u.endswith(("-egress-private-0-default", "-egress-private-1-default"))
    ]
    assert len(changed_routes) == 2
    assert not [u for u in diff.added if "egress-private-" in u]


def test_firewall_logs_under_vendedlogs_and_prod_firewall_cannot_be_deleted() -> None:
    prod = cached_run("prod", preview=False)
    group = named(prod, "lsdp-prod-egress-alerts")
    # /aws/vendedlogs/ log groups need no per-firewall entry in the CloudWatch Logs resource policy,
    # whose 5,120-character limit otherwise breaks the logging configuration of later firewalls.
    assert group.inputs["name"] == "/aws/vendedlogs/network-firewall/lsdp-prod-egress/alert"
    assert one(prod, "aws:networkfirewall/firewall:Firewall").inputs["deleteProtection"] is True
    staging = cached_run("staging", preview=False)
    assert one(staging, "aws:networkfirewall/firewall:Firewall").inputs["deleteProtection"] is False


def test_add_on_apis_are_allowed_by_name_or_through_their_endpoints(tmp_path) -> None:
    apis = ["ecr.api", "ecr.dkr", "sts", "ec2", "elasticloadbalancing", "autoscaling", "logs"]
    network = {
        "az_count": 2,
        "interface_endpoints": ["ecr.api", "ecr.dkr", "sts", "logs", "elasticloadbalancing"],
        "egress": {"mode": "network-firewall", "aws_apis": apis},
    }
    result = run_variant(tmp_path, "prod", {"network": network, "listener_image": PROD_ECR_IMAGE})
    aws_domains = result.outputs["egressAllowlist"]["awsServiceDomains"]
    assert aws_domains == [
        "autoscaling.us-east-2.amazonaws.com",
        "ec2.us-east-2.amazonaws.com",
        SECRETS_MANAGER,
    ]
    endpoints = {e.inputs["serviceName"] for e in of_type(result, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert "com.amazonaws.us-east-2.elasticloadbalancing" in endpoints
