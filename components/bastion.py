"""An SSM-managed bastion for reaching a private EKS endpoint: no SSH, no public IP, no inbound rules.

Session Manager port forwarding (`AWS-StartPortForwardingSessionToRemoteHost`) carries the
connection from the operator's machine to the endpoint's private address through the SSM agent,
so the instance needs outbound HTTPS to the SSM endpoints and the cluster API, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import instance_architecture
from components.iam import assume_role_policy, managed_policy_arn

# Amazon Linux 2023's public SSM parameters (https://docs.aws.amazon.com/linux/al2023/ug/ec2.html):
# the image ships the SSM agent, which port forwarding needs.
AL2023_AMI_PARAMETERS: Mapping[str, str] = {
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
}


@dataclass(frozen=True)
class Bastion:
    instance: aws.ec2.Instance
    security_group: aws.ec2.SecurityGroup


def ssm_bastion(
    name: str,
    *,
    instance_type: str,
    vpc_id: pulumi.Input[str],
    vpc_cidr: str,
    subnet_id: pulumi.Input[str],
    partition: str,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> Bastion:
    child = pulumi.ResourceOptions(parent=parent)
    architecture = instance_architecture(instance_type) or "x86_64"
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
        description="SSM bastion: Session Manager only",
        tags={**tags, "Name": f"{name}-role"},
        opts=child,
    )
    attachment = aws.iam.RolePolicyAttachment(
        f"{name}-ssm",
        role=role.name,
        policy_arn=managed_policy_arn("AmazonSSMManagedInstanceCore", partition),
        opts=child,
    )
    profile = aws.iam.InstanceProfile(
        f"{name}-profile", role=role.name, tags={**tags, "Name": f"{name}-profile"}, opts=child
    )
    # No ingress at all; egress only HTTPS inside the VPC (the API endpoint's ENIs and the SSM
    # interface endpoints). The provider strips AWS's default allow-all egress from a group without
    # inline rules.
    sg = aws.ec2.SecurityGroup(
        f"{name}-sg",
        description="SSM bastion: no inbound; HTTPS to the VPC only",
        vpc_id=vpc_id,
        tags={**tags, "Name": f"{name}-sg"},
        opts=child,
    )
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-https-to-vpc",
        security_group_id=sg.id,
        cidr_ipv4=vpc_cidr,
        ip_protocol="tcp",
        from_port=443,
        to_port=443,
        description="HTTPS to the cluster API and the SSM endpoints",
        tags={**tags, "Name": f"{name}-https-to-vpc"},
        opts=child,
    )
    ami = aws.ssm.get_parameter_output(
        name=AL2023_AMI_PARAMETERS[architecture], opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    instance = aws.ec2.Instance(
        name,
        ami=ami.value,
        instance_type=instance_type,
        subnet_id=subnet_id,
        vpc_security_group_ids=[sg.id],
        iam_instance_profile=profile.name,
        associate_public_ip_address=False,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            volume_type="gp3", encrypted=True, delete_on_termination=True, tags={**tags, "Name": name}
        ),
        tags={**tags, "Name": name},
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[attachment],
            # The parameter moves with every AL2023 release; patching is the SSM agent's job, not a
            # reason to replace the instance on the next `pulumi up`.
            ignore_changes=["ami"],
        ),
    )
    return Bastion(instance=instance, security_group=sg)
