"""The whole program per stack, under mocks: runs in preview and up, providers, parents, tags, outputs."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.config import REQUIRED_TAG_KEYS
from policy.offline import evaluate
from tests.support import cached_run, of_type, stack_document
from tools.harness import SECRET, UNKNOWN, run_program, stack_names

COMPONENTS = ("langsmith:infra:Network", "langsmith:infra:ControlPlaneEgress", "langsmith:infra:EksCluster")
IN_CLUSTER = ("langsmith:infra:ClusterAddons", "langsmith:infra:AgentNamespaces", "langsmith:infra:Listener")
EXPLICIT_PROVIDER = "kubernetes-explicit-provider"
EXISTING_CLUSTER_STACKS = [
    s
    for s in stack_names()
    if stack_document(s)["config"].get("langsmith-dataplane:cluster", {}).get("mode") == "existing"
]
EKS_STACKS = [s for s in stack_names() if s not in EXISTING_CLUSTER_STACKS]


def test_a_shipped_stack_uses_an_existing_cluster() -> None:
    assert EXISTING_CLUSTER_STACKS == ["example-existing-cluster"]


@pytest.mark.parametrize("stack", EXISTING_CLUSTER_STACKS)
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
def test_an_existing_cluster_gets_only_the_in_cluster_layer(stack: str, preview: bool) -> None:
    result = cached_run(stack, preview)
    types = {r.type for r in result.resources}
    assert types >= {*IN_CLUSTER, "langsmith:infra:ExistingCluster"}
    assert not [t for t in types if t.startswith("aws:") or t == "pulumi:providers:aws"]
    assert not types & set(COMPONENTS)
    assert result.outputs["controlPlaneUrl"].startswith("https://")


@pytest.mark.parametrize("stack", EKS_STACKS)
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
def test_every_stack_runs(stack: str, preview: bool) -> None:
    result = cached_run(stack, preview)
    assert {r.type for r in result.resources} >= {*COMPONENTS, *IN_CLUSTER, "aws:eks/cluster:Cluster"}
    assert result.outputs["kubeconfig"] == SECRET
    assert result.outputs["egressAllowlist"]["controlPlaneHosts"]
    assert result.outputs["controlPlaneUrl"].startswith("https://")
    if preview:
        assert result.outputs["clusterEndpoint"] == UNKNOWN
    else:
        assert result.outputs["clusterEndpoint"].startswith("https://")
        assert len(result.outputs["privateSubnetIds"]) >= 2


@pytest.mark.parametrize("stack", stack_names())
def test_every_kubernetes_resource_uses_the_clusters_provider(stack: str) -> None:
    resources = cached_run(stack, True).resources
    kubernetes = [r for r in resources if r.type.startswith("kubernetes:") and r.custom]
    assert kubernetes, "every stack creates Kubernetes resources (at least the gp3 StorageClass)"
    (provider,) = [r.urn for r in resources if r.type == "pulumi:providers:kubernetes"]
    assert all(r.provider.startswith(provider + "::") for r in kubernetes)
    assert [v for v in evaluate(resources) if v.policy == EXPLICIT_PROVIDER] == []


def test_the_provider_check_catches_a_default_provider() -> None:
    def program() -> None:
        provider = k8s.Provider("explicit", kubeconfig="{}")
        k8s.core.v1.ConfigMap("good", opts=pulumi.ResourceOptions(provider=provider))
        k8s.core.v1.ConfigMap("bad")

    violations = [v for v in evaluate(run_program(program).resources) if v.policy == EXPLICIT_PROVIDER]
    assert [v.urn.rsplit("::", 1)[-1] for v in violations] == ["bad"]


@pytest.mark.parametrize("stack", stack_names())
def test_every_aws_resource_uses_the_stacks_aws_provider(stack: str) -> None:
    resources = cached_run(stack, True).resources
    providers = [r.urn for r in resources if r.type == "pulumi:providers:aws"]
    assert len(providers) == (1 if stack in EKS_STACKS else 0)
    provider = providers[0] if providers else "<none>"
    strays = [
        r.name for r in resources if r.type.startswith("aws:") and not r.provider.startswith(provider + "::")
    ]
    assert strays == []


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_is_parented_to_its_component(stack: str) -> None:
    resources = cached_run(stack, True).resources
    components = {r.urn: r for r in resources if r.type.startswith("langsmith:infra:")}
    assert {c.type for c in components.values()} >= (
        set(COMPONENTS) if stack in EKS_STACKS else set(IN_CLUSTER)
    )
    for resource in resources:
        if resource.type.startswith("langsmith:infra:") or resource.type == "pulumi:providers:aws":
            assert resource.parent.endswith("pulumi:pulumi:Stack::langsmith-dataplane-" + stack)
            continue
        assert resource.parent in components, resource.name
        parent_type = components[resource.parent].type
        # The URN carries the parent chain, so a wrong parent also shows in every snapshot.
        assert f"{parent_type}${resource.type}::" in resource.urn
        assert resource.name.startswith(components[resource.parent].name + "-"), resource.name


@pytest.mark.parametrize("stack", stack_names())
def test_every_taggable_aws_resource_carries_the_stack_tags(stack: str) -> None:
    from policy.policies import is_taggable

    result = cached_run(stack, False)
    stack_tags = stack_document(stack)["config"]["langsmith-dataplane:tags"]
    for resource in result.resources:
        if not resource.custom or not is_taggable(resource.type, resource.inputs):
            continue
        tags = resource.inputs.get("tags")
        assert tags, f"{resource.type} {resource.name} has no tags"
        assert {k: tags.get(k) for k in stack_tags} == stack_tags, resource.name
        assert all(tags.get(k) for k in (*REQUIRED_TAG_KEYS, "Name", "environment", "dataplane")), (
            resource.name
        )


def test_resource_counts_follow_the_stack_shape() -> None:
    dev, prod = cached_run("dev", False), cached_run("prod", False)
    assert len(of_type(dev, "aws:ec2/natGateway:NatGateway")) == 1
    assert len(of_type(prod, "aws:ec2/natGateway:NatGateway")) == 3
    assert not of_type(dev, "aws:networkfirewall/firewall:Firewall")
    assert len(of_type(prod, "aws:networkfirewall/firewall:Firewall")) == 1


@pytest.mark.parametrize("stack", stack_names())
def test_the_aws_provider_only_works_in_the_stacks_account(stack: str) -> None:
    # allowed_account_ids: the provider checks the caller's account (sts:GetCallerIdentity) before
    # any call, so credentials for another account fail before anything is created.
    providers = of_type(cached_run(stack, True), "pulumi:providers:aws")
    if stack in EXISTING_CLUSTER_STACKS:
        assert providers == []  # a kubeconfig needs no AWS at all
        return
    (provider,) = providers
    account = str(stack_document(stack)["config"]["langsmith-dataplane:aws_account_id"])
    assert json.loads(provider.inputs["allowedAccountIds"]) == [account]
