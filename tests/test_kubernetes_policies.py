"""The policy pack's Kubernetes policies, each fed a program that breaks it (and one that does not)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import labels as lbl
from components.kubeobjects import declare
from policy import policies
from policy.offline import PolicyViolation, evaluate
from tests.kube_schemas import declared_objects
from tests.support import cached_run
from tools.harness import run_program, stack_names

RESTRICTED = "restricted-pod-security"
RBAC = "listener-namespaced-rbac-only"
DENY = "namespace-default-deny"


def violations_of(
    declare_objects: Callable[[pulumi.ResourceOptions], None], policy: str
) -> list[PolicyViolation]:
    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig="{}")
        declare_objects(pulumi.ResourceOptions(provider=provider))

    return [v for v in evaluate(run_program(program).resources) if v.policy == policy]


def _listener_deployment() -> dict[str, Any]:
    return next(o for o in declared_objects(cached_run("staging", False)) if o["kind"] == "Deployment")


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes_the_kubernetes_policies(stack: str) -> None:
    found = [v for v in evaluate(cached_run(stack, True).resources) if v.policy in (RESTRICTED, RBAC, DENY)]
    assert found == []


def test_labels_the_policies_read_are_the_ones_the_program_writes() -> None:
    assert policies.NAMESPACE_ROLE_LABEL == lbl.NAMESPACE_ROLE
    assert {lbl.AGENTS, lbl.LISTENER} == policies.NAMESPACE_ROLES
    assert policies.LISTENER_NAMESPACE_ROLE == lbl.LISTENER
    assert policies.LISTENER_LABEL == lbl.LISTENER_NAME
    assert policies.ENVIRONMENT_LABEL == lbl.ENVIRONMENT


# --- restricted-pod-security -----------------------------------------------------------------------


def _deployment_with(change: Callable[[dict[str, Any]], None]) -> list[str]:
    manifest = copy.deepcopy(_listener_deployment())
    change(manifest)
    return [v.message for v in violations_of(lambda opts: declare("d", manifest, opts), RESTRICTED)]


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_the_listener_deployment_is_restricted_and_pinned() -> None:
    assert _deployment_with(lambda m: None) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: _container(m)["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (lambda m: _container(m)["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
        (lambda m: _container(m)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "drop ALL"),
        (
            lambda m: _container(m)["securityContext"].update(
                capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}
            ),
            "NET_BIND_SERVICE",
        ),
        (lambda m: _container(m)["securityContext"].update(privileged=True), "privileged"),
        (
            lambda m: (
                m["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
                _container(m)["securityContext"].pop("runAsNonRoot"),
            ),
            "runAsNonRoot",
        ),
        (lambda m: m["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda m: m["spec"]["template"]["spec"].update(hostNetwork=True), "hostNetwork"),
        (
            lambda m: m["spec"]["template"]["spec"]["volumes"].append(
                {"name": "h", "hostPath": {"path": "/"}}
            ),
            "hostPath",
        ),
        (lambda m: _container(m).update(image="ghcr.io/acme/listener:1.0"), "pinned by digest"),
    ],
)
def test_a_weaker_workload_is_refused(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    messages = _deployment_with(change)
    assert any(expected in m for m in messages), messages


def test_without_an_environment_label_a_tag_is_refused() -> None:
    # The policy cannot tell such a workload is dev, so it insists on a digest.
    def unlabelled_tag(m: dict[str, Any]) -> None:
        m["metadata"]["labels"].pop(lbl.ENVIRONMENT)
        _container(m)["image"] = "ghcr.io/acme/listener:1.0"

    messages = _deployment_with(unlabelled_tag)
    assert any("environment label: missing" in m for m in messages), messages


def test_dev_may_run_a_tag() -> None:
    def dev_tag(m: dict[str, Any]) -> None:
        m["metadata"]["labels"][lbl.ENVIRONMENT] = "dev"
        _container(m)["image"] = "ghcr.io/acme/listener:1.0"

    assert _deployment_with(dev_tag) == []


# --- listener-namespaced-rbac-only ----------------------------------------------------------------


def _listener_identity(opts: pulumi.ResourceOptions) -> None:
    declare(
        "ns",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "listener-a", "labels": {lbl.NAMESPACE_ROLE: lbl.LISTENER}},
        },
        opts,
    )
    declare(
        "sa",
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "listener", "namespace": "listener-a", "labels": {lbl.LISTENER_NAME: "a"}},
        },
        opts,
    )


def _binding(kind: str, role_kind: str, subject: dict[str, Any], labels: dict[str, str] | None = None):
    def program(opts: pulumi.ResourceOptions) -> None:
        _listener_identity(opts)
        meta: dict[str, Any] = {"name": "grant", "labels": labels or {}}
        if kind == "RoleBinding":
            meta["namespace"] = "agents"
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": "admin"}
        # The program has no way to declare a ClusterRoleBinding (components.kubeobjects refuses
        # the kind), so the test declares one directly, as a hand edit would.
        cls = k8s.rbac.v1.ClusterRoleBinding if kind == "ClusterRoleBinding" else k8s.rbac.v1.RoleBinding
        cls("grant", metadata=meta, role_ref=ref, subjects=[subject], opts=opts)

    return program


LISTENER_SA = {"kind": "ServiceAccount", "name": "listener", "namespace": "listener-a"}


@pytest.mark.parametrize(
    "subject",
    [
        LISTENER_SA,
        {"kind": "ServiceAccount", "name": "other", "namespace": "listener-a"},
        {"kind": "Group", "name": "system:serviceaccounts", "apiGroup": "rbac.authorization.k8s.io"},
        {
            "kind": "Group",
            "name": "system:serviceaccounts:listener-a",
            "apiGroup": "rbac.authorization.k8s.io",
        },
        {
            "kind": "User",
            "name": "system:serviceaccount:listener-a:listener",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    ],
)
def test_a_cluster_role_binding_to_the_listener_is_refused(subject: dict[str, Any]) -> None:
    found = violations_of(_binding("ClusterRoleBinding", "ClusterRole", subject), RBAC)
    assert len(found) == 1
    assert "cluster-wide" in found[0].message


def test_a_role_binding_lending_the_listener_a_cluster_role_is_refused() -> None:
    found = violations_of(_binding("RoleBinding", "ClusterRole", LISTENER_SA), RBAC)
    assert [v.message for v in found] == [
        "grant: binds the listener to a ClusterRole; bind a Role from listener.kube's rules"
    ]
    assert violations_of(_binding("RoleBinding", "Role", LISTENER_SA), RBAC) == []


def test_other_cluster_role_bindings_are_not_this_policys_business() -> None:
    subject = {"kind": "ServiceAccount", "name": "keda-operator", "namespace": "keda"}
    assert violations_of(_binding("ClusterRoleBinding", "ClusterRole", subject), RBAC) == []


def test_a_cluster_role_made_for_the_listener_is_refused() -> None:
    def program(opts: pulumi.ResourceOptions) -> None:
        k8s.rbac.v1.ClusterRole(
            "cr", metadata={"name": "listener", "labels": {lbl.LISTENER_NAME: "a"}}, rules=[], opts=opts
        )

    assert len(violations_of(program, RBAC)) == 1


# --- namespace-default-deny -------------------------------------------------------------------------


def _namespace(opts: pulumi.ResourceOptions, role: str = lbl.AGENTS) -> None:
    declare(
        "ns",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "agents", "labels": {lbl.NAMESPACE_ROLE: role}},
        },
        opts,
    )


def _policy(opts: pulumi.ResourceOptions, spec: dict[str, Any], name: str = "p") -> None:
    declare(
        name,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "agents"},
            "spec": spec,
        },
        opts,
    )


DEFAULT_DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {"podSelector": {}, "policyTypes": ["Ingress"]},
        {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress", "Egress"]},
        {**DEFAULT_DENY, "egress": [{"ports": [{"port": 443}]}]},
    ],
)
def test_an_agent_namespace_without_a_default_deny_is_refused(spec: dict[str, Any] | None) -> None:
    def program(opts: pulumi.ResourceOptions) -> None:
        _namespace(opts)
        if spec is not None:
            _policy(opts, spec)

    found = violations_of(program, DENY)
    assert [v.message.split(" has ")[0] for v in found] == ["namespace agents (agents)"]


def test_a_default_deny_satisfies_it_and_other_namespaces_are_not_checked() -> None:
    def program(opts: pulumi.ResourceOptions) -> None:
        _namespace(opts, lbl.LISTENER)
        _policy(opts, DEFAULT_DENY)

    assert violations_of(program, DENY) == []

    def unrelated(opts: pulumi.ResourceOptions) -> None:
        declare("ns", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keda"}}, opts)

    assert violations_of(unrelated, DENY) == []
