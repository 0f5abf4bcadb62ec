"""The managed-policy table and the IRSA helper the components (and the in-cluster add-ons) share."""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws
import pytest

from components.iam import MANAGED_POLICIES, irsa_role, managed_policy_arn, partition_for_region
from tools.harness import run_program

# An AWS managed policy ARN: arn:<partition>:iam::aws:policy/<path><name>, the account field being the
# literal "aws" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html). Policy names are
# [\w+=,.@-]; paths are /-separated segments of the same characters.
MANAGED_POLICY_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::aws:policy/([\w+=,.@-]+/)*[\w+=,.@-]{1,128}$")

# Which managed policies AWS keeps under a path, from each policy's page in the AWS Managed Policy
# Reference (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/policy-list.html).
SERVICE_ROLE_POLICIES = {"AmazonEBSCSIDriverPolicy"}


@pytest.mark.parametrize("name", sorted(MANAGED_POLICIES))
def test_every_managed_policy_arn_has_aws_shape(name: str) -> None:
    arn = managed_policy_arn(name)
    assert MANAGED_POLICY_ARN.match(arn), arn
    assert arn.endswith("/" + name)
    assert ("/service-role/" in arn) == (name in SERVICE_ROLE_POLICIES)


def test_the_ebs_csi_policy_is_a_service_role_policy() -> None:
    # arn:aws:iam::aws:policy/AmazonEBSCSIDriverPolicy does not exist (NoSuchEntity on attach).
    assert managed_policy_arn("AmazonEBSCSIDriverPolicy") == (
        "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    )


def test_a_policy_outside_the_table_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        managed_policy_arn("AmazonEBSCSIDriverPolicyTypo")


@pytest.mark.parametrize(
    ("region", "partition"), [("us-east-1", "aws"), ("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")]
)
def test_partitions(region: str, partition: str) -> None:
    assert partition_for_region(region) == partition
    assert MANAGED_POLICY_ARN.match(managed_policy_arn("AmazonEKS_CNI_Policy", partition))


def test_irsa_role_trusts_one_service_account_and_returns_its_attachments() -> None:
    def program() -> None:
        provider = aws.Provider("aws", region="us-east-1")
        parent = pulumi.ComponentResource(
            "test:index:Parent", "parent", None, pulumi.ResourceOptions(provider=provider)
        )
        role = irsa_role(
            "lbc",
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X",
            oidc_issuer_url="https://oidc.eks.us-east-1.amazonaws.com/id/X",
            service_account=("kube-system", "aws-load-balancer-controller"),
            managed_policies=["AmazonEKS_CNI_Policy", "AmazonEBSCSIDriverPolicy"],
            inline_policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
            tags={"owner": "me"},
            parent=parent,
        )
        pulumi.export("attachments", [a.urn for a in role.attachments])

    result = run_program(program, preview=False)
    roles = [r for r in result.resources if r.type == "aws:iam/role:Role"]
    (role,) = roles
    trust = json.loads(role.inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert condition == {
        "oidc.eks.us-east-1.amazonaws.com/id/X:sub": "system:serviceaccount:kube-system:aws-load-balancer-controller",
        "oidc.eks.us-east-1.amazonaws.com/id/X:aud": "sts.amazonaws.com",
    }
    attachments = [r for r in result.resources if r.urn in result.outputs["attachments"]]
    assert sorted(a.type for a in attachments) == [
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    ]
    assert {a.name for a in attachments} == {
        "lbc",
        "lbc-AmazonEKS_CNI_Policy",
        "lbc-AmazonEBSCSIDriverPolicy",
    }
    assert role.inputs["tags"] == {"owner": "me", "Name": "lbc"}
