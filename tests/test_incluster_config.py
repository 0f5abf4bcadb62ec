"""Config rules of the in-cluster layer: cluster source, secrets, add-on pins, routing, listener names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import ExistingCluster
from components.load import ConfigError, parse_stack_config
from tests.test_config import NS, errors_of, listener, one_error, topology
from tests.test_config import raw as base_raw

EXISTING = {"mode": "existing", "kubernetes_version": "1.33"}


def raw(**overrides: Any) -> dict[str, str]:
    """test_config's minimal stack, but a `cluster` override is taken as is (an existing cluster has
    no endpoint to make reachable)."""
    cluster = overrides.pop("cluster", None)
    if cluster is not None and cluster.get("mode") != "existing":
        return base_raw(cluster=cluster, **overrides)
    config = base_raw(**overrides)
    if cluster is not None:
        config[f"{NS}:cluster"] = json.dumps(cluster)
    return config


KEY = {f"{NS}:api_key"}


def parse(config: dict[str, str], secrets: set[str] | None = None, *, require: bool = True):
    return parse_stack_config("test", config, secrets or set(), require_secrets=require)


def required_errors(config: dict[str, str], secrets: set[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(config, secrets)
    return [line.strip() for line in str(caught.value).splitlines()[1:]]


def with_listener(**overrides: Any) -> dict[str, str]:
    return raw(topology=topology(listener("l1", "a", ["agents"])), **overrides)


# --- cluster.mode existing --------------------------------------------------------------------------


def test_an_existing_cluster_needs_its_version_and_a_kubeconfig() -> None:
    config = parse(
        with_listener(cluster=EXISTING, api_key="<s>", kubeconfig="<k>"), KEY | {f"{NS}:kubeconfig"}
    )
    assert isinstance(config.cluster, ExistingCluster)
    assert not config.is_eks
    assert one_error(raw(cluster={"mode": "existing"})).startswith(f"{NS}:cluster.kubernetes_version")
    assert required_errors(with_listener(cluster=EXISTING, api_key="<s>"), KEY) == [
        f"{NS}:kubeconfig: is required with cluster.mode 'existing' unless cluster.eks_cluster_name is set: "
        "pulumi config set --secret kubeconfig < ~/.kube/config"
    ]


def test_an_existing_eks_cluster_is_found_by_name_without_a_kubeconfig() -> None:
    config = parse(with_listener(cluster={**EXISTING, "eks_cluster_name": "prod-1"}, api_key="<s>"), KEY)
    assert isinstance(config.cluster, ExistingCluster)
    assert config.cluster.eks_cluster_name == "prod-1"
    error = one_error(
        raw(cluster={**EXISTING, "eks_cluster_name": "prod-1"}, kubeconfig="<k>"), {f"{NS}:kubeconfig"}
    )
    assert error.startswith(f"{NS}:kubeconfig: is only used with cluster.mode 'existing' and no")


def test_a_context_only_goes_with_a_kubeconfig() -> None:
    # With eks_cluster_name the program writes the kubeconfig (components.cluster.kubeconfig: one
    # context, named after the cluster), so any other context fails the provider at `pulumi up`.
    error = one_error(raw(cluster={**EXISTING, "eks_cluster_name": "prod-1", "context": "admin@prod"}))
    assert error.startswith(f"{NS}:cluster.context (got 'admin@prod'): is only used with the kubeconfig")


def test_a_kubeconfig_must_be_a_secret_and_is_pointless_on_our_eks() -> None:
    assert one_error(raw(cluster=EXISTING, kubeconfig="apiVersion: v1")).startswith(
        f"{NS}:kubeconfig: is stored in plaintext"
    )
    assert one_error(raw(kubeconfig="<k>"), {f"{NS}:kubeconfig"}).startswith(f"{NS}:kubeconfig: is only used")


def test_an_existing_cluster_refuses_what_only_our_eks_can_have() -> None:
    errors = errors_of(
        raw(
            cluster=EXISTING,
            network={"mode": "create"},
            stores={"mode": "managed"},
            addons={
                "cluster_autoscaler": True,
                "aws_load_balancer_controller": True,
                "vpc_cni_network_policy": True,
            },
        )
    )
    keys = sorted(e.split(" ")[0].split(":")[1].rstrip(":") for e in (line.strip() for line in errors))
    assert keys == [
        "addons.aws_load_balancer_controller",
        "addons.cluster_autoscaler",
        "addons.vpc_cni_network_policy",
        "network",
        "stores.mode",
    ]


def test_external_stores_need_their_addresses_and_admin_uris() -> None:
    assert one_error(raw(stores={"mode": "external"})).startswith(f"{NS}:stores.egress_cidrs")
    stores = {"mode": "external", "egress_cidrs": ["10.60.0.0/16"]}
    errors = required_errors(with_listener(stores=stores, api_key="<s>"), KEY)
    assert [e.split(":")[1] for e in errors] == ["postgres_admin_uri", "redis_admin_uri"]
    secrets = KEY | {f"{NS}:postgres_admin_uri", f"{NS}:redis_admin_uri"}
    parse(
        with_listener(stores=stores, api_key="<s>", postgres_admin_uri="<p>", redis_admin_uri="<r>"), secrets
    )


# --- API keys ---------------------------------------------------------------------------------------------


def test_listeners_need_an_api_key() -> None:
    assert required_errors(with_listener(), set())[0].startswith(
        f"{NS}:api_key: is required to register and run the listeners"
    )
    parse(raw(), set())  # no listener, no key needed


def test_workspace_keys_cover_their_workspaces_and_must_name_real_ones() -> None:
    keys = {f"{NS}:workspace_api_keys"}
    two = raw(topology=topology(listener("l1", "a", ["n1"]), listener("l2", "b", ["n2"])))
    parse({**two, f"{NS}:workspace_api_keys": json.dumps({"a": "k1", "b": "k2"})}, keys)
    errors = required_errors({**two, f"{NS}:workspace_api_keys": json.dumps({"a": "k1"})}, keys)
    assert errors[0].startswith(f"{NS}:api_key: is required")  # workspace b has none
    errors = required_errors(
        {**two, f"{NS}:workspace_api_keys": json.dumps({"a": "k1", "c": "k3", "b": " "})}, keys
    )
    assert f"{NS}:workspace_api_keys.b: must be a non-empty API key" in errors
    assert f"{NS}:workspace_api_keys.c: names no workspace in topology.workspaces" in errors
    assert all("k1" not in e and "k3" not in e for e in errors)


def test_workspace_keys_must_be_secret() -> None:
    config = {**raw(topology=topology()), f"{NS}:workspace_api_keys": json.dumps({"a": "lsv2_pt_x"})}
    assert one_error(config) == (
        f"{NS}:workspace_api_keys: is stored in plaintext; set it with `pulumi config set --secret --path "
        "'workspace_api_keys.<workspace>'` so only ciphertext is committed"
    )


# --- add-ons ------------------------------------------------------------------------------------------------


def test_add_ons_must_be_pinned_for_the_clusters_version() -> None:
    assert one_error(raw(cluster={"kubernetes_version": "1.32"})).startswith(
        f"{NS}:addons.keda: keda 2.20.0 is tested on Kubernetes 1.33 to 1.35"
    )
    parse(raw(cluster={"kubernetes_version": "1.32"}, addons={"keda": False}), set())
    # Any version is accepted for an existing cluster, but the pins still have to fit it.
    errors = errors_of(raw(cluster={"mode": "existing", "kubernetes_version": "1.31"}))
    assert [e.strip().split(":")[1] for e in errors] == ["addons.keda"]


def test_the_autoscaler_needs_a_node_group_that_can_grow() -> None:
    fixed = {"node_groups": [{"name": "fixed", "min_size": 2, "desired_size": 2, "max_size": 2}]}
    assert one_error(raw(cluster=fixed)).startswith(f"{NS}:addons.cluster_autoscaler: no node group can grow")
    parse(raw(cluster=fixed, addons={"cluster_autoscaler": False}), set())


def test_a_gateway_on_an_unsupported_version_names_routing() -> None:
    errors = errors_of(
        raw(
            cluster={"mode": "existing", "kubernetes_version": "1.31"},
            addons={"keda": False},
            routing={"mode": "gateway", "hostname": "agents.example.com"},
        )
    )
    assert [e.strip().split(":")[1] for e in errors] == ["routing.mode"]


# --- routing -------------------------------------------------------------------------------------------------


def test_routing_needs_a_hostname() -> None:
    assert one_error(raw(routing={"mode": "gateway"})).startswith(f"{NS}:routing.hostname: is required")


def test_an_ingress_cannot_serve_a_listener_with_several_namespaces() -> None:
    config = raw(
        topology=topology(listener("l1", "a", ["n1", "n2"])),
        routing={"mode": "ingress", "hostname": "a.example.com", "allow_from_namespaces": ["ingress-nginx"]},
    )
    error = one_error(config)
    assert error.startswith(f"{NS}:routing.mode (got 'ingress'): an Ingress routes only within its namespace")
    assert "use 'gateway'" in error


def test_an_ingress_needs_to_know_where_its_traffic_comes_from() -> None:
    error = one_error(raw(routing={"mode": "ingress", "hostname": "a.example.com"}))
    assert error.startswith(f"{NS}:routing.allow_from_cidrs: ingress mode needs")


def test_mode_specific_routing_keys_are_refused_elsewhere() -> None:
    errors = errors_of(
        raw(routing={"mode": "gateway", "hostname": "a.example.com", "allow_from_cidrs": ["10.0.0.0/16"]})
    )
    assert [e.strip().split(":")[1].split(" ")[0] for e in errors] == ["routing.allow_from_cidrs"]
    error = one_error(
        raw(
            routing={
                "mode": "ingress",
                "hostname": "a.example.com",
                "allow_from_cidrs": ["10.0.0.0/16"],
                "tls_secret_name": "tls",
            }
        )
    )
    assert error.startswith(f"{NS}:routing.tls_secret_name: is only used with routing.mode 'gateway'")


# --- listeners and namespaces -----------------------------------------------------------------------------


def test_a_listener_name_must_leave_room_for_its_namespace() -> None:
    name = "l" * 55
    error = one_error(raw(topology=topology(listener(name, "a", ["agents"]))))
    assert error.startswith(f"{NS}:topology.listeners[0].name (got '{name}'): is longer than 54 characters")


def test_a_listener_never_runs_in_an_agent_namespace() -> None:
    config = raw(topology=topology(listener("a1", "a", ["agents"]), listener("b1", "b", ["listener-a1"])))
    error = one_error(config)
    assert error.startswith(f"{NS}:topology.listeners[0].name (got 'a1'): its own namespace 'listener-a1'")


def test_agent_servers_never_share_an_add_ons_namespace() -> None:
    # The add-on's Namespace and the agent Namespace would be the same Kubernetes object declared
    # twice (the second create is AlreadyExists), and the agent side's default deny would cut the
    # add-on off. Only the add-ons this stack installs are in the way.
    error = one_error(raw(topology=topology(listener("l1", "a", ["agents", "keda"]))))
    assert error.startswith(
        f"{NS}:topology.listeners[0].namespaces[1] (got 'keda'): is the namespace of the keda add-on"
    )
    gateway = {"mode": "gateway", "hostname": "agents.example.com"}
    watching_gateway = topology(listener("l1", "a", ["envoy-gateway-system"]))
    assert one_error(raw(routing=gateway, topology=watching_gateway)).startswith(
        f"{NS}:topology.listeners[0].namespaces[0] (got 'envoy-gateway-system'): is the namespace of the "
        "envoy-gateway add-on"
    )
    parse(raw(topology=watching_gateway), require=False)  # no Gateway, no add-on there
    parse(raw(addons={"keda": False}, topology=topology(listener("l1", "a", ["keda"]))), require=False)


@pytest.mark.parametrize("value", ['"existing"', '["existing"]', "5"])
def test_a_cluster_that_is_not_a_mapping_is_a_config_error(value: str) -> None:
    # A stack file saying `cluster: existing` once escaped as an AttributeError traceback.
    config = raw()
    config[f"{NS}:cluster"] = value
    error = one_error(config)
    assert error.startswith(f"{NS}:cluster (got ")
    assert error.endswith("must be a mapping whose 'mode' is 'eks' (the default) or 'existing'")


def test_quota_keys_and_quantities_are_checked() -> None:
    assert one_error(raw(agent_namespaces={"resource_quota": {"gpus": "1"}})).startswith(
        f"{NS}:agent_namespaces.resource_quota.gpus"
    )
    assert one_error(raw(agent_namespaces={"resource_quota": {"pods": "lots"}})).startswith(
        f"{NS}:agent_namespaces.resource_quota.pods"
    )
