"""What the NetworkPolicies the program declares let through, evaluated with Kubernetes' semantics
(tests/netpol.py): exactly what Agent Servers and listeners need, and, for an attacker holding an
Agent Server pod, not the Kubernetes API, the instance metadata, the listener, or other namespaces."""

from __future__ import annotations

import pytest

from listener import naming
from tests.kube_schemas import declared_objects
from tests.netpol import Endpoint, can_connect
from tests.support import cached_run, run_variant, stack_document

INTERNET = Endpoint("34.8.121.39")
MODEL_API = Endpoint("104.18.6.192")
KUBE_API = Endpoint("10.10.0.10")  # the EKS API's private endpoint in the VPC
IMDS = Endpoint("169.254.169.254")
DNS = Endpoint("10.10.5.2", "kube-system", {"k8s-app": "kube-dns"})
KEDA = Endpoint("10.10.5.3", "keda", {"app": "keda-operator"})
ENVOY = Endpoint("10.10.5.4", "envoy-gateway-system", {"app.kubernetes.io/name": "envoy"})
ELSEWHERE = Endpoint("10.10.5.5", "monitoring", {"app": "prometheus"})


def policies(stack: str) -> list[dict]:
    return [o for o in declared_objects(cached_run(stack, False)) if o["kind"] == "NetworkPolicy"]


def agent_pod(namespace: str, component: str, ip: str) -> Endpoint:
    return Endpoint(
        ip, namespace, {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_COMPONENT: component}
    )


def listener_pod(name: str, ip: str = "10.10.3.3") -> Endpoint:
    return Endpoint(
        ip,
        f"listener-{name}",
        {"app.kubernetes.io/name": "langsmith-listener", "app.kubernetes.io/instance": name},
    )


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return policies("dev")


def test_agent_servers_reach_exactly_what_they_need(dev: list[dict]) -> None:
    api = agent_pod("agents-dev", "api-server", "10.10.2.5")
    queue = agent_pod("agents-dev", "queue", "10.10.2.6")
    postgres = agent_pod("agents-dev", "postgres", "10.10.2.7")
    redis = agent_pod("agents-dev", "redis", "10.10.2.8")
    for server in (api, queue):
        assert can_connect(dev, server, postgres, 5432)
        assert can_connect(dev, server, redis, 6379)
        assert can_connect(dev, server, MODEL_API, 443)
        assert can_connect(dev, server, DNS, 53, "UDP")
        assert not can_connect(dev, server, MODEL_API, 80)
    assert can_connect(dev, KEDA, postgres, 5432)  # the ScaledObject's pending-runs query
    assert not can_connect(dev, KEDA, redis, 6379)
    assert not can_connect(dev, postgres, INTERNET, 443)
    assert not can_connect(dev, redis, INTERNET, 443)


def test_the_listener_reaches_the_control_plane_the_api_and_its_agent_servers(dev: list[dict]) -> None:
    listener = listener_pod("dev")
    api = agent_pod("agents-dev", "api-server", "10.10.2.5")
    assert can_connect(dev, listener, INTERNET, 443)  # the LangSmith control plane
    assert can_connect(dev, listener, KUBE_API, 443)
    assert can_connect(dev, listener, api, 8000)  # GET /ok before DEPLOYED
    assert can_connect(dev, listener, DNS, 53, "UDP")
    assert not can_connect(dev, listener, agent_pod("agents-dev", "postgres", "10.10.2.7"), 5432)
    assert not can_connect(dev, listener, INTERNET, 80)
    for intruder in (ELSEWHERE, api, ENVOY, INTERNET):
        assert not can_connect(dev, intruder, listener, 8080)


def test_a_compromised_agent_server_is_contained(dev: list[dict]) -> None:
    api = agent_pod("agents-dev", "api-server", "10.10.2.5")
    assert not can_connect(dev, api, KUBE_API, 443)
    assert not can_connect(dev, api, IMDS, 80)
    assert not can_connect(dev, api, IMDS, 443)
    assert not can_connect(dev, api, listener_pod("dev"), 8080)
    assert not can_connect(dev, api, ELSEWHERE, 9090)
    # A pod the attacker starts some other way, without the listener's labels, gets only DNS.
    stray = Endpoint("10.10.2.9", "agents-dev", {"app": "mine"})
    assert can_connect(dev, stray, DNS, 53, "UDP")
    for target, port in (
        (INTERNET, 443),
        (KUBE_API, 443),
        (agent_pod("agents-dev", "postgres", "10.10.2.7"), 5432),
    ):
        assert not can_connect(dev, stray, target, port)
    assert not can_connect(dev, stray, api, 8000)


def test_agent_servers_are_reached_only_by_their_listeners_and_the_gateway() -> None:
    prod = policies("prod")
    for namespace in ("agents", "agents-batch"):
        api = agent_pod(namespace, "api-server", "10.30.2.5")
        assert can_connect(prod, listener_pod("prod"), api, 8000)
        assert can_connect(prod, ENVOY, api, 8000)
        assert not can_connect(prod, ELSEWHERE, api, 8000)
        assert not can_connect(prod, ENVOY, api, 9000)
    dev = policies("dev")
    assert not can_connect(dev, ENVOY, agent_pod("agents-dev", "api-server", "10.10.2.5"), 8000)


def test_namespaces_are_walled_off_from_each_other() -> None:
    layout = policies("example-namespace-per-workspace")
    a = agent_pod("workspace-a", "api-server", "10.43.2.5")
    b = agent_pod("workspace-b", "api-server", "10.43.3.5")
    assert not can_connect(layout, a, b, 8000)
    assert can_connect(layout, listener_pod("listener-b"), b, 8000)
    assert not can_connect(layout, listener_pod("listener-a"), b, 8000)  # each listener only its own
    assert can_connect(layout, Endpoint("10.43.1.1"), a, 8000)  # the ALB's IP targets, from the VPC


def test_managed_stores_are_reached_by_address_only_on_their_ports() -> None:
    prod = policies("prod")
    rds = Endpoint("10.30.40.12")
    api = agent_pod("agents", "api-server", "10.30.2.5")
    assert can_connect(prod, api, rds, 5432)
    assert can_connect(prod, api, rds, 6379)
    assert not can_connect(prod, api, rds, 22)
    assert can_connect(prod, listener_pod("prod"), rds, 5432)  # per-deployment databases (issue 14)
    assert not can_connect(prod, api, Endpoint("10.99.0.1"), 5432)  # outside the VPC's range


def _declared_policies(result) -> list[dict]:
    return [o for o in declared_objects(result) if o["kind"] == "NetworkPolicy"]


def test_the_cluster_itself_is_never_public_https_for_agent_servers(tmp_path) -> None:
    # "Public" is a property of the address, not of where it is: AWS lets a VPC use a publicly
    # routable CIDR (docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html), and the EKS
    # API's private endpoint, the interface endpoints and every pod then sit in it; an existing
    # cluster's API server may have a public address (AKS, GKE's public endpoint). A compromised
    # Agent Server must reach neither on 443, while the rest of the internet stays reachable.
    public_vpc = {"mode": "create", "cidr": "11.20.0.0/16", "az_count": 2, "interface_endpoints": []}
    layout = _declared_policies(run_variant(tmp_path, "dev", {"network": public_vpc}))
    api = agent_pod("agents-dev", "api-server", "11.20.2.5")
    assert not can_connect(layout, api, Endpoint("11.20.0.10"), 443)  # the EKS API's endpoint ENI
    assert can_connect(layout, api, MODEL_API, 443)
    assert can_connect(layout, api, agent_pod("agents-dev", "postgres", "11.20.2.7"), 5432)

    cluster = {
        **stack_cluster("example-existing-cluster"),
        "api_server_cidrs": ["20.50.1.4/32"],
        "api_server_port": 443,
    }
    existing = _declared_policies(run_variant(tmp_path, "example-existing-cluster", {"cluster": cluster}))
    api = agent_pod("agents", "api-server", "10.60.9.5")
    assert not can_connect(existing, api, Endpoint("20.50.1.4"), 443)  # the API server's public address
    assert can_connect(existing, api, MODEL_API, 443)
    assert can_connect(existing, listener_pod("onprem"), Endpoint("20.50.1.4"), 443)


def stack_cluster(stack: str) -> dict:
    return dict(stack_document(stack)["config"]["langsmith-dataplane:cluster"])
