"""NetworkPolicies: default deny in every namespace we own, then exactly the traffic that must flow.

Agent namespaces (where the listener runs Agent Servers):
* DNS to the cluster's resolver, for every pod;
* into an API server pod on 8000 only from the listeners that watch the namespace (their `GET /ok`
  check) and from the gateway or ingress controller;
* from API server and queue pods: HTTPS to public addresses (LangSmith tracing, model providers) but
  not to private ranges, so a compromised Agent Server cannot reach the Kubernetes API, the
  instance metadata service or internal services; HTTPS to a self-hosted LangSmith's addresses; and
  their stores: the in-cluster Postgres/Redis pods of the namespace, or the stores' CIDRs;
* into in-cluster Postgres from API server, queue and KEDA (its ScaledObject query); into Redis from
  API server and queue.

A listener's own namespace: DNS; HTTPS out (the control plane, the Kubernetes API on EKS); the API
servers' port 8000 in the namespaces it watches; the stores' CIDRs when it manages databases there
(`managed`/`external` stores). Nothing may connect in.

Pod selectors use the labels the listener itself puts on what it renders (`listener.naming`,
`listener.render.context`), so a renamed component cannot silently escape its policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from listener import naming
from listener.render.context import (
    API_PORT,
    COMPONENT_API,
    COMPONENT_POSTGRES,
    COMPONENT_QUEUE,
    COMPONENT_REDIS,
    POSTGRES_PORT,
    REDIS_PORT,
)

DEFAULT_DENY = "default-deny-all"
HTTPS = 443
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
"""RFC 1918, link-local (instance metadata) and carrier-grade NAT (EKS custom pod networking)."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (immutable), so it can be trusted in selectors."""


@dataclass(frozen=True)
class AgentTraffic:
    """Who may talk to the Agent Servers of one namespace, and where their stores are."""

    listener_namespaces: Sequence[str]
    """The namespaces of the listeners that watch this namespace (their health check)."""
    ingress_namespaces: Sequence[str] = ()
    """The gateway's or in-cluster ingress controller's namespaces."""
    ingress_cidrs: Sequence[str] = ()
    """Where an out-of-cluster load balancer's traffic comes from (e.g. ALB IP targets)."""
    store_cidrs: Sequence[str] = ()
    """Managed/external stores; empty means the stores run in the namespace."""
    keda_namespace: str | None = None
    """KEDA's namespace when KEDA scales on the in-cluster Postgres."""
    private_https_cidrs: Sequence[str] = ()
    """Private addresses Agent Servers may reach on 443: a self-hosted LangSmith (tracing)."""
    cluster_cidrs: Sequence[str] = ()
    """The cluster's own addresses (its VPC, its API server's endpoints). Those inside
    `PRIVATE_RANGES` are already excluded from the public HTTPS allow; any others (a VPC on a
    publicly routable range, an API server with a public address) are excluded too."""


@dataclass(frozen=True)
class ListenerTraffic:
    watched_namespaces: Sequence[str]
    store_cidrs: Sequence[str] = ()
    api_server_cidrs: Sequence[str] = ()
    """Where the Kubernetes API's endpoints are; empty means anywhere on `api_server_port`."""
    api_server_port: int = HTTPS
    pod_labels: Mapping[str, str] = field(default_factory=dict)


def _policy(name: str, namespace: str, labels: Mapping[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def _components(*names: str) -> dict[str, Any]:
    return {
        "matchLabels": {naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
        "matchExpressions": [{"key": naming.LABEL_COMPONENT, "operator": "In", "values": list(names)}],
    }


def _in_namespace(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _anywhere() -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": "0.0.0.0/0"}}]


def default_deny(namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Selects every pod and allows nothing: each other policy in the namespace only adds allows."""
    return _policy(DEFAULT_DENY, namespace, labels, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def allow_dns(namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    # CoreDNS pods carry k8s-app=kube-dns on EKS, kubeadm, GKE and AKS alike.
    resolver = {
        **_in_namespace("kube-system"),
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    return _policy(
        "allow-dns",
        namespace,
        labels,
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [resolver],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
    )


def public_https_exceptions(cluster_cidrs: Sequence[str]) -> list[str]:
    """What "public HTTPS" leaves out: the private ranges, plus whichever of the cluster's own ranges
    lie outside them. "Public" is an address property, not a location: a VPC may use a publicly
    routable CIDR (AWS allows it), and an existing cluster's API server may have a public address
    (AKS, GKE's public endpoint), which a 0.0.0.0/0-minus-private rule would let Agent Servers reach."""
    private = [ipaddress.IPv4Network(c) for c in PRIVATE_RANGES]
    extra = {
        network
        for network in (ipaddress.IPv4Network(c, strict=False) for c in cluster_cidrs)
        if not any(network.subnet_of(p) for p in private)
    }
    return [*PRIVATE_RANGES, *(str(n) for n in sorted(extra))]


def agent_namespace_policies(
    namespace: str, traffic: AgentTraffic, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    servers = _components(COMPONENT_API, COMPONENT_QUEUE)
    sources = [
        _in_namespace(ns) for ns in sorted({*traffic.listener_namespaces, *traffic.ingress_namespaces})
    ]
    sources += [{"ipBlock": {"cidr": cidr}} for cidr in traffic.ingress_cidrs]
    policies = [
        default_deny(namespace, labels),
        allow_dns(namespace, labels),
        _policy(
            "allow-agent-server-ingress",
            namespace,
            labels,
            {
                "podSelector": _components(COMPONENT_API),
                "policyTypes": ["Ingress"],
                "ingress": [{"from": sources, "ports": _tcp(API_PORT)}],
            },
        ),
    ]
    public = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": public_https_exceptions(traffic.cluster_cidrs)}}]
    egress: list[dict[str, Any]] = [{"to": public, "ports": _tcp(HTTPS)}]
    if traffic.private_https_cidrs:
        egress.append(
            {"to": [{"ipBlock": {"cidr": c}} for c in traffic.private_https_cidrs], "ports": _tcp(HTTPS)}
        )
    if traffic.store_cidrs:
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": c}} for c in traffic.store_cidrs],
                "ports": _tcp(POSTGRES_PORT, REDIS_PORT),
            }
        )
    else:
        egress += [
            {"to": [{"podSelector": _components(COMPONENT_POSTGRES)}], "ports": _tcp(POSTGRES_PORT)},
            {"to": [{"podSelector": _components(COMPONENT_REDIS)}], "ports": _tcp(REDIS_PORT)},
        ]
    policies.append(
        _policy(
            "allow-agent-server-egress",
            namespace,
            labels,
            {"podSelector": servers, "policyTypes": ["Egress"], "egress": egress},
        )
    )
    if not traffic.store_cidrs:
        postgres_clients: list[dict[str, Any]] = [{"podSelector": servers}]
        if traffic.keda_namespace:
            postgres_clients.append(_in_namespace(traffic.keda_namespace))
        policies += [
            _policy(
                "allow-postgres-ingress",
                namespace,
                labels,
                {
                    "podSelector": _components(COMPONENT_POSTGRES),
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": postgres_clients, "ports": _tcp(POSTGRES_PORT)}],
                },
            ),
            _policy(
                "allow-redis-ingress",
                namespace,
                labels,
                {
                    "podSelector": _components(COMPONENT_REDIS),
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": servers}], "ports": _tcp(REDIS_PORT)}],
                },
            ),
        ]
    return policies


def listener_namespace_policies(
    namespace: str, traffic: ListenerTraffic, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    pods = {"matchLabels": dict(traffic.pod_labels)}
    health_checks = [
        {**_in_namespace(ns), "podSelector": _components(COMPONENT_API)}
        for ns in sorted(traffic.watched_namespaces)
    ]
    egress: list[dict[str, Any]] = [
        {"to": _anywhere(), "ports": _tcp(HTTPS)},
        {"to": health_checks, "ports": _tcp(API_PORT)},
    ]
    if traffic.api_server_cidrs or traffic.api_server_port != HTTPS:
        api = [{"ipBlock": {"cidr": c}} for c in traffic.api_server_cidrs] or _anywhere()
        egress.append({"to": api, "ports": _tcp(traffic.api_server_port)})
    if traffic.store_cidrs:
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": c}} for c in traffic.store_cidrs],
                "ports": _tcp(POSTGRES_PORT, REDIS_PORT),
            }
        )
    return [
        default_deny(namespace, labels),
        allow_dns(namespace, labels),
        _policy(
            "allow-listener-egress",
            namespace,
            labels,
            {"podSelector": pods, "policyTypes": ["Egress"], "egress": egress},
        ),
    ]
