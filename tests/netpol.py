"""A small evaluator of Kubernetes NetworkPolicy semantics, to ask "may A connect to B on port P?".

The rules, from kubernetes.io/docs/concepts/services-networking/network-policies/:
* a pod is isolated for ingress (egress) when any policy in its namespace selects it and lists
  `Ingress` (`Egress`) in `policyTypes`; a non-isolated pod allows everything in that direction;
* an isolated pod allows a connection when any selecting policy has a rule whose peers and ports
  both match (no `from`/`to` = every peer, no `ports` = every port); policies only add up;
* a connection needs the source's egress *and* the destination's ingress to allow it;
* `namespaceSelector` and `podSelector` in one peer must both match; a `podSelector` alone means the
  policy's own namespace; `ipBlock` matches by address, minus its `except` ranges.
Pod IPs are matched by `ipBlock` too (with the VPC CNI pods have VPC addresses), which is the
stricter reading for the private-range exclusions we rely on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    ip: str
    namespace: str | None = None
    """None for an address outside the cluster."""
    labels: Mapping[str, str] = field(default_factory=dict)


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if other.namespace is None:
        return False
    namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], other.labels)


def _port_matches(ports: Sequence[Mapping[str, Any]] | None, protocol: str, port: int) -> bool:
    return not ports or any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    )


def _allowed(
    policies: Sequence[Mapping[str, Any]],
    pod: Endpoint,
    other: Endpoint,
    direction: str,
    protocol: str,
    port: int,
) -> bool:
    if pod.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in (p["spec"].get("policyTypes") or [])
        and _selects(p["spec"].get("podSelector"), pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), protocol, port):
                return True
    return False


def can_connect(
    policies: Sequence[Mapping[str, Any]],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    return _allowed(policies, source, destination, "egress", protocol, port) and _allowed(
        policies, destination, source, "ingress", protocol, port
    )
