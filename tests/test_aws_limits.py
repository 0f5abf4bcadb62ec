"""AWS's and the AWS provider's own rules that Pulumi's mocks accept silently, encoded as tests.

Each rule cites its source. A stack that breaks one must fail at config time, naming the key, instead
of failing in the middle of a real `pulumi up` (or worse, succeeding and doing something else).
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest

from components.cluster import node_volumes
from components.config import MAX_STACK_TAGS
from components.load import config_warnings, parse_stack_config
from tests.support import cached_run, of_type, run_variant
from tests.test_config import ECR_IMAGE, NS, errors_of, one_error, raw

# terraform-provider-aws validateRdsIdentifier (the RDS DBInstanceIdentifier rules): lowercase letters,
# digits and hyphens, first a letter, no "--", no trailing hyphen. ElastiCache's ReplicationGroupId has
# the same shape (CreateReplicationGroup: "must begin with a letter ... cannot contain two consecutive
# hyphens"), at most 40 characters.
RDS_IDENTIFIER = re.compile(r"^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$")


def _rds_identifier_ok(value: str, limit: int) -> bool:
    return len(value) <= limit and RDS_IDENTIFIER.match(value) is not None


# --- The stack name prefixes RDS, ElastiCache and security group names ---------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("1dataplane", "must start with a letter"),
        ("data--plane", "must not contain '--'"),
        ("sg-dataplane", "must not start with 'sg-'"),  # EC2 CreateSecurityGroup: no "sg-" group names
    ],
)
def test_a_stack_name_aws_would_refuse_downstream_is_refused(name: str, why: str) -> None:
    error = one_error(raw(name=name))
    assert error.startswith(f"{NS}:name (got '{name}'): {why}")


@pytest.mark.parametrize("name", ["a", "lsdp-prod", "a1-b2-c3", "x" * 24])
def test_every_accepted_stack_name_gives_valid_store_identifiers(name: str) -> None:
    config = parse_stack_config("test", raw(name=name), set())
    # components.stores names them `<name>-postgres` and `<name>-redis`.
    assert _rds_identifier_ok(f"{config.name}-postgres", 63)
    assert _rds_identifier_ok(f"{config.name}-redis", 40)


# --- Node groups ---------------------------------------------------------------------------------


def test_a_node_group_name_must_leave_room_for_the_unique_suffix() -> None:
    # terraform-provider-aws aws_eks_node_group: node_group_name_prefix is
    # StringLenBetween(0, 63-id.UniqueIDSuffixLength), i.e. at most 37 characters, and the program
    # uses the prefix `<name>-`; so a name is at most 36.
    accepted = {"node_groups": [{"name": "n" * 36}]}
    parse_stack_config("test", raw(cluster=accepted), set())
    error = one_error(raw(cluster={"node_groups": [{"name": "n" * 37}]}))
    assert error.startswith(f"{NS}:cluster.node_groups[0].name")
    assert "36" in error


def test_the_program_never_asks_for_a_longer_node_group_prefix(tmp_path) -> None:
    cluster = {
        "endpoint": {"public": True, "public_cidrs": ["203.0.113.0/24"]},
        "node_groups": [{"name": "n" * 36, "instance_types": ["m6i.large"]}],
    }
    (group,) = of_type(run_variant(tmp_path, "dev", {"cluster": cluster}), "aws:eks/nodeGroup:NodeGroup")
    assert len(group.inputs["nodeGroupNamePrefix"]) <= 63 - 26


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ({"role": ""}, "the value of label 'role'"),  # EKS: values 1-63 characters
        ({"role": "v" * 64}, "the value of label 'role'"),
        ({"k" * 64: "x"}, "label key"),  # EKS: keys 1-63 characters, prefix included
        ({"team name": "x"}, "label key"),  # Kubernetes label syntax
        ({"role": "a/b"}, "the value of label 'role'"),
        ({"node-role.kubernetes.io/agents": "x"}, "prefix EKS reserves"),  # aws/containers-roadmap#1451
        ({"k8s.io/role": "x"}, "prefix EKS reserves"),
        ({"eks.amazonaws.com/nodegroup": "x"}, "prefix EKS reserves"),
    ],
)
def test_node_labels_follow_the_eks_api_rules(labels: dict[str, str], why: str) -> None:
    # CreateNodegroup `labels` (https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateNodegroup.html):
    # key and value lengths 1-63; EKS refuses reserved prefixes with InvalidParameterException, after
    # the control plane has already been created.
    error = one_error(raw(cluster={"node_groups": [{"name": "default", "labels": labels}]}))
    assert error.startswith(f"{NS}:cluster.node_groups[0].labels")
    assert why in error


def test_ordinary_node_labels_are_accepted() -> None:
    labels = {"role": "agents", "example.com/team": "platform_1", "tier": "A.b-c"}
    parse_stack_config("test", raw(cluster={"node_groups": [{"name": "default", "labels": labels}]}), set())


@pytest.mark.parametrize(
    ("ami_type", "expected"),
    [
        ("AL2023_x86_64_STANDARD", [("/dev/xvda", 80)]),
        ("AL2023_ARM_64_NVIDIA", [("/dev/xvda", 80)]),
        # Bottlerocket: /dev/xvda is the OS volume, /dev/xvdb the data volume that holds images and pod
        # storage (https://github.com/bottlerocket-os/bottlerocket#default-volumes).
        ("BOTTLEROCKET_x86_64", [("/dev/xvda", None), ("/dev/xvdb", 80)]),
        ("BOTTLEROCKET_ARM_64_NVIDIA", [("/dev/xvda", None), ("/dev/xvdb", 80)]),
    ],
)
def test_disk_size_goes_to_the_volume_that_holds_pod_storage(
    ami_type: str, expected: list[tuple[str, int | None]]
) -> None:
    assert node_volumes(ami_type, 80) == expected


def test_a_bottlerocket_group_sizes_and_encrypts_its_data_volume(tmp_path) -> None:
    cluster = {
        "endpoint": {"public": True, "public_cidrs": ["203.0.113.0/24"]},
        "node_groups": [
            {
                "name": "br",
                "ami_type": "BOTTLEROCKET_ARM_64",
                "instance_types": ["m7g.large"],
                "disk_size_gib": 80,
            }
        ],
    }
    result = run_variant(tmp_path, "dev", {"cluster": cluster})
    (template,) = of_type(result, "aws:ec2/launchTemplate:LaunchTemplate")
    mappings = {m["deviceName"]: m["ebs"] for m in template.inputs["blockDeviceMappings"]}
    assert mappings["/dev/xvdb"]["volumeSize"] == 80
    assert "volumeSize" not in mappings["/dev/xvda"]  # the OS volume keeps its snapshot's size
    assert all(ebs["encrypted"] == "true" for ebs in mappings.values())


# --- Tags ------------------------------------------------------------------------------------------


def test_no_more_tags_than_aws_allows_once_the_program_adds_its_own() -> None:
    # AWS: at most 50 user tags per resource
    # (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html#tag-conventions).
    tags = {"owner": "me", "cost-center": "cc-1"}
    tags |= {f"t{i}": "x" for i in range(MAX_STACK_TAGS - len(tags))}
    parse_stack_config("test", raw(tags=tags), set())
    error = one_error(raw(tags={**tags, "one-more": "x"}))
    assert error.startswith(f"{NS}:tags")
    assert "at most 44" in error


# --- RDS storage autoscaling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allocated", "ceiling", "ok"), [(100, 100, False), (100, 109, False), (100, 110, True)]
)
def test_the_storage_ceiling_is_at_least_ten_percent_above_the_allocation(
    allocated: int, ceiling: int, ok: bool
) -> None:
    # RDS CreateDBInstance: InvalidParameterCombination "Max storage size must be greater than storage
    # size" / "The maximum allocated storage must be increased by at least 10 percent".
    stores = {
        "mode": "managed",
        "postgres": {"allocated_storage_gib": allocated, "max_allocated_storage_gib": ceiling},
    }
    if ok:
        parse_stack_config("test", raw(stores=stores), set())
        return
    error = one_error(raw(stores=stores))
    assert error.startswith(f"{NS}:stores.postgres.max_allocated_storage_gib (got {ceiling})")
    assert "at least 110" in error


def test_raising_only_the_allocation_past_the_default_ceiling_is_caught() -> None:
    # The default ceiling is 100 GiB: allocating 100 without raising it used to be silently sent as
    # max == allocated, which RDS refuses at create time.
    error = one_error(raw(stores={"mode": "managed", "postgres": {"allocated_storage_gib": 100}}))
    assert error.startswith(f"{NS}:stores.postgres.max_allocated_storage_gib (got 100)")


# --- Secrets in config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cluster", {"access": {"deployer_role_arn": "TopSecretValue99"}}),
        ("langsmith", {"url": "https://user:S3cretPassw0rd@ls.example.com"}),
        ("name", "hunter2"),
    ],
)
def test_a_secret_on_a_plain_key_is_refused_and_never_echoed(key: str, value: Any) -> None:
    # The program would use the decrypted value in plaintext (names, tags, plan, outputs); refusing is
    # the only way not to unwrap it. Whatever it holds, valid or not, is never repeated.
    text = value if isinstance(value, str) else json.dumps(value)
    config = raw(**{key: text})
    errors = errors_of(config, {f"{NS}:{key}"})
    assert [e.strip().split(" ")[0].rstrip(":") for e in errors] == [f"{NS}:{key}"]
    assert "is stored as a secret" in errors[0]
    for secret in ("TopSecretValue99", "S3cretPassw0rd", "hunter2"):
        assert secret not in "\n".join(errors)


# --- Warnings for what the program cannot set up ----------------------------------------------------


def test_private_access_from_outside_the_vpc_warns_about_the_return_route() -> None:
    # The endpoint ENIs sit in the private subnets; their route tables send everything outside the VPC
    # to the NAT gateway or firewall, so a peered/VPN source needs a route the program does not create.
    outside = parse_stack_config(
        "test", raw(cluster={"endpoint": {"private_access_cidrs": ["10.255.0.0/16"]}}), set()
    )
    (warning,) = [
        w for w in config_warnings(outside, datetime.date(2026, 1, 1)) if "private_access_cidrs" in w
    ]
    assert "10.255.0.0/16" in warning
    assert "route" in warning
    inside = parse_stack_config(
        "test", raw(cluster={"endpoint": {"private_access_cidrs": ["10.0.8.0/24"]}}), set()
    )
    assert not [w for w in config_warnings(inside, datetime.date(2026, 1, 1)) if "private_access_cidrs" in w]


def test_a_bastion_in_an_adopted_vpc_warns_about_session_manager_endpoints() -> None:
    network = {
        "mode": "existing",
        "vpc_id": "vpc-0123456789abcdef0",
        "vpc_cidr": "10.0.0.0/16",
        "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    }
    config = parse_stack_config("test", raw(network=network, cluster={"endpoint": {"bastion": {}}}), set())
    (warning,) = [w for w in config_warnings(config, datetime.date(2026, 1, 1)) if "bastion" in w]
    assert "ssm, ssmmessages, ec2messages" in warning


# --- Every name the program asks AWS for fits AWS's limit, even with the longest stack name -----------

# Pulumi auto-names a resource `<logical name>-<7 random characters>`
# (https://www.pulumi.com/docs/iac/concepts/resources/names/#autonaming), so the logical name has 8
# characters less than the API's limit. Limits: IAM CreateRole RoleName 64, CreateInstanceProfile 128,
# PutRolePolicy PolicyName 128; EC2 CreateLaunchTemplate 128, CreateSecurityGroup GroupName 255.
AUTONAME_LIMITS = {
    "aws:iam/role:Role": 64,
    "aws:iam/instanceProfile:InstanceProfile": 128,
    "aws:iam/rolePolicy:RolePolicy": 128,
    "aws:ec2/launchTemplate:LaunchTemplate": 128,
    "aws:ec2/securityGroup:SecurityGroup": 255,
}
# Names the program sets itself: Network Firewall names 1-128 (CreateFirewall), EKS cluster names 1-100
# (CreateCluster), RDS identifiers 63, ElastiCache replication group ids 40.
EXPLICIT_LIMITS = {
    ("aws:networkfirewall/firewall:Firewall", "name"): 128,
    ("aws:networkfirewall/firewallPolicy:FirewallPolicy", "name"): 128,
    ("aws:networkfirewall/ruleGroup:RuleGroup", "name"): 128,
    ("aws:eks/cluster:Cluster", "name"): 100,
    ("aws:rds/instance:Instance", "identifier"): 63,
    ("aws:elasticache/replicationGroup:ReplicationGroup", "replicationGroupId"): 40,
}


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_name_fits_with_the_longest_stack_name(tmp_path, stack: str) -> None:
    longest = "n" * 24
    result = run_variant(tmp_path, stack, {"name": longest})
    checked = 0
    for r in result.resources:
        limit = AUTONAME_LIMITS.get(r.type)
        if limit is not None and "name" not in r.inputs and "namePrefix" not in r.inputs:
            assert len(r.name) + 8 <= limit, f"{r.type} {r.name}: auto-name exceeds {limit}"
            checked += 1
        for (type_, field), limit in EXPLICIT_LIMITS.items():
            if r.type == type_:
                assert len(r.inputs[field]) <= limit, f"{r.type} {r.inputs[field]} exceeds {limit}"
                checked += 1
    assert checked >= 10


# --- Hostile shapes: one clear report, never a traceback ---------------------------------------------


@pytest.mark.parametrize("network", ["create", "null", [], ["create"], {"mode": ["x"]}])
def test_a_network_that_is_not_a_mapping_is_a_config_error(network: Any) -> None:
    # It used to reach `value.mode` in the union's discriminator and crash the program.
    error = one_error(raw(network=network if isinstance(network, str) else json.dumps(network)))
    assert error.startswith(f"{NS}:network ")
    assert "must be a mapping whose 'mode' is 'create'" in error


@pytest.mark.parametrize("destination", [None, 5, "ghcr.io"])
def test_an_extra_destination_that_is_not_a_mapping_names_the_two_shapes(destination: Any) -> None:
    network = {"egress": {"mode": "network-firewall", "extra_destinations": [destination]}}
    error = one_error(raw(network=network, listener_image=ECR_IMAGE))
    assert error.startswith(f"{NS}:network.egress.extra_destinations[0]")
    assert "must have either a 'domain' or a 'cidr' key" in error


def test_a_size_rule_stays_quiet_when_a_bound_it_compares_with_is_invalid() -> None:
    group = {"name": "a", "min_size": 5, "desired_size": 1, "max_size": 0}
    errors = errors_of(raw(cluster={"node_groups": [group]}))
    assert [e.strip().split(" ")[0] for e in errors] == [f"{NS}:cluster.node_groups[0].max_size"]


# --- Nodes boot only once they have a way out -----------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "staging", "dev"])
def test_node_groups_wait_for_the_routes_and_endpoints_they_need(stack: str) -> None:
    # A node's first minutes need the EC2 API (VPC CNI), STS (IRSA) and ECR (images): through the
    # private default route (NAT or firewall endpoint) or the VPC endpoints. A Network Firewall takes
    # minutes to create and the route to it waits for it, so without these dependencies the nodes of a
    # firewall stack come up with nowhere to send those calls, and CoreDNS/EBS CSI (which wait for
    # healthy pods) can time out on the first `pulumi up`.
    result = cached_run(stack, preview=True)
    needed = {
        r.urn
        for r in result.resources
        if r.type == "aws:ec2/vpcEndpoint:VpcEndpoint"
        or (r.type == "aws:ec2/route:Route" and "-egress-" in r.name)
    }
    assert needed
    for group in of_type(result, "aws:eks/nodeGroup:NodeGroup"):
        assert needed <= set(group.dependencies), group.name


@pytest.mark.parametrize(
    "admins",
    [
        ["arn:aws:iam::123456789012:role/team-a/admin", "arn:aws:iam::123456789012:role/team-b/admin"],
        ["arn:aws:iam::123456789012:role/admin", "arn:aws:iam::123456789012:user/admin"],
        [
            "arn:aws:iam::123456789012:role/" + "x" * 40 + "-one",
            "arn:aws:iam::123456789012:role/" + "x" * 40 + "-two",
        ],
    ],
)
def test_two_principals_whose_access_entries_would_share_a_name_are_refused(admins: list[str]) -> None:
    # Two resources of one type and name are a duplicate URN: the engine stops the whole run.
    error = one_error(raw(cluster={"admin_principal_arns": admins}))
    assert error.startswith(f"{NS}:cluster.admin_principal_arns[1]")
    assert "same access-entry resource name" in error


# --- Network Firewall rule-group capacity ------------------------------------------------------------


def test_domain_list_capacity_counts_a_unit_per_protocol_on_top() -> None:
    # (domains + 1) x protocols: 99 HTTP-only domains fill a 100-unit group, the 100th fails with
    # "StatefulRules capacity exceeded" (https://cloudnetworks.io/2021-09-22-suricata-notes).
    from components.egress import MAX_FIREWALL_DOMAINS, RULE_GROUP_CAPACITY, domain_list_capacity

    assert domain_list_capacity(MAX_FIREWALL_DOMAINS) <= RULE_GROUP_CAPACITY
    assert domain_list_capacity(MAX_FIREWALL_DOMAINS + 1) > RULE_GROUP_CAPACITY


def test_an_allowlist_the_rule_group_cannot_hold_is_a_config_error_not_a_crash() -> None:
    from components.egress import MAX_FIREWALL_DOMAINS

    def network(extra: int) -> dict[str, Any]:
        domains = [{"domain": f"d{i}.example.com"} for i in range(extra)]
        return {"egress": {"mode": "network-firewall", "extra_destinations": domains}}

    # The control plane's hosts and the AWS API names come on top of the extra domains.
    fixed = len(
        parse_stack_config("test", raw(network=network(0), listener_image=ECR_IMAGE), set()).langsmith.hosts
    )
    fixed += 1  # ec2: the one default AWS API without a default interface endpoint
    parse_stack_config(
        "test", raw(network=network(MAX_FIREWALL_DOMAINS - fixed), listener_image=ECR_IMAGE), set()
    )
    error = one_error(raw(network=network(MAX_FIREWALL_DOMAINS - fixed + 1), listener_image=ECR_IMAGE))
    assert error.startswith(f"{NS}:network.egress.extra_destinations:")
    assert f"would hold {MAX_FIREWALL_DOMAINS + 1} domains" in error
