"""The listener's RBAC, rendered from the one table the listener package exports.

`listener.kube.WATCHED_NAMESPACE_RULES` lists every Kubernetes call the listener makes in a namespace
it watches, and `listener.kube.Cluster` refuses any call outside it; `OWN_NAMESPACE_RULES` is the same
for the listener's own namespace (leader election's Lease). The program never writes a rule itself:
it renders these tables, so the two halves cannot drift. Only namespaced Roles; never a ClusterRole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from listener import kube
from listener.kube import AccessRule


def watched_namespace_rules() -> tuple[AccessRule, ...]:
    """Read at render time (not import time), so the table is the listener's, whatever it says now."""
    return kube.WATCHED_NAMESPACE_RULES


def own_namespace_rules() -> tuple[AccessRule, ...]:
    return kube.OWN_NAMESPACE_RULES


def policy_rules(rules: Sequence[AccessRule]) -> list[dict[str, Any]]:
    """`AccessRule`s as a Role's `rules[]`, in the table's order."""
    return [
        {"apiGroups": [rule.api_group], "resources": list(rule.resources), "verbs": list(rule.verbs)}
        for rule in rules
    ]


def role(name: str, namespace: str, rules: Sequence[AccessRule], labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "rules": policy_rules(rules),
    }


def role_binding(
    name: str,
    namespace: str,
    *,
    role_name: str,
    service_account: tuple[str, str],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Binds `role_name` (a Role in the same namespace, never a ClusterRole) to one ServiceAccount."""
    account_namespace, account = service_account
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }
