"""The EKS cluster: IAM, control plane, managed node groups, IRSA, core add-ons and the Kubernetes provider.

Built from raw `pulumi_aws` resources (not pulumi-eks) so that every piece is visible to the mocks,
the offline plan and the policy pack. Its `provider` attribute is the one explicit
`kubernetes.Provider` every in-cluster component must use (stacks disable default providers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import Cluster, NodeGroup

_MANAGED = "arn:aws:iam::aws:policy/"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
VPC_CNI_SERVICE_ACCOUNT = ("kube-system", "aws-node")
# EKS 1.30+ no longer marks gp2 as the default class; older clusters need it un-defaulted.
_GP2_DEFAULT_UNTIL = (1, 30)


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def irsa_trust_policy(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """Trust only one Kubernetes service account of this cluster (IRSA), and only for STS."""
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


def secrets_key_policy(key_arn: str) -> str:
    """What the cluster role needs to envelope-encrypt Secrets with the key, and nothing more."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                    "Resource": key_arn,
                }
            ],
        }
    )


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that gets short-lived tokens from `aws eks get-token` (the runner needs the AWS CLI)."""
    user = f"aws-{cluster_name}"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": user,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--region",
                                region,
                                "--output",
                                "json",
                            ],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def _field(obj: object, key: str) -> Any:
    """A nested output's field: typed output classes in a real run, sometimes plain dicts under mocks."""
    if obj is None:
        return None
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    return getattr(obj, key, None)


def principal_slug(arn: str) -> str:
    """A stable, readable resource-name part for an IAM principal (keyed by ARN, not list position)."""
    tail = arn.rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9-]+", "-", tail).strip("-")[:40] or "principal"


def gp2_is_default(kubernetes_version: str) -> bool:
    major, minor = (int(part) for part in kubernetes_version.split(".")[:2])
    return (major, minor) < _GP2_DEFAULT_UNTIL


@dataclass(frozen=True)
class EksClusterArgs:
    cluster: Cluster
    cluster_name: str
    region: str
    private_subnet_ids: pulumi.Input[Sequence[str]]
    node_security_group_ids: Sequence[pulumi.Input[str]]
    """Extra security groups for the node ENIs (the control-plane egress group), on top of the cluster's."""
    tags: Mapping[str, str]
    deletion_protection: bool = False
    """On in prod: deleting the cluster must be a deliberate two-step act."""
    vpc_cni_network_policy: bool = False
    """Have the VPC CNI enforce NetworkPolicies (its network policy agent; EKS 1.25+, CNI 1.14+)."""


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    """EKS's own cluster security group: on the control-plane ENIs and on every node."""
    node_role_arn: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    """Secret."""
    provider: k8s.Provider
    """The explicit Kubernetes provider for everything in this cluster."""

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("langsmith:infra:EksCluster", name, None, opts)
        self._name = name
        self._tags = dict(args.tags)
        cfg = args.cluster
        child = pulumi.ResourceOptions(parent=self)

        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=assume_role_policy("eks.amazonaws.com"),
            description=f"EKS control plane of {args.cluster_name}",
            tags=self._tagged(f"{name}-cluster-role"),
            opts=child,
        )
        cluster_attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn=_MANAGED + "AmazonEKSClusterPolicy",
            opts=child,
        )
        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=self._tagged(f"{name}-secrets"),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{args.cluster_name}-secrets",
            target_key_id=secrets_key.key_id,
            opts=child,
        )
        key_access = aws.iam.RolePolicy(
            f"{name}-cluster-kms",
            role=cluster_role.id,
            policy=secrets_key.arn.apply(secrets_key_policy),
            opts=child,
        )

        endpoint_cfg = cfg.endpoint
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=cfg.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=endpoint_cfg.public,
                public_access_cidrs=[str(c) for c in endpoint_cfg.public_cidrs]
                if endpoint_cfg.public
                else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
            ),
            enabled_cluster_log_types=list(cfg.log_types),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The identity running `pulumi up` must reach the API to create in-cluster resources. Do
                # not also list it in admin_principal_arns: EKS refuses a second entry for it.
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            # The core add-ons are installed below as managed add-ons, with versions EKS tracks,
            # instead of the unmanaged copies EKS would otherwise bootstrap.
            bootstrap_self_managed_addons=False,
            deletion_protection=args.deletion_protection,
            tags=self._tagged(args.cluster_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_attachment, key_access]),
        )
        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.endpoint = cluster.endpoint
        self.cluster_security_group_id = cluster.vpc_config.apply(
            lambda v: _field(v, "cluster_security_group_id")
        )

        for arn in cfg.admin_principal_arns:
            slug = principal_slug(arn)
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{slug}",
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                tags=self._tagged(f"{name}-admin-{slug}"),
                opts=child,
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{slug}",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child,
            )

        # IAM's OIDC provider for IRSA. No thumbprint: for an EKS issuer (a certificate chaining to a
        # CA IAM already trusts) IAM verifies the TLS chain itself and ignores thumbprints, so
        # fetching one (pulumi_tls.get_certificate, a live TLS call) would only add a network
        # dependency to every preview.
        self.oidc_issuer_url = cluster.identities.apply(
            lambda ids: _field((_field(ids[0], "oidcs") or [None])[0], "issuer") if ids else None
        )
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=self.oidc_issuer_url,
            client_id_lists=["sts.amazonaws.com"],
            tags=self._tagged(f"{name}-oidc"),
            opts=child,
        )
        self.oidc_provider_arn = oidc.arn

        cni_role = self._irsa_role("vpc-cni", oidc, VPC_CNI_SERVICE_ACCOUNT, "AmazonEKS_CNI_Policy")
        ebs_role = self._irsa_role("ebs-csi", oidc, EBS_CSI_SERVICE_ACCOUNT, "AmazonEBSCSIDriverPolicy")

        # Nodes need a CNI and kube-proxy before they can turn Ready, so these come before the node groups.
        # enableNetworkPolicy: docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html
        cni_settings = {"enableNetworkPolicy": "true"} if args.vpc_cni_network_policy else None
        networking_addons = [
            self._addon(
                cluster, "vpc-cni", service_account_role_arn=cni_role.arn, configuration=cni_settings
            ),
            self._addon(cluster, "kube-proxy"),
        ]

        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            description=f"EKS nodes of {args.cluster_name}",
            tags=self._tagged(f"{name}-node-role"),
            opts=child,
        )
        # The CNI's permissions are on its own IRSA role, not on every node (and thus every pod that
        # reaches the instance profile).
        node_attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}", role=node_role.name, policy_arn=_MANAGED + policy, opts=child
            )
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
        ]
        self.node_role_arn = node_role.arn

        node_sgs = [self.cluster_security_group_id, *args.node_security_group_ids]
        node_groups = [
            self._node_group(
                group,
                cluster,
                node_role,
                args.private_subnet_ids,
                node_sgs,
                [*node_attachments, *networking_addons],
            )
            for group in cfg.node_groups
        ]

        # Scheduled workloads: these add-ons wait for healthy pods, so they need nodes first.
        self._addon(cluster, "coredns", depends_on=node_groups)
        ebs_csi = self._addon(
            cluster, "aws-ebs-csi-driver", service_account_role_arn=ebs_role.arn, depends_on=node_groups
        )

        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
                lambda v: kubeconfig(v[0], v[1], _field(v[2], "data") or "", args.region)
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Only a new cluster replaces the provider (and with it every Kubernetes resource); any
            # other kubeconfig change is an in-place update.
            cluster_identifier=cluster.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=node_groups),
        )
        self._storage_classes(cfg.kubernetes_version, ebs_csi)

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "clusterArn": self.cluster_arn,
                "endpoint": self.endpoint,
                "clusterSecurityGroupId": self.cluster_security_group_id,
                "nodeRoleArn": self.node_role_arn,
                "oidcProviderArn": self.oidc_provider_arn,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _tagged(self, name: str) -> dict[str, str]:
        return {**self._tags, "Name": name}

    def _irsa_role(
        self,
        role: str,
        oidc: aws.iam.OpenIdConnectProvider,
        service_account: tuple[str, str],
        managed_policy: str,
    ) -> aws.iam.Role:
        namespace, account = service_account
        iam_role = aws.iam.Role(
            f"{self._name}-{role}",
            assume_role_policy=pulumi.Output.all(oidc.arn, oidc.url).apply(
                lambda v: irsa_trust_policy(v[0], v[1], namespace, account)
            ),
            description=f"IRSA role of {namespace}/{account}",
            tags=self._tagged(f"{self._name}-{role}"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicyAttachment(
            f"{self._name}-{role}",
            role=iam_role.name,
            policy_arn=_MANAGED + managed_policy,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return iam_role

    def _addon(
        self,
        cluster: aws.eks.Cluster,
        addon: str,
        *,
        service_account_role_arn: pulumi.Input[str] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        configuration: Mapping[str, Any] | None = None,
    ) -> aws.eks.Addon:
        # No addon_version: EKS installs its default for the cluster version. Pin versions here if
        # upgrades must be reviewed add-on by add-on.
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            service_account_role_arn=service_account_role_arn,
            configuration_values=json.dumps(dict(configuration), sort_keys=True) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=self._tagged(f"{self._name}-{addon}"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _node_group(
        self,
        group: NodeGroup,
        cluster: aws.eks.Cluster,
        node_role: aws.iam.Role,
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_ids: Sequence[pulumi.Input[str]],
        depends_on: Sequence[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        name = f"{self._name}-{group.name}"
        instance_tags = self._tagged(name)
        # A launch template, because it is the only way to put extra security groups on the node ENIs
        # (`vpc_config.security_group_ids` on the cluster applies to the control plane's ENIs only).
        # Listing groups here replaces EKS's default, so the cluster security group is listed too.
        template = aws.ec2.LaunchTemplate(
            name,
            description=f"EKS node group {group.name}",
            vpc_security_group_ids=list(security_group_ids),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=group.disk_size_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            # IMDSv2 only, one hop: pods cannot borrow the node role; they use IRSA. (Host-network
            # add-ons such as the VPC CNI are one hop away and unaffected.)
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=instance_tags)
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            tags=instance_tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.eks.NodeGroup(
            name,
            cluster_name=cluster.name,
            # A prefix, not a fixed name: changing instance types replaces the group, and the new one
            # must be created before the old one is deleted.
            node_group_name_prefix=f"{group.name}-",
            node_role_arn=node_role.arn,
            subnet_ids=subnet_ids,
            instance_types=list(group.instance_types),
            capacity_type=group.capacity_type,
            ami_type=group.ami_type,
            labels=dict(group.labels) or None,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=group.min_size, desired_size=group.desired_size, max_size=group.max_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            tags=instance_tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(depends_on),
                # The cluster autoscaler owns the current size once the group exists.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )

    def _storage_classes(self, kubernetes_version: str, ebs_csi: aws.eks.Addon) -> None:
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[ebs_csi])
        k8s.storage.v1.StorageClass(
            f"{self._name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="gp3", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            # The volume is created in the AZ the pod lands in, not in a random one.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=opts,
        )
        if gp2_is_default(kubernetes_version):
            # Two default classes make the choice depend on creation time; before 1.30 EKS ships gp2
            # as default, so take the annotation away (a server-side-apply patch of EKS's object).
            k8s.storage.v1.StorageClassPatch(
                f"{self._name}-gp2-not-default",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name="gp2", annotations={"storageclass.kubernetes.io/is-default-class": "false"}
                ),
                opts=opts,
            )
