"""The whole program per stack: runs in preview and up, parents, tags, outputs."""

from __future__ import annotations

import pytest

from components.config import REQUIRED_TAG_KEYS
from tests.support import of_type, stack_document
from tools.harness import SECRET, UNKNOWN, run_stack, stack_names

COMPONENTS = ("langsmith:infra:Network", "langsmith:infra:ControlPlaneEgress", "langsmith:infra:EksCluster")
# AWS types with no `tags` argument at all.
UNTAGGABLE = {
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:kms/alias:Alias",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
    "aws:networkfirewall/loggingConfiguration:LoggingConfiguration",
}


@pytest.mark.parametrize("stack", stack_names())
@pytest.mark.parametrize("preview", [True, False])
def test_every_stack_runs(stack: str, preview: bool) -> None:
    result = run_stack(stack, preview=preview)
    assert {r.type for r in result.resources} >= {*COMPONENTS, "aws:eks/cluster:Cluster"}
    assert result.outputs["kubeconfig"] == SECRET
    assert result.outputs["egressAllowlist"]["controlPlaneHosts"]
    if preview:
        assert result.outputs["clusterEndpoint"] == UNKNOWN
    else:
        assert result.outputs["clusterEndpoint"].startswith("https://")
        assert len(result.outputs["privateSubnetIds"]) >= 2


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_is_parented_to_its_component(stack: str) -> None:
    result = run_stack(stack, preview=True)
    stack_urn_prefix = "urn:pulumi:"
    components = {r.urn: r for r in result.resources if r.type in COMPONENTS}
    assert len(components) == 3
    for resource in result.resources:
        if resource.type in COMPONENTS or resource.type == "pulumi:providers:aws":
            assert resource.parent.startswith(stack_urn_prefix)
            assert resource.parent.endswith("pulumi:pulumi:Stack::langsmith-dataplane-" + stack)
            continue
        assert resource.parent in components, resource.name
        parent_type = components[resource.parent].type
        # The URN carries the parent chain, so a wrong parent also shows in every snapshot.
        assert f"{parent_type}${resource.type}::" in resource.urn
        assert resource.name.startswith(components[resource.parent].name + "-"), resource.name


@pytest.mark.parametrize("stack", stack_names())
def test_every_taggable_aws_resource_carries_the_stack_tags(stack: str) -> None:
    result = run_stack(stack, preview=False)
    stack_tags = stack_document(stack)["config"]["langsmith-dataplane:tags"]
    for resource in result.resources:
        if not resource.custom or not resource.type.startswith("aws:") or resource.type in UNTAGGABLE:
            continue
        tags = resource.inputs.get("tags")
        assert tags, f"{resource.type} {resource.name} has no tags"
        assert {k: tags.get(k) for k in stack_tags} == stack_tags, resource.name
        assert all(tags.get(k) for k in (*REQUIRED_TAG_KEYS, "Name", "environment", "dataplane")), (
            resource.name
        )


def test_resource_counts_follow_the_stack_shape() -> None:
    dev = run_stack("dev", preview=False)
    prod = run_stack("prod", preview=False)
    assert len(of_type(dev, "aws:ec2/natGateway:NatGateway")) == 1
    assert len(of_type(prod, "aws:ec2/natGateway:NatGateway")) == 3
    assert not of_type(dev, "aws:networkfirewall/firewall:Firewall")
    assert len(of_type(prod, "aws:networkfirewall/firewall:Firewall")) == 1
