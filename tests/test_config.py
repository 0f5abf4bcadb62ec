"""Stack config validation: good configs load, bad ones fail with messages naming the stack key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import StackConfig
from components.load import ConfigError, parse_stack_config
from tools.harness import read_stack_file, stack_names, stack_path

NS = "langsmith-dataplane"
WS_A = "0a000000-0000-4000-8000-00000000000a"
WS_B = "0b000000-0000-4000-8000-00000000000b"
DIGEST = "ghcr.io/acme/listener@sha256:" + "a" * 64
ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/listener:1.0"
"""In the stack's own region: reachable behind the firewall without any allowlist entry."""


REACHABLE = {"endpoint": {"private_access_cidrs": ["10.255.0.0/16"]}}
"""A cluster whose private endpoint someone can reach (a stack must say how)."""


def raw(**overrides: Any) -> dict[str, str]:
    """A minimal valid dev stack's raw Pulumi config, with overrides (None removes a key).

    A `cluster` override keeps the reachable endpoint unless it sets `endpoint` itself."""
    if isinstance(overrides.get("cluster"), dict):
        overrides["cluster"] = {**REACHABLE, **overrides["cluster"]}
    values: dict[str, Any] = {
        "name": "lsdp-test",
        "environment": "dev",
        "aws_region": "us-east-1",
        "aws_account_id": "123456789012",
        "tags": {"owner": "me", "cost-center": "cc-1"},
        "listener_image": "ghcr.io/acme/listener:1.0",
        "cluster": REACHABLE,
        **overrides,
    }
    return {
        f"{NS}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None
    }


def topology(*listeners: dict[str, Any], shared: list[str] | None = None) -> dict[str, Any]:
    return {
        "workspaces": [{"name": "a", "id": WS_A}, {"name": "b", "id": WS_B}],
        "listeners": list(listeners),
        "shared_namespaces": shared or [],
    }


def listener(
    name: str, workspace: str, namespaces: list[str], compute_id: str | None = None
) -> dict[str, Any]:
    return {"name": name, "workspace": workspace, "compute_id": compute_id or name, "namespaces": namespaces}


def errors_of(config: dict[str, str], secret_keys: set[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("test", config, secret_keys or set())
    return str(caught.value).splitlines()[1:]


def one_error(config: dict[str, str], secret_keys: set[str] | None = None) -> str:
    errors = errors_of(config, secret_keys)
    assert len(errors) == 1, errors
    return errors[0].strip()


def test_minimal_config_gets_documented_defaults():
    config = parse_stack_config("test", raw(), set())
    assert config.langsmith.control_plane_url == "https://api.host.langchain.com"
    assert config.network.mode == "create"
    assert config.network.az_count == 3
    assert config.network.egress.mode == "security-group"
    assert config.cluster.endpoint.public is False
    assert config.stores.mode == "in-cluster"
    assert config.resource_tags == {
        "owner": "me",
        "cost-center": "cc-1",
        "environment": "dev",
        "managed-by": "pulumi",
        "dataplane": "lsdp-test",
    }


@pytest.mark.parametrize(
    ("region", "url", "hosts"),
    [
        ("us", "https://api.host.langchain.com", ("api.host.langchain.com", "api.smith.langchain.com")),
        (
            "eu",
            "https://eu.api.host.langchain.com",
            ("eu.api.host.langchain.com", "eu.api.smith.langchain.com"),
        ),
        (
            "apac",
            "https://apac.api.host.langchain.com",
            ("apac.api.host.langchain.com", "apac.api.smith.langchain.com"),
        ),
        (
            "aws-us",
            "https://aws.api.host.langchain.com",
            ("aws.api.host.langchain.com", "aws.api.smith.langchain.com"),
        ),
    ],
)
def test_langsmith_region_decides_control_plane_hosts(region, url, hosts):
    config = parse_stack_config("test", raw(langsmith={"region": region}), set())
    assert config.langsmith.control_plane_url == url
    assert config.langsmith.hosts == hosts
    assert config.langsmith.ip_cidrs
    assert all(c.endswith("/32") for c in config.langsmith.ip_cidrs)


def test_self_hosted_url_serves_control_plane_under_api_host():
    config = parse_stack_config(
        "test",
        raw(
            langsmith={"url": "https://langsmith.internal.example.com", "egress_cidrs": ["10.9.0.0/24"]},
        ),
        set(),
    )
    assert config.langsmith.control_plane_url == "https://langsmith.internal.example.com/api-host"
    assert config.langsmith.hosts == ("langsmith.internal.example.com",)
    assert config.langsmith.ip_cidrs == ("10.9.0.0/24",)


def test_self_hosted_security_group_egress_needs_addresses():
    error = one_error(raw(langsmith={"url": "https://ls.example.com"}))
    assert error.startswith(f"{NS}:langsmith.egress_cidrs")
    assert "network-firewall" in error


def test_unknown_key_is_named():
    assert one_error(raw(clustr={"kubernetes_version": "1.33"})).startswith(f"{NS}:clustr (got ")
    nested = one_error(raw(cluster={"endpoint": {"publik": True}}))
    assert nested.startswith(f"{NS}:cluster.endpoint.publik")
    assert "not a known key" in nested


def test_key_outside_the_project_namespace_is_named():
    config = raw()
    config["langsmith-dataplan:name"] = "typo"
    error = one_error(config)
    assert error.startswith("langsmith-dataplan:name")
    assert "outside the 'langsmith-dataplane' namespace" in error


def test_plaintext_api_key_is_refused_without_echoing_it():
    key = "lsv2_pt_FAKE_TEST_VALUE_not_a_real_key"
    error = one_error(raw(api_key=key))
    assert error.startswith(f"{NS}:api_key")
    assert "pulumi config set --secret api_key" in error
    assert key not in error


def test_secret_api_key_is_accepted_and_kept_out_of_the_model():
    config = parse_stack_config("test", raw(api_key="<secret>"), {f"{NS}:api_key"})
    assert "api_key" not in StackConfig.model_fields
    assert "<secret>" not in repr(config)


def test_api_key_pasted_into_another_key_is_refused():
    key = "lsv2_sk_FAKE_TEST_VALUE_pasted_into_name"
    errors = errors_of(raw(name=key))
    assert (
        errors[0].strip() == f"{NS}:name: holds what looks like a LangSmith API key in plaintext; remove it"
    )
    assert not any(key in e for e in errors)


def test_missing_required_key_is_named():
    assert one_error(raw(environment=None)) == f"{NS}:environment: is required"


def test_required_tags():
    error = one_error(raw(tags={"owner": "me"}))
    assert error.startswith(f"{NS}:tags.cost-center")


@pytest.mark.parametrize(
    ("namespace", "reason"),
    [
        ("default", "reserved"),
        ("kube-system", "reserved"),
        ("kube-public", "reserved"),
        ("Agents", "DNS-1123"),
        ("agents_", "DNS-1123"),
        ("-agents", "DNS-1123"),
        ("a" * 64, "DNS-1123"),
    ],
)
def test_namespace_names(namespace, reason):
    error = one_error(raw(topology=topology(listener("l1", "a", ["ok", namespace]))))
    assert error.startswith(f"{NS}:topology.listeners[0].namespaces[1] (got {namespace!r})")
    assert reason in error


def test_listener_needs_a_namespace():
    error = one_error(raw(topology=topology(listener("l1", "a", []))))
    assert error.startswith(f"{NS}:topology.listeners[0].namespaces")


def test_overlapping_namespaces_are_refused_naming_the_second_listener():
    error = one_error(
        raw(topology=topology(listener("l1", "a", ["x", "shared"]), listener("l2", "b", ["shared"])))
    )
    assert error.startswith(f"{NS}:topology.listeners[1].namespaces[0] (got 'shared')")
    assert "already watched by listener 'l1'" in error
    assert "topology.shared_namespaces" in error


def test_shared_namespace_is_allowed_only_by_explicit_opt_in():
    config = parse_stack_config(
        "test",
        raw(
            topology=topology(
                listener("l1", "a", ["shared"]), listener("l2", "b", ["shared"]), shared=["shared"]
            )
        ),
        set(),
    )
    assert config.topology.shared_namespaces == ["shared"]


def test_shared_namespace_nobody_shares_is_refused():
    error = one_error(raw(topology=topology(listener("l1", "a", ["x"]), shared=["x"])))
    assert error.startswith(f"{NS}:topology.shared_namespaces[0] (got 'x')")


def test_compute_id_unique_per_workspace_but_reusable_across_workspaces():
    parse_stack_config(
        "test",
        raw(topology=topology(listener("l1", "a", ["x"], "c1"), listener("l2", "b", ["y"], "c1"))),
        set(),
    )
    errors = errors_of(
        raw(topology=topology(listener("l1", "a", ["x"], "c1"), listener("l2", "a", ["y"], "c1")))
    )
    assert [e.strip().split(" ")[0] for e in errors] == [
        f"{NS}:topology.listeners[0].compute_id",
        f"{NS}:topology.listeners[1].compute_id",
    ]


def test_listener_workspace_must_exist():
    error = one_error(raw(topology=topology(listener("l1", "c", ["x"]))))
    assert error.startswith(f"{NS}:topology.listeners[0].workspace (got 'c')")
    assert "(a, b)" in error


def test_duplicate_listener_names_and_workspace_ids():
    doubled = topology(listener("l1", "a", ["x"]), listener("l1", "b", ["y"]))
    doubled["workspaces"].append({"name": "c", "id": WS_A})
    keys = {e.strip().split(" ")[0] for e in errors_of(raw(topology=doubled))}
    assert keys == {
        f"{NS}:topology.listeners[0].name",
        f"{NS}:topology.listeners[1].name",
        f"{NS}:topology.workspaces[0].id",
        f"{NS}:topology.workspaces[2].id",
    }


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_listener_image_must_be_digest_pinned_outside_dev(environment):
    stores = {"mode": "managed"}
    error = one_error(raw(environment=environment, stores=stores))
    assert error.startswith(f"{NS}:listener_image (got 'ghcr.io/acme/listener:1.0')")
    assert "digest" in error
    parse_stack_config("test", raw(environment=environment, stores=stores, listener_image=DIGEST), set())


def test_image_reference_syntax():
    assert one_error(raw(listener_image="Not An Image")).startswith(f"{NS}:listener_image")


def test_prod_refuses_in_cluster_stores():
    error = one_error(raw(environment="prod", listener_image=DIGEST, stores={"mode": "in-cluster"}))
    assert error.startswith(f"{NS}:stores.mode")


def test_public_endpoint_needs_a_cidr_allowlist_without_the_whole_internet():
    assert one_error(raw(cluster={"endpoint": {"public": True}})).startswith(
        f"{NS}:cluster.endpoint.public_cidrs"
    )
    error = one_error(raw(cluster={"endpoint": {"public": True, "public_cidrs": ["0.0.0.0/0"]}}))
    assert error.startswith(f"{NS}:cluster.endpoint.public_cidrs[0] (got '0.0.0.0/0')")
    parse_stack_config(
        "test", raw(cluster={"endpoint": {"public": True, "public_cidrs": ["203.0.113.0/24"]}}), set()
    )


def test_node_group_sizes():
    error = one_error(
        raw(cluster={"node_groups": [{"name": "a", "min_size": 2, "desired_size": 1, "max_size": 3}]})
    )
    assert error.startswith(f"{NS}:cluster.node_groups[0].desired_size (got 1)")


def test_existing_vpc_fields_are_named():
    errors = errors_of(raw(network={"mode": "existing", "vpc_id": "vpc-1"}))
    keys = [e.strip().split(" ")[0].split(":")[1] for e in errors]
    assert keys == ["network.vpc_id", "network.vpc_cidr", "network.private_subnet_ids"]


def test_firewall_needs_a_vpc_we_create():
    network = {
        "mode": "existing",
        "vpc_id": "vpc-0123456789abcdef0",
        "vpc_cidr": "10.0.0.0/16",
        "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "egress": {"mode": "network-firewall"},
    }
    error = one_error(raw(network=network, listener_image=ECR_IMAGE))
    assert error.startswith(f"{NS}:network.egress.mode (got 'network-firewall')")


def test_extra_destinations_must_match_the_egress_mode():
    domain = {"egress": {"mode": "security-group", "extra_destinations": [{"domain": "api.openai.com"}]}}
    assert one_error(raw(network=domain)).startswith(f"{NS}:network.egress.extra_destinations[0].domain")
    cidr = {"egress": {"mode": "network-firewall", "extra_destinations": [{"cidr": "198.51.100.0/24"}]}}
    error = one_error(raw(network=cidr, listener_image=ECR_IMAGE))
    assert error.startswith(f"{NS}:network.egress.extra_destinations[0].cidr")
    neither = {"egress": {"mode": "both", "extra_destinations": [{"host": "x"}]}}
    assert "either a 'domain' or a 'cidr'" in one_error(raw(network=neither))
    everything = {"egress": {"mode": "security-group", "extra_destinations": [{"cidr": "0.0.0.0/0"}]}}
    assert "whole internet" in one_error(raw(network=everything))


def test_all_problems_are_reported_at_once():
    errors = errors_of(
        raw(
            api_key="plaintext",
            environment="prod",
            topology=topology(listener("l1", "a", ["x"]), listener("l2", "b", ["x"])),
        )
    )
    keys = {e.strip().split(" ")[0].rstrip(":") for e in errors}
    assert {f"{NS}:api_key", f"{NS}:topology.listeners[1].namespaces[0]", f"{NS}:listener_image"} <= keys


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_file_validates(stack):
    stack_file = read_stack_file(stack_path(stack))
    config = parse_stack_config(stack, stack_file.config, stack_file.secret_keys)
    assert config.topology.listeners, "every shipped stack shows at least one listener"


def test_shipped_stacks_cover_every_listener_layout():
    stacks = set(stack_names())
    assert {"dev", "staging", "prod"} <= stacks
    assert {
        "example-cluster-per-workspace",
        "example-shared-dev-cluster",
        "example-namespace-per-workspace",
        "example-shared-namespace",
    } <= stacks
