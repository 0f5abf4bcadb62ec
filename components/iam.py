"""IAM shared by the components: the one table of AWS managed policies, trust policies, and IRSA roles.

Every AWS managed policy the program attaches is named in `MANAGED_POLICIES`, with its path: some
live under `service-role/`, and a wrong path is an ARN that does not exist, which IAM only reports
when `pulumi up` attaches it (NoSuchEntity). `irsa_role` is the one way to give a Kubernetes service
account an IAM role; the in-cluster add-ons use it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# name -> path under arn:<partition>:iam::aws:policy/. Each is listed in the AWS Managed Policy
# Reference (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/policy-list.html) and in
# the EKS user guide page that asks for it (linked per row).
MANAGED_POLICIES: Mapping[str, str] = {
    # https://docs.aws.amazon.com/eks/latest/userguide/cluster-iam-role.html
    "AmazonEKSClusterPolicy": "AmazonEKSClusterPolicy",
    # https://docs.aws.amazon.com/eks/latest/userguide/create-node-role.html
    "AmazonEKSWorkerNodePolicy": "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly": "AmazonEC2ContainerRegistryPullOnly",
    # https://docs.aws.amazon.com/eks/latest/userguide/cni-iam-role.html
    "AmazonEKS_CNI_Policy": "AmazonEKS_CNI_Policy",
    # https://docs.aws.amazon.com/eks/latest/userguide/csi-iam-role.html: a service role, hence the path.
    "AmazonEBSCSIDriverPolicy": "service-role/AmazonEBSCSIDriverPolicy",
    # https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-instance-permissions.html
    "AmazonSSMManagedInstanceCore": "AmazonSSMManagedInstanceCore",
}


def partition_for_region(region: str) -> str:
    """The ARN partition of a region (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html)."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def managed_policy_arn(name: str, partition: str = "aws") -> str:
    """The ARN of an AWS managed policy from the table; a name not in it is a programming error."""
    return f"arn:{partition}:iam::aws:policy/{MANAGED_POLICIES[name]}"


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def irsa_trust_policy(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """Trust only one Kubernetes service account of this cluster (IRSA), and only for STS.

    https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html: both the
    `sub` and the `aud` claims are pinned with StringEquals.
    """
    issuer = issuer_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


@dataclass(frozen=True)
class IrsaRole:
    role: aws.iam.Role
    attachments: tuple[pulumi.Resource, ...]
    """The role's policy attachments: make the workload (an add-on, a Deployment) depend on these, not
    only on the role, or it starts before its permissions exist and fails its first AWS calls."""

    @property
    def arn(self) -> pulumi.Output[str]:
        return self.role.arn


def irsa_role(
    name: str,
    *,
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer_url: pulumi.Input[str],
    service_account: tuple[str, str],
    managed_policies: Sequence[str] = (),
    inline_policy: pulumi.Input[str] | None = None,
    partition: str = "aws",
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> IrsaRole:
    """An IAM role only `service_account` (namespace, name) of one cluster can assume, with its policies.

    `managed_policies` are names from `MANAGED_POLICIES`; `inline_policy` is a JSON policy document.
    Resources are named `name` (role), `name` (one attachment) or `name-<policy>` (several), and
    `name` (inline policy); they are children of `parent` and inherit its providers.
    """
    namespace, account = service_account
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.all(oidc_provider_arn, oidc_issuer_url).apply(
            lambda v: irsa_trust_policy(v[0], v[1], namespace, account)
        ),
        description=f"IRSA role of {namespace}/{account}",
        tags={**tags, "Name": name},
        opts=child,
    )
    attachments: list[pulumi.Resource] = [
        aws.iam.RolePolicyAttachment(
            name if len(managed_policies) == 1 else f"{name}-{policy}",
            role=role.name,
            policy_arn=managed_policy_arn(policy, partition),
            opts=child,
        )
        for policy in managed_policies
    ]
    if inline_policy is not None:
        attachments.append(aws.iam.RolePolicy(name, role=role.id, policy=inline_policy, opts=child))
    return IrsaRole(role=role, attachments=tuple(attachments))
