"""Each policy against a deliberately bad configuration and a good one, fed through
`policy.offline.evaluate` from real resources registered under the recording mocks."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pulumi.output import Unknown
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.config import REQUIRED_TAG_KEYS, ManagedStores, RdsPostgres
from components.stores import ManagedStores as ManagedStoresComponent
from components.stores import ManagedStoresArgs
from policy import policies
from policy.offline import PolicyViolation, evaluate
from policy.policies import POLICIES, ROLE_TAG, schema_has_tags
from tests.support import cached_run
from tools.harness import run_program, stack_names

ROOT = Path(__file__).resolve().parent.parent
DEV_TAGS = {"owner": "platform-team", "cost-center": "cc-1234", "environment": "dev"}
PROD_TAGS = {**DEV_TAGS, "environment": "prod"}
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def aws_opts() -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(provider=aws.Provider("aws", region="us-east-1"))


def found(program: Callable[[], None], policy: str, *, preview: bool = False) -> list[PolicyViolation]:
    result = run_program(program, preview=preview)
    return [v for v in evaluate(result.resources) if v.policy == policy]


def messages(violations: list[PolicyViolation]) -> str:
    return "\n".join(v.message for v in violations)


def sg(name: str, tags: dict[str, str] | None = None, **kwargs: Any) -> aws.ec2.SecurityGroup:
    return aws.ec2.SecurityGroup(name, vpc_id="vpc-1", tags=tags or DEV_TAGS, opts=aws_opts(), **kwargs)


def egress_rule(name: str, group: aws.ec2.SecurityGroup, **kwargs: Any) -> None:
    kwargs.setdefault("ip_protocol", "tcp")
    kwargs.setdefault("from_port", 443)
    kwargs.setdefault("to_port", 443)
    kwargs.setdefault("tags", DEV_TAGS)
    aws.vpc.SecurityGroupEgressRule(name, security_group_id=group.id, opts=aws_opts(), **kwargs)


def firewall(tags: dict[str, str] | None = None, **kwargs: Any) -> None:
    aws.networkfirewall.Firewall(
        "fw",
        firewall_policy_arn="arn:aws:network-firewall:us-east-1:123456789012:firewall-policy/p",
        vpc_id="vpc-1",
        subnet_mappings=[{"subnet_id": "subnet-1"}],
        tags=tags or DEV_TAGS,
        opts=aws_opts(),
        **kwargs,
    )


def eks(name: str = "cluster", tags: dict[str, str] | None = None, **vpc_config: Any) -> None:
    extra = {k: vpc_config.pop(k) for k in list(vpc_config) if k == "deletion_protection"}
    aws.eks.Cluster(
        name,
        role_arn="arn:aws:iam::123456789012:role/eks",
        vpc_config={"subnet_ids": ["subnet-1", "subnet-2"], **vpc_config},
        tags=tags or DEV_TAGS,
        opts=aws_opts(),
        **extra,
    )


def stores(is_prod: bool, config: ManagedStores | None = None) -> Callable[[], None]:
    def program() -> None:
        ManagedStoresComponent(
            "stores",
            ManagedStoresArgs(
                name_prefix="lsdp-test",
                vpc_id="vpc-1",
                private_subnet_ids=["subnet-1", "subnet-2"],
                client_security_group_ids=["sg-cluster"],
                config=config or ManagedStores(mode="managed"),
                is_prod=is_prod,
                tags=PROD_TAGS if is_prod else DEV_TAGS,
            ),
            opts=pulumi.ResourceOptions(providers={"aws": aws.Provider("aws", region="us-east-1")}),
        )

    return program


# --- no-open-security-group-egress -------------------------------------------------------------


OPEN_EGRESS_SHAPES: dict[str, Callable[[], None]] = {
    "inline egress": lambda: sg(
        "open", egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}]
    ),
    "egress rule ipv6": lambda: egress_rule("open", sg("g"), cidr_ipv6="::/0"),
    "legacy sg rule": lambda: aws.ec2.SecurityGroupRule(
        "open",
        type="egress",
        security_group_id=sg("g").id,
        protocol="tcp",
        from_port=443,
        to_port=443,
        cidr_blocks=["10.0.0.0/8", "0.0.0.0/0"],
        opts=aws_opts(),
    ),
}


@pytest.mark.parametrize("shape", sorted(OPEN_EGRESS_SHAPES))
@pytest.mark.parametrize("preview", [False, True])
def test_open_egress_is_refused_in_every_spelling(shape: str, preview: bool) -> None:
    violations = found(OPEN_EGRESS_SHAPES[shape], "no-open-security-group-egress", preview=preview)
    assert len(violations) == 1, violations
    assert "opens the data plane to the whole internet" in violations[0].message
    assert violations[0].urn.endswith("::open")
    assert violations[0].enforcement == "mandatory"


def test_specific_egress_passes() -> None:
    def program() -> None:
        egress_rule("cp", sg("g"), cidr_ipv4="34.59.65.97/32")
        sg(
            "inline",
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["10.0.0.0/16"]}],
        )

    assert found(program, "no-open-security-group-egress") == []


def firewall_rule(
    with_firewall: bool, group_role: str = "firewall-egress", **rule: Any
) -> Callable[[], None]:
    def program() -> None:
        if with_firewall:
            firewall()
        group = sg("nodes-egress", tags={**DEV_TAGS, ROLE_TAG: group_role})
        egress_rule("open", group, cidr_ipv4="0.0.0.0/0", **rule)

    return program


def test_open_egress_through_the_firewall_is_allowed_on_https() -> None:
    assert found(firewall_rule(True), "no-open-security-group-egress") == []
    assert found(firewall_rule(True), "no-open-security-group-egress", preview=True) == []


def test_firewall_tag_without_a_firewall_is_refused() -> None:
    assert "the stack has no network firewall" in messages(
        found(firewall_rule(False), "no-open-security-group-egress")
    )


def test_firewall_path_only_on_web_ports() -> None:
    violations = found(
        firewall_rule(True, ip_protocol="-1", from_port=None, to_port=None), "no-open-security-group-egress"
    )
    assert "only TCP 80 or 443" in messages(violations)


def test_open_egress_on_the_control_plane_group_is_refused_even_with_a_firewall() -> None:
    violations = found(
        firewall_rule(True, group_role="control-plane-egress"), "no-open-security-group-egress"
    )
    assert "on the control-plane egress group" in messages(violations)


# --- control-plane-egress-https-only -----------------------------------------------------------


def control_plane(**rule: Any) -> Callable[[], None]:
    def program() -> None:
        group = sg("control-plane", tags={**DEV_TAGS, ROLE_TAG: "control-plane-egress"})
        # The rule is untagged: it is recognised through its security group.
        egress_rule("cp-rule", group, cidr_ipv4="34.59.65.97/32", **rule)
        eks(endpoint_public_access=False)

    return program


@pytest.mark.parametrize(
    ("rule", "shown"),
    [
        ({"from_port": 80, "to_port": 80}, "tcp 80-80"),
        ({"from_port": 0, "to_port": 65535}, "tcp 0-65535"),
        ({"ip_protocol": "-1", "from_port": None, "to_port": None}, "all traffic"),
        ({"ip_protocol": "udp"}, "udp 443-443"),
    ],
)
def test_control_plane_egress_other_than_https_is_refused(rule: dict[str, Any], shown: str) -> None:
    violations = found(control_plane(**rule), "control-plane-egress-https-only")
    assert len(violations) == 1
    assert f"control-plane egress allows {shown}" in violations[0].message
    assert violations[0].urn.endswith("::cp-rule")


def test_control_plane_egress_on_https_passes() -> None:
    assert found(control_plane(), "control-plane-egress-https-only") == []
    assert found(control_plane(), "control-plane-egress-https-only", preview=True) == []


def test_a_cluster_without_a_recognisable_control_plane_group_is_refused() -> None:
    def untagged() -> None:
        egress_rule("cp-rule", sg("control-plane"), cidr_ipv4="34.59.65.97/32")
        eks(endpoint_public_access=False)

    violations = found(untagged, "control-plane-egress-https-only")
    assert len(violations) == 1
    assert f"tagged {ROLE_TAG}=control-plane-egress" in violations[0].message
    assert violations[0].urn.endswith("::cluster")

    def firewall_mode() -> None:
        firewall()
        eks(endpoint_public_access=False)

    assert found(firewall_mode, "control-plane-egress-https-only") == []


# --- eks-endpoint-restricted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vpc_config", "expected"),
    [
        ({"endpoint_public_access": True}, "public with no publicAccessCidrs"),
        ({}, "public with no publicAccessCidrs"),  # AWS's default is a public endpoint
        ({"endpoint_public_access": True, "public_access_cidrs": ["0.0.0.0/0"]}, "includes 0.0.0.0/0"),
        ({"public_access_cidrs": ["203.0.113.0/24", "0.0.0.0/0"]}, "includes 0.0.0.0/0"),
    ],
)
def test_open_eks_endpoint_is_refused(vpc_config: dict[str, Any], expected: str) -> None:
    violations = found(lambda: eks(**vpc_config), "eks-endpoint-restricted")
    assert len(violations) == 1
    assert expected in violations[0].message


@pytest.mark.parametrize(
    "vpc_config",
    [
        {"endpoint_public_access": False, "endpoint_private_access": True},
        {"endpoint_public_access": True, "public_access_cidrs": ["203.0.113.0/24"]},
    ],
)
def test_private_or_restricted_eks_endpoint_passes(vpc_config: dict[str, Any]) -> None:
    assert found(lambda: eks(**vpc_config), "eks-endpoint-restricted") == []


# --- rds-encrypted-and-private / elasticache-encrypted -----------------------------------------


def rds(**kwargs: Any) -> None:
    aws.rds.Instance(
        "db",
        engine="postgres",
        instance_class="db.t4g.micro",
        allocated_storage=20,
        tags=DEV_TAGS,
        opts=aws_opts(),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"storage_encrypted": False}, ["storageEncrypted must be true"]),
        ({}, ["storageEncrypted must be true"]),  # AWS's default is unencrypted
        ({"storage_encrypted": True, "publicly_accessible": True}, ["publiclyAccessible must be false"]),
    ],
)
def test_unencrypted_or_public_rds_is_refused(kwargs: dict[str, Any], expected: list[str]) -> None:
    violations = found(lambda: rds(**kwargs), "rds-encrypted-and-private")
    assert [v.message.split(":")[0] for v in violations] == expected


def replication_group(**kwargs: Any) -> None:
    aws.elasticache.ReplicationGroup(
        "redis", description="r", node_type="cache.t4g.micro", tags=DEV_TAGS, opts=aws_opts(), **kwargs
    )


def test_unencrypted_redis_is_refused() -> None:
    violations = found(
        lambda: replication_group(at_rest_encryption_enabled=True, transit_encryption_enabled=False),
        "elasticache-encrypted",
    )
    assert [v.message.split(":")[0] for v in violations] == ["transitEncryptionEnabled must be true"]
    violations = found(replication_group, "elasticache-encrypted")
    assert {v.message.split(":")[0] for v in violations} == {
        "atRestEncryptionEnabled must be true",
        "transitEncryptionEnabled must be true",
    }


@pytest.mark.parametrize("is_prod", [False, True])
@pytest.mark.parametrize("preview", [False, True])
def test_the_stores_component_passes_every_policy(is_prod: bool, preview: bool) -> None:
    result = run_program(stores(is_prod), preview=preview)
    assert evaluate(result.resources) == []


# --- deletion-protection-in-prod ---------------------------------------------------------------


def test_prod_database_without_deletion_protection_is_refused() -> None:
    config = ManagedStores(mode="managed", postgres=RdsPostgres(deletion_protection=False))
    violations = found(stores(True, config), "deletion-protection-in-prod")
    assert len(violations) == 1
    assert violations[0].urn.endswith("::stores-postgres")
    assert "deletionProtection must be true in prod" in violations[0].message
    # Outside prod the same choice is allowed.
    assert found(stores(False, config), "deletion-protection-in-prod") == []


def test_prod_cluster_without_deletion_protection_is_refused() -> None:
    def unprotected() -> None:
        eks(tags=PROD_TAGS, endpoint_public_access=False)

    def protected() -> None:
        eks(tags=PROD_TAGS, endpoint_public_access=False, deletion_protection=True)

    assert "deletionProtection must be true in prod" in messages(
        found(unprotected, "deletion-protection-in-prod")
    )
    assert found(protected, "deletion-protection-in-prod") == []


def test_prod_firewall_without_delete_protection_is_refused() -> None:
    assert "deleteProtection must be true in prod" in messages(
        found(lambda: firewall(PROD_TAGS), "deletion-protection-in-prod")
    )
    assert found(lambda: firewall(PROD_TAGS, delete_protection=True), "deletion-protection-in-prod") == []
    assert found(lambda: firewall(DEV_TAGS), "deletion-protection-in-prod") == []


# --- egress-enforced-outside-dev / egress-not-enforced-in-dev ----------------------------------


@pytest.mark.parametrize("environment", ["staging", "prod"])
@pytest.mark.parametrize("preview", [False, True])
def test_security_group_egress_alone_fails_outside_dev(environment: str, preview: bool) -> None:
    # Security groups are allow-lists that add up, and managed nodes also carry the EKS cluster
    # security group with its allow-all egress rule: a control-plane group alone enforces nothing.
    tags = {**DEV_TAGS, "environment": environment}

    def sg_only() -> None:
        group = sg("control-plane", tags={**tags, ROLE_TAG: "control-plane-egress"})
        egress_rule("cp-rule", group, cidr_ipv4="34.59.65.97/32", tags=tags)
        eks(tags=tags, endpoint_public_access=False, deletion_protection=True)

    violations = found(sg_only, "egress-enforced-outside-dev", preview=preview)
    assert [(v.enforcement, v.urn.rsplit("::", 1)[-1]) for v in violations] == [("mandatory", "cluster")]
    assert "egress is not enforced" in violations[0].message
    assert found(sg_only, "egress-not-enforced-in-dev", preview=preview) == []

    def with_firewall() -> None:
        sg_only()
        firewall(tags, delete_protection=True)

    assert found(with_firewall, "egress-enforced-outside-dev", preview=preview) == []


def test_security_group_egress_in_dev_is_a_warning_only() -> None:
    dev_sg_only = control_plane()

    (warning,) = found(dev_sg_only, "egress-not-enforced-in-dev")
    assert warning.enforcement == "advisory"
    assert found(dev_sg_only, "egress-enforced-outside-dev") == []


def test_the_plan_of_a_staging_stack_on_security_group_egress_fails(tmp_path) -> None:
    from tests.support import run_variant

    network = {"cidr": "10.41.0.0/16", "az_count": 2, "single_nat_gateway": True}
    result = run_variant(tmp_path, "example-cluster-per-workspace", {"network": network})
    mandatory = [v.policy for v in evaluate(result.resources) if v.enforcement == "mandatory"]
    assert mandatory == ["egress-enforced-outside-dev"]


# --- required-tags -----------------------------------------------------------------------------


def test_required_tags_match_the_stack_config() -> None:
    assert set(policies.REQUIRED_TAGS) == {*REQUIRED_TAG_KEYS, "environment"}


@pytest.mark.parametrize("missing", ["owner", "cost-center", "environment"])
def test_a_taggable_resource_missing_a_required_tag_is_refused(missing: str) -> None:
    tags = {k: v for k, v in DEV_TAGS.items() if k != missing}
    violations = found(lambda: sg("g", tags=tags), "required-tags")
    assert len(violations) == 1
    assert f"missing required tag(s) {missing}" in violations[0].message


def test_untagged_and_empty_tags_are_refused_untaggable_types_are_not() -> None:
    def program() -> None:
        aws.rds.SubnetGroup("untagged", subnet_ids=["subnet-1"], opts=aws_opts())
        sg("empty", tags={**DEV_TAGS, "owner": ""})
        # No `tags` in this resource's schema: nothing to require.
        aws.ec2.RouteTableAssociation("assoc", route_table_id="rtb-1", subnet_id="subnet-1", opts=aws_opts())

    violations = found(program, "required-tags")
    assert sorted(v.urn.rsplit("::", 1)[1] for v in violations) == ["empty", "untagged"]


@pytest.mark.parametrize(
    ("resource_type", "taggable"),
    [
        ("aws:rds/instance:Instance", True),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", True),
        ("aws:ec2/routeTableAssociation:RouteTableAssociation", False),
        ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", False),
        ("aws:nosuchservice/thing:Thing", None),
        ("kubernetes:core/v1:ConfigMap", None),
    ],
)
def test_taggable_comes_from_the_provider_schema(resource_type: str, taggable: bool | None) -> None:
    assert schema_has_tags(resource_type) is taggable


def test_unknown_types_are_judged_by_whether_they_set_tags() -> None:
    assert policies.missing_tag_violations("aws:nosuchservice/thing:Thing", {}) == []
    assert policies.missing_tag_violations("aws:nosuchservice/thing:Thing", {"tags": {"owner": "x"}}) != []


# --- kubernetes-explicit-provider --------------------------------------------------------------


def test_kubernetes_resources_on_the_default_provider_are_refused() -> None:
    def program() -> None:
        k8s.core.v1.ConfigMap("implicit", metadata={"name": "implicit", "namespace": "agents"})
        explicit = k8s.Provider("cluster", kubeconfig="{}")
        k8s.core.v1.ConfigMap(
            "explicit",
            metadata={"name": "explicit", "namespace": "agents"},
            opts=pulumi.ResourceOptions(provider=explicit),
        )

    violations = found(program, "kubernetes-explicit-provider")
    assert [v.urn.rsplit("::", 1)[1] for v in violations] == ["implicit"]
    assert "default Kubernetes provider" in violations[0].message


# --- robustness of the pure helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        Unknown(),
        UNKNOWN_BOOLEAN_VALUE,
        {**SECRET_SIG, "value": Unknown()},
    ],
)
def test_unknown_values_skip_checks_instead_of_guessing(value: Any) -> None:
    props = {"storageEncrypted": value, "publiclyAccessible": value}
    assert policies.rds_violations("aws:rds/instance:Instance", props) == []
    proxied = unknown_checking_proxy(
        {"storageEncrypted": UNKNOWN_BOOLEAN_VALUE, "tags": UNKNOWN_STRING_VALUE}
    )
    assert policies.rds_violations("aws:rds/instance:Instance", proxied) == []
    assert policies.missing_tag_violations("aws:rds/instance:Instance", proxied) == []
    assert policies.deletion_protection_violations("aws:rds/instance:Instance", proxied) == []


def test_wire_form_values_are_read_through() -> None:
    secret_false = {**SECRET_SIG, "value": False}
    assert policies.rds_violations("aws:rds/instance:Instance", {"storageEncrypted": secret_false}) != []
    assert policies.rds_violations("aws:rds/instance:Instance", {"storageEncrypted": "true"}) == []
    assert policies.number(443.0) == 443
    assert policies.lookup({"a": [{"b": {**SECRET_SIG, "value": 1.0}}]}, "a", 0, "b") == 1.0
    assert policies.lookup({"a": "x"}, "a", "b") is None
    assert policies.entries({**SECRET_SIG, "value": ["0.0.0.0/0"]}) == ["0.0.0.0/0"]
    assert policies.is_open_cidr("0.0.0.0/0")
    assert policies.is_open_cidr("::/0")
    assert not policies.is_open_cidr("not a cidr")
    assert not policies.is_open_cidr(Unknown())


def test_unknown_tags_on_a_prod_looking_resource_do_not_crash_the_stack_policies() -> None:
    def program() -> None:
        group = sg("g", tags={**DEV_TAGS, ROLE_TAG: "control-plane-egress"})
        egress_rule("r", group, cidr_ipv4=group.id.apply(lambda _: "10.0.0.0/8"))

    result = run_program(program, preview=True)
    assert evaluate(result.resources) == []


# --- the pack and the shipped stacks -------------------------------------------------------------


def test_policy_names_are_unique_and_mandatory_but_the_dev_warning() -> None:
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)) >= 10
    levels = {p.name: p.enforcement_level.value for p in POLICIES}
    assert {n for n, level in levels.items() if level != "mandatory"} == {"egress-not-enforced-in-dev"}
    assert levels["egress-not-enforced-in-dev"] == "advisory"


def test_pack_main_only_constructs_the_pack_from_policies() -> None:
    # Never import policy/__main__.py: PolicyPack() starts a gRPC server and blocks forever.
    tree = ast.parse((ROOT / "policy" / "__main__.py").read_text())
    imports = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imports == {
        ("policies", "PACK_ENFORCEMENT"),
        ("policies", "PACK_NAME"),
        ("policies", "POLICIES"),
        ("pulumi_policy", "PolicyPack"),
    }
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"
    ]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords == {"policies": "POLICIES", "enforcement_level": "PACK_ENFORCEMENT"}
    assert [ast.unparse(a) for a in calls[0].args] == ["PACK_NAME"]
    assert policies.PACK_NAME == "langsmith-dataplane"


def test_pack_requirements_pin_what_the_policies_import() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "policy" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    program_pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert set(pins) == {"pulumi", "pulumi_aws", "pulumi_policy"}
    assert all(program_pins[name] == version for name, version in pins.items())


@pytest.mark.parametrize("stack", stack_names())
@pytest.mark.parametrize("preview", [True, False])
def test_every_shipped_stack_passes_every_policy(stack: str, preview: bool) -> None:
    result = cached_run(stack, preview=preview)
    violations = evaluate(result.resources)
    assert [v for v in violations if v.enforcement == "mandatory"] == []
    # Only dev may rely on security-group egress, and the pack says so as a warning.
    expected = ["egress-not-enforced-in-dev"] if stack == "dev" else []
    assert [v.policy for v in violations] == expected


def test_components_tag_roles_the_way_the_pack_reads_them():
    from components import egress
    from policy import policies

    assert (egress.ROLE_TAG, egress.CONTROL_PLANE_EGRESS) == (
        policies.ROLE_TAG,
        policies.CONTROL_PLANE_EGRESS,
    )


def test_managed_store_credentials_leave_the_stack_only_as_secrets():
    from tests.support import cached_run

    outputs = cached_run("prod", False).outputs
    assert outputs["postgresUri"] == outputs["redisUri"] == "<secret>"
    assert outputs["postgresHost"].endswith(".rds.amazonaws.com")
