"""AWS rules a stack file must satisfy before `pulumi up` can work: each encodes a real AWS/EKS rule.

The messages name the stack key; the sources of the rules are cited next to them in `components/`.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from components.config import POSTGRES_MAJORS, instance_architecture
from components.load import ConfigError, config_warnings, parse_stack_config
from components.registries import domain_allows, hosts_for_registry, registry_host
from components.versions import DEFAULT_KUBERNETES_VERSION, EKS_VERSIONS, kubernetes_versions, support_phase
from tests.test_config import ECR_IMAGE, NS, errors_of, one_error, raw, topology
from tests.test_config import listener as listener_spec

GHCR_DOMAINS = [{"domain": "ghcr.io"}, {"domain": "pkg-containers.githubusercontent.com"}]


def keys_of(errors: list[str]) -> list[str]:
    return [e.strip().split(" ")[0].rstrip(":") for e in errors]


# --- 3. The private endpoint must be reachable by whoever runs `pulumi up` -----------------------


def test_a_private_endpoint_without_any_way_in_is_refused() -> None:
    error = one_error(raw(cluster={"endpoint": {}}))
    assert error.startswith(f"{NS}:cluster.endpoint:")
    for way in ("private_access_cidrs", "private_access_security_group_ids", "bastion", "public_cidrs"):
        assert way in error


@pytest.mark.parametrize(
    "endpoint",
    [
        {"private_access_cidrs": ["10.8.0.0/16"]},
        {"private_access_cidrs": ["100.64.0.0/16"]},  # RFC 6598, what many VPNs hand out
        {"private_access_security_group_ids": ["sg-0123456789abcdef0"]},
        {"public": True, "public_cidrs": ["203.0.113.0/24"]},
    ],
)
def test_each_way_in_is_accepted(endpoint: dict[str, Any]) -> None:
    parse_stack_config("test", raw(cluster={"endpoint": endpoint}), set())


def test_a_bastion_needs_the_session_manager_endpoints() -> None:
    # Session Manager needs ssm, ssmmessages and ec2messages
    # (https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-create-vpc.html).
    error = one_error(raw(cluster={"endpoint": {"bastion": {}}}))
    assert error.startswith(f"{NS}:network.interface_endpoints")
    assert "ssm, ssmmessages, ec2messages" in error
    network = {"interface_endpoints": ["ecr.api", "ecr.dkr", "sts", "ssm", "ssmmessages", "ec2messages"]}
    parse_stack_config("test", raw(cluster={"endpoint": {"bastion": {}}}, network=network), set())


@pytest.mark.parametrize("cidr", ["8.8.8.0/24", "203.0.113.0/24", "0.0.0.0/0"])
def test_private_access_cidrs_must_be_private(cidr: str) -> None:
    # The private endpoint's addresses are in the VPC: only VPC-connected (private) networks reach it.
    error = one_error(raw(cluster={"endpoint": {"private_access_cidrs": [cidr]}}))
    assert error.startswith(f"{NS}:cluster.endpoint.private_access_cidrs[0] (got '{cidr}')")


def test_one_access_entry_per_principal() -> None:
    # EKS: a second CreateAccessEntry for the same principal fails with ResourceInUseException.
    deployer = "arn:aws:iam::123456789012:role/deployer"
    cluster = {
        "access": {"deployer_role_arn": deployer, "ci_role_arns": [deployer]},
        "admin_principal_arns": [deployer, "arn:aws:iam::123456789012:role/other"],
    }
    assert keys_of(errors_of(raw(cluster=cluster))) == [
        f"{NS}:cluster.access.ci_role_arns[0]",
        f"{NS}:cluster.admin_principal_arns[0]",
    ]


# --- 6a. Image registries behind the firewall -------------------------------------------------------


def firewall(*destinations: dict[str, str], registries: list[str] | None = None) -> dict[str, Any]:
    return {
        "egress": {
            "mode": "network-firewall",
            "extra_destinations": list(destinations),
            "image_registries": registries or [],
        }
    }


def test_a_listener_image_the_firewall_would_block_is_refused() -> None:
    error = one_error(raw(network=firewall()))
    assert error.startswith(f"{NS}:listener_image (got 'ghcr.io/acme/listener:1.0')")
    assert "{domain: ghcr.io}, {domain: pkg-containers.githubusercontent.com}" in error
    parse_stack_config("test", raw(network=firewall(*GHCR_DOMAINS)), set())


def test_a_wildcard_domain_covers_the_registry() -> None:
    parse_stack_config(
        "test", raw(network=firewall({"domain": ".ghcr.io"}, {"domain": ".githubusercontent.com"})), set()
    )


def test_agent_server_registries_must_be_reachable_too() -> None:
    network = firewall(*GHCR_DOMAINS, {"domain": ".docker.io"}, registries=["docker.io"])
    error = one_error(raw(network=network))
    assert error.startswith(f"{NS}:network.egress.image_registries[0] (got 'docker.io')")
    # .docker.io covers registry-1 and auth; the blob CDNs are separate names.
    assert "production.cloudflare.docker.com" in error
    assert "registry-1.docker.io" not in error


def test_same_region_ecr_needs_no_allowlist_entry_but_its_apis() -> None:
    parse_stack_config("test", raw(network=firewall(), listener_image=ECR_IMAGE), set())
    network = firewall()
    network["egress"]["aws_apis"] = ["sts", "ec2"]
    error = one_error(raw(network=network, listener_image=ECR_IMAGE))
    assert error.startswith(f"{NS}:network.egress.aws_apis")


def test_another_regions_ecr_is_an_external_registry() -> None:
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/listener:1.0"
    error = one_error(raw(network=firewall(), listener_image=image))
    assert "api.ecr.eu-west-1.amazonaws.com" in error
    assert "prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com" in error


def test_security_group_mode_does_not_check_registries() -> None:
    # Without the firewall nothing filters by name, so there is nothing to allow.
    parse_stack_config("test", raw(), set())


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("langchain/langgraph-api:0.4", "docker.io"),
        ("redis", "docker.io"),
        ("ghcr.io/acme/listener:1", "ghcr.io"),
        ("localhost:5000/x", "localhost"),
        ("registry.example.com:8443/team/x@sha256:" + "a" * 64, "registry.example.com"),
        (ECR_IMAGE, "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
    ],
)
def test_registry_host_follows_the_docker_reference_rules(image: str, host: str) -> None:
    assert registry_host(image) == host


def test_domain_matching_is_exact_or_leading_dot_suffix() -> None:
    assert domain_allows("ghcr.io", "ghcr.io")
    assert not domain_allows("ghcr.io", "evil-ghcr.io")
    assert domain_allows(".docker.io", "auth.docker.io")
    assert domain_allows(".docker.io", "docker.io")
    assert not domain_allows(".docker.io", "notdocker.io")
    assert "auth.docker.io" in hosts_for_registry("docker.io")


# --- 7. Closed vocabularies checked against each other --------------------------------------------


def test_ami_type_is_a_closed_vocabulary() -> None:
    error = one_error(raw(cluster={"node_groups": [{"name": "a", "ami_type": "AL2_x86_64"}]}))
    assert error.startswith(f"{NS}:cluster.node_groups[0].ami_type (got 'AL2_x86_64')")


@pytest.mark.parametrize(
    ("instance_type", "ami_type"),
    [
        ("m7g.large", "AL2023_x86_64_STANDARD"),
        ("m6i.large", "AL2023_ARM_64_STANDARD"),
        ("t4g.small", "BOTTLEROCKET_x86_64"),
    ],
)
def test_instance_architecture_must_match_the_ami(instance_type: str, ami_type: str) -> None:
    group = {"name": "a", "instance_types": ["m6a.large", instance_type], "ami_type": ami_type}
    if "ARM" in ami_type:
        group["instance_types"] = ["m7g.large", instance_type]
    error = one_error(raw(cluster={"node_groups": [group]}))
    assert error.startswith(f"{NS}:cluster.node_groups[0].instance_types[1] (got '{instance_type}')")


def test_matching_architectures_are_accepted() -> None:
    groups = [
        {"name": "arm", "instance_types": ["m7g.large", "c6gn.xlarge"], "ami_type": "AL2023_ARM_64_STANDARD"},
        {"name": "x86", "instance_types": ["m6i.large", "m7i-flex.large"], "ami_type": "BOTTLEROCKET_x86_64"},
    ]
    parse_stack_config("test", raw(cluster={"node_groups": groups}), set())


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("m7g.large", "arm64"),
        ("r8gd.xlarge", "arm64"),
        ("is4gen.large", "arm64"),
        ("a1.medium", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("g5.xlarge", "x86_64"),
        ("m6i.large", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("inf2.xlarge", "x86_64"),
    ],
)
def test_instance_architecture_from_ec2_naming(instance_type: str, arch: str) -> None:
    assert instance_architecture(instance_type) == arch


@pytest.mark.parametrize(
    ("version", "ok"),
    [("16", True), ("17.2", True), ("15.8", True), ("15.7", False), ("14", False), ("18", False)],
)
def test_postgres_versions_are_a_closed_vocabulary(version: str, ok: bool) -> None:
    config = raw(stores={"mode": "managed", "postgres": {"engine_version": version}})
    if ok:
        parse_stack_config("test", config, set())
    else:
        error = one_error(config)
        assert error.startswith(f"{NS}:stores.postgres.engine_version (got '{version}')")
    assert "16" in POSTGRES_MAJORS


def test_kubernetes_version_is_a_closed_vocabulary() -> None:
    error = one_error(raw(cluster={"kubernetes_version": "1.29"}))
    assert error.startswith(f"{NS}:cluster.kubernetes_version (got '1.29')")
    assert set(kubernetes_versions()) == set(EKS_VERSIONS)


@pytest.mark.parametrize(
    "tags",
    [
        {"owner": "me", "cost-center": "cc-1", "team": "a{b}"},  # braces are not in AWS's tag charset
        {"owner": "me", "cost-center": "cc-1", "aws:x": "y"},  # reserved prefix
        {"owner": "me" * 129, "cost-center": "cc-1"},  # too long
    ],
)
def test_tags_follow_aws_tag_rules(tags: dict[str, str]) -> None:
    assert one_error(raw(tags=tags)).startswith(f"{NS}:tags ")


def test_the_account_is_required() -> None:
    assert one_error(raw(aws_account_id=None)) == f"{NS}:aws_account_id: is required"
    assert one_error(raw(aws_account_id="12345")).startswith(f"{NS}:aws_account_id (got '12345')")


# --- 5. Upgrades: the default version and the support window ---------------------------------------


def test_default_version_is_in_standard_support_with_months_to_spare() -> None:
    # 1.33 left EKS standard support on 2026-07-29 (the EKS release calendar); the default must be a
    # version in standard support when this change was made, with at least three months left.
    made = datetime.date(2026, 11, 28)
    assert support_phase(DEFAULT_KUBERNETES_VERSION, made + datetime.timedelta(days=90)) == "standard"
    assert support_phase("1.33", made) == "extended"
    config = parse_stack_config("test", raw(cluster={}), set())
    assert config.cluster.kubernetes_version == DEFAULT_KUBERNETES_VERSION
    assert config.cluster.upgrade_policy == "STANDARD"


def test_eks_calendar_is_fourteen_plus_twelve_months() -> None:
    for version, window in EKS_VERSIONS.items():
        standard = (window.end_of_standard_support - window.released).days
        extended = (window.end_of_extended_support - window.end_of_standard_support).days
        assert 14 * 30 <= standard <= 14 * 31 + 3, version
        assert 365 <= extended <= 366, version


def test_a_version_past_standard_support_warns_by_upgrade_policy() -> None:
    late = datetime.date(2026, 9, 1)  # 1.33 is in extended support
    standard = parse_stack_config("test", raw(cluster={"kubernetes_version": "1.33"}), set())
    (warning,) = [w for w in config_warnings(standard, late) if "kubernetes_version" in w]
    assert "EKS upgrades the cluster itself" in warning
    extended = parse_stack_config(
        "test", raw(cluster={"kubernetes_version": "1.33", "upgrade_policy": "EXTENDED"}), set()
    )
    (warning,) = [w for w in config_warnings(extended, late) if "kubernetes_version" in w]
    assert "extended support (extra cost)" in warning
    assert not [w for w in config_warnings(standard, datetime.date(2026, 1, 1)) if "kubernetes_version" in w]


# --- 10. Every problem at once, and never a key ----------------------------------------------------


def test_schema_and_rule_errors_come_in_one_report() -> None:
    # A schema error (an unknown log type) and rule errors (two listeners named alike, an unpinned
    # image in prod) in one file: all of them in one run, not two rounds.
    topology = {
        "workspaces": [{"name": "a", "id": "0a000000-0000-4000-8000-00000000000a"}],
        "listeners": [
            {"name": "l1", "workspace": "a", "compute_id": "c1", "namespaces": ["x"]},
            {"name": "l1", "workspace": "a", "compute_id": "c2", "namespaces": ["y"]},
        ],
    }
    errors = errors_of(
        raw(
            environment="staging",
            stores={"mode": "managed"},
            cluster={"log_types": ["api", "everything"]},
            topology=topology,
        )
    )
    assert set(keys_of(errors)) >= {
        f"{NS}:cluster.log_types[1]",
        f"{NS}:topology.listeners[0].name",
        f"{NS}:topology.listeners[1].name",
        f"{NS}:listener_image",
    }


def test_a_broken_required_key_does_not_hide_the_other_rules() -> None:
    errors = errors_of(raw(environment="qa", stores={"mode": "managed"}, cluster={"endpoint": {}}))
    assert keys_of(errors) == [f"{NS}:environment", f"{NS}:cluster.endpoint"]


KEY = "lsv2_" + "pt_" + "FAKE_TEST_VALUE"  # assembled: detection is by prefix; no key-shaped literal


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"tags": {"owner": KEY, "cost-center": "cc-1"}}, "tags.owner"),
        ({"tags": {"owner": f"team {KEY}", "cost-center": "cc-1"}}, "tags.owner"),
        ({"tags": {"owner": "me", "cost-center": "cc-1", KEY: "x"}}, "tags.redacted"),
        ({"cluster": {"admin_principal_arns": [KEY]}}, "cluster.admin_principal_arns[0]"),
        (
            {"network": {"egress": {"extra_destinations": [{"domain": KEY}]}}},
            "network.egress.extra_destinations[0].domain",
        ),
        ({"name": KEY}, "name"),
    ],
)
def test_a_pasted_key_is_found_at_any_depth_and_never_echoed(overrides: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("test", raw(**overrides), set())
    text = str(caught.value)
    assert f"{NS}:{where}: holds what looks like a LangSmith API key" in text
    assert KEY not in text
    assert KEY[:20] not in text
    assert KEY not in repr(caught.value.problems)


def test_key_shaped_text_in_any_message_is_redacted() -> None:
    # Even where a rule quotes a value (a domain that is not a domain), no key survives.
    config = raw(
        network={"egress": {"mode": "security-group", "extra_destinations": [{"domain": "x" + KEY}]}}
    )
    text = "\n".join(errors_of(config))
    assert "lsv2_pt_" not in text


def test_secret_values_are_not_scanned_for_keys() -> None:
    # A key stored as a Pulumi secret is exactly right; only plaintext is refused.
    config = raw(api_key="<secret>", tags=json.dumps({"owner": "me", "cost-center": "cc-1"}))
    parse_stack_config("test", config, {f"{NS}:api_key"})


def test_an_invalid_field_sets_aside_only_itself() -> None:
    # The version is invalid, the public endpoint lacks its allowlist: both in one report, because only
    # cluster.kubernetes_version is set aside, not the whole cluster key.
    errors = errors_of(raw(cluster={"kubernetes_version": "1.29", "endpoint": {"public": True}}))
    assert keys_of(errors) == [f"{NS}:cluster.kubernetes_version", f"{NS}:cluster.endpoint.public_cidrs"]


def test_a_rule_that_reads_an_invalid_key_stays_quiet() -> None:
    # The listener image's registry check reads the allowlist; with the allowlist itself invalid its
    # verdict would be about a default, so only the schema error is reported.
    network = {"egress": {"mode": "network-firewall", "extra_destinations": [{"host": "ghcr.io"}]}}
    assert keys_of(errors_of(raw(network=network))) == [f"{NS}:network.egress.extra_destinations[0]"]


def test_an_access_source_listed_twice_is_refused() -> None:
    # Each source is one ingress rule; EC2 refuses a duplicate (InvalidPermission.Duplicate), and two
    # resources of the same name would not even register.
    endpoint = {"private_access_cidrs": ["10.8.0.0/16", "10.9.0.0/16", "10.8.0.0/16"]}
    assert keys_of(errors_of(raw(cluster={"endpoint": endpoint}))) == [
        f"{NS}:cluster.endpoint.private_access_cidrs[2]"
    ]


# --- Managed stores, secrets-manager: the listener's IRSA role is the program's ------------------


def test_a_listener_role_of_ones_own_cannot_replace_the_master_secret_role() -> None:
    own = {
        **listener_spec("main", "a", ["agents"]),
        "service_account_role_arn": "arn:aws:iam::123456789012:role/x",
    }
    error = one_error(raw(stores={"mode": "managed"}, topology=topology(own)))
    assert error.startswith(
        f"{NS}:topology.listeners[0].service_account_role_arn (got 'arn:aws:iam::123456789012:role/x'): "
        "cannot be combined with stores.mode 'managed'"
    )
    # With the password handed over instead, the user's role is theirs to give.
    generated = {"mode": "managed", "postgres": {"master_password": "generated"}}
    parse_stack_config("test", raw(stores=generated, topology=topology(own)), set())


def test_a_listener_name_too_long_for_its_iam_role_is_refused_naming_the_limit() -> None:
    # IAM role names are at most 64 characters; Pulumi adds 8 to `lsdp-test-listener-<name>-irsa`.
    ok = "x" * (64 - 8 - len("lsdp-test-listener--irsa"))
    parse_stack_config(
        "test", raw(stores={"mode": "managed"}, topology=topology(listener_spec(ok, "a", ["n1"]))), set()
    )
    long = ok + "y"
    error = one_error(raw(stores={"mode": "managed"}, topology=topology(listener_spec(long, "a", ["n1"]))))
    assert error.startswith(
        f"{NS}:topology.listeners[0].name (got '{long}'): is too long for its IAM role name"
    )
    assert f"at most {len(ok)} characters" in error
