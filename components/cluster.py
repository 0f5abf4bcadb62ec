"""The EKS cluster: IAM, control plane, managed node groups, IRSA, core add-ons and the Kubernetes provider.

Built from raw `pulumi_aws` resources (not pulumi-eks) so that every piece is visible to the mocks,
the offline plan and the policy pack. Its `provider` attribute is the one explicit
`kubernetes.Provider` every in-cluster component must use (stacks disable default providers).

Upgrades: `kubernetes_version` drives the control plane, every node group (`version`) and every
core add-on (EKS's default add-on version for that Kubernetes version, looked up at deploy time,
unless pinned), and Pulumi orders them by dependency: control plane, then vpc-cni and kube-proxy,
then the node groups, then CoreDNS and the EBS CSI driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.bastion import ssm_bastion
from components.config import Cluster, NodeGroup
from components.iam import (
    IrsaRole,
    assume_role_policy,
    irsa_role,
    irsa_trust_policy,
    managed_policy_arn,
)

__all__ = ["EksCluster", "EksClusterArgs", "assume_role_policy", "irsa_trust_policy", "kubeconfig"]

CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
VPC_CNI_SERVICE_ACCOUNT = ("kube-system", "aws-node")


def key_policy(account_id: str, partition: str = "aws") -> str:
    """The secrets key's own policy, stated rather than left to AWS's default.

    The account root statement is AWS's default key policy
    (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html): it lets the
    account's IAM policies grant use of the key (the cluster role's does, `secrets_key_policy`) and
    keeps the key manageable; without it the key can become unmanageable.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersKeyThroughIam",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        },
        sort_keys=True,
    )


def node_volumes(ami_type: str, disk_size_gib: int) -> list[tuple[str, int | None]]:
    """(device, size) of the EBS volumes a node group's launch template sets; size None keeps the AMI's.

    AL2023 has one root volume, `/dev/xvda`, which holds the images and pod storage. Bottlerocket boots
    from a small OS volume on `/dev/xvda` and keeps images and pod storage on a data volume on
    `/dev/xvdb` (https://github.com/bottlerocket-os/bottlerocket#default-volumes): `disk_size_gib` is
    that volume's size, and the OS volume keeps its snapshot's size. Both are encrypted.
    """
    if ami_type.startswith("BOTTLEROCKET_"):
        return [("/dev/xvda", None), ("/dev/xvdb", disk_size_gib)]
    return [("/dev/xvda", disk_size_gib)]


def control_plane_log_group(cluster_name: str) -> str:
    """The log group EKS writes control-plane logs to (fixed by EKS,
    https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html)."""
    return f"/aws/eks/{cluster_name}/cluster"


def volume_tag_parameters(tags: Mapping[str, str]) -> dict[str, str]:
    """StorageClass parameters that make the EBS CSI driver tag every volume it provisions.

    https://github.com/kubernetes-sigs/aws-ebs-csi-driver/blob/master/docs/tagging.md: each parameter
    whose key starts with `tagSpecification` is a `key=value` tag on the volume.
    """
    return {f"tagSpecification_{i}": f"{k}={v}" for i, (k, v) in enumerate(sorted(tags.items()), start=1)}


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


def _cidr_slug(cidr: str) -> str:
    return cidr.replace(".", "-").replace("/", "-")


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
    protect: bool = False
    """Pulumi `protect` on the cluster and its secrets key (prod): no destroy or replacement until lifted."""
    vpc_id: pulumi.Input[str] | None = None
    """Needed for `cluster.endpoint.bastion`."""
    vpc_cidr: str | None = None
    """Needed for `cluster.endpoint.bastion`."""
    account_id: pulumi.Input[str] | None = None
    """The stack's AWS account (for the key policy); looked up from the caller's identity when None."""
    partition: str = "aws"
    node_dependencies: Sequence[pulumi.Resource] = ()
    """What must exist before any node boots: the private subnets' routes out (NAT or firewall) and
    the VPC endpoints. Otherwise, in firewall mode (a firewall takes minutes to create), nodes come up
    with no route to the EC2, STS or ECR APIs, the VPC CNI cannot assign addresses, and the add-ons
    that wait for healthy pods time out."""


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
    bastion_instance_id: pulumi.Output[str] | None
    """The SSM bastion's instance id (`aws ssm start-session --target …`); None without a bastion."""
    addon_versions: dict[str, pulumi.Output[str]]
    """Core add-on name -> the version the stack installs."""

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("langsmith:infra:EksCluster", name, None, opts)
        self._name = name
        self._tags = dict(args.tags)
        self._partition = args.partition
        cfg = self._cluster_cfg = args.cluster
        child = pulumi.ResourceOptions(parent=self)

        partition = args.partition
        protected = pulumi.ResourceOptions(parent=self, protect=args.protect)

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
            policy_arn=managed_policy_arn("AmazonEKSClusterPolicy", partition),
            opts=child,
        )
        account_id = (
            args.account_id
            if args.account_id is not None
            else aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        )
        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(account_id).apply(lambda account: key_policy(account, partition)),
            tags=self._tagged(f"{name}-secrets"),
            opts=protected,
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
        # Created before the cluster: otherwise EKS creates the group itself on the first log line,
        # with no retention and no tags, and this create then fails with ResourceAlreadyExistsException
        # (terraform-aws-eks orders aws_cloudwatch_log_group before aws_eks_cluster for the same reason).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=control_plane_log_group(args.cluster_name),
            retention_in_days=cfg.log_retention_days,
            tags=self._tagged(f"{name}-logs"),
            opts=child,
        )

        endpoint_cfg = cfg.endpoint
        deployer = cfg.access.deployer_role_arn
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
                # With a deployer role the admin entries are all explicit (below). Without one, EKS
                # gives whoever creates the cluster an admin entry of its own; that identity must then
                # not be listed in admin_principal_arns too (EKS refuses a second entry for it).
                # Changing this after creation replaces the cluster: decide before the first `up`.
                bootstrap_cluster_creator_admin_permissions=deployer is None,
            ),
            # STANDARD: EKS upgrades the cluster itself when its version leaves standard support,
            # instead of silently billing extended support (AWS's default for API-created clusters).
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=cfg.upgrade_policy),
            # The core add-ons are installed below as managed add-ons, with versions EKS tracks,
            # instead of the unmanaged copies EKS would otherwise bootstrap.
            bootstrap_self_managed_addons=False,
            deletion_protection=args.deletion_protection,
            tags=self._tagged(args.cluster_name),
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                depends_on=[cluster_attachment, key_access, log_group],
            ),
        )
        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.endpoint = cluster.endpoint
        self.cluster_security_group_id = cluster.vpc_config.apply(
            lambda v: _field(v, "cluster_security_group_id")
        )

        admin_associations = self._access_entries(cluster, cfg)
        self._api_access_rules(cfg)
        self.bastion_instance_id = None
        if endpoint_cfg.bastion is not None:
            if args.vpc_id is None or args.vpc_cidr is None:
                raise ValueError(
                    "cluster.endpoint.bastion needs the VPC (EksClusterArgs.vpc_id and vpc_cidr)"
                )
            bastion = ssm_bastion(
                f"{name}-bastion",
                instance_type=endpoint_cfg.bastion.instance_type,
                vpc_id=args.vpc_id,
                vpc_cidr=args.vpc_cidr,
                subnet_id=pulumi.Output.from_input(args.private_subnet_ids).apply(lambda ids: ids[0]),
                partition=partition,
                tags=self._tags,
                parent=self,
            )
            self._api_ingress("bastion", referenced_security_group_id=bastion.security_group.id)
            self.bastion_instance_id = bastion.instance.id

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

        cni_role = self._irsa(oidc, "vpc-cni", VPC_CNI_SERVICE_ACCOUNT, "AmazonEKS_CNI_Policy")
        ebs_role = self._irsa(oidc, "ebs-csi", EBS_CSI_SERVICE_ACCOUNT, "AmazonEBSCSIDriverPolicy")
        self.addon_versions = {}

        # Nodes need a CNI and kube-proxy before they can turn Ready, so these come before the node
        # groups. `preserve` keeps their DaemonSets on the nodes if the add-on resource is ever deleted:
        # without them no pod gets an address or a Service route.
        # enableNetworkPolicy: docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html
        cni_settings = {"enableNetworkPolicy": "true"} if args.vpc_cni_network_policy else None
        networking_addons = [
            self._addon(cluster, "vpc-cni", role=cni_role, preserve=True, configuration=cni_settings),
            self._addon(cluster, "kube-proxy", preserve=True),
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
                f"{name}-node-{policy}",
                role=node_role.name,
                policy_arn=managed_policy_arn(policy, partition),
                opts=child,
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
                [*node_attachments, *networking_addons, *args.node_dependencies],
            )
            for group in cfg.node_groups
        ]

        # Scheduled workloads: these add-ons wait for healthy pods, so they need nodes first.
        self._addon(cluster, "coredns", preserve=True, depends_on=node_groups)
        ebs_csi = self._addon(cluster, "aws-ebs-csi-driver", role=ebs_role, depends_on=node_groups)

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
            # The admin access policies must exist before the first Kubernetes call, or it is Unauthorized.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*node_groups, *admin_associations]),
        )
        self._storage_classes(ebs_csi)

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "clusterArn": self.cluster_arn,
                "endpoint": self.endpoint,
                "clusterSecurityGroupId": self.cluster_security_group_id,
                "nodeRoleArn": self.node_role_arn,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcIssuerUrl": self.oidc_issuer_url,
                "kubeconfig": self.kubeconfig,
                "bastionInstanceId": self.bastion_instance_id,
                "addonVersions": self.addon_versions,
            }
        )

    def _tagged(self, name: str) -> dict[str, str]:
        return {**self._tags, "Name": name}

    def _access_entries(self, cluster: aws.eks.Cluster, cfg: Cluster) -> list[pulumi.Resource]:
        """Cluster-admin access entries, each keyed by its principal (never by list position)."""
        associations: list[pulumi.Resource] = []
        for _, role, arn in cfg.access_entries():
            resource_name = f"{self._name}-{role}"
            entry = aws.eks.AccessEntry(
                resource_name,
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                tags=self._tagged(resource_name),
                opts=pulumi.ResourceOptions(parent=self),
            )
            associations.append(
                aws.eks.AccessPolicyAssociation(
                    resource_name,
                    cluster_name=cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=CLUSTER_ADMIN_POLICY.format(partition=self._partition),
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        return associations

    def _api_access_rules(self, cfg: Cluster) -> None:
        """443 into the cluster security group (the private endpoint's ENIs) from the configured sources.

        EKS's cluster security group admits only itself; these explicit rules are how a VPN, a peered
        network or CI runners in the VPC reach the private endpoint
        (https://docs.aws.amazon.com/eks/latest/userguide/cluster-endpoint.html, "Accessing a private only API server").
        """
        for cidr in cfg.endpoint.private_access_cidrs:
            self._api_ingress(_cidr_slug(str(cidr)), cidr_ipv4=str(cidr))
        for group_id in cfg.endpoint.private_access_security_group_ids:
            self._api_ingress(group_id, referenced_security_group_id=group_id)

    def _api_ingress(self, source: str, **peer: pulumi.Input[str]) -> None:
        resource_name = f"{self._name}-api-from-{source}"
        aws.vpc.SecurityGroupIngressRule(
            resource_name,
            security_group_id=self.cluster_security_group_id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description=f"Kubernetes API from {source}",
            tags=self._tagged(resource_name),
            opts=pulumi.ResourceOptions(parent=self),
            **peer,  # type: ignore[arg-type]
        )

    def _irsa(
        self,
        oidc: aws.iam.OpenIdConnectProvider,
        role: str,
        service_account: tuple[str, str],
        managed_policy: str,
    ) -> IrsaRole:
        return irsa_role(
            f"{self._name}-{role}",
            oidc_provider_arn=oidc.arn,
            oidc_issuer_url=oidc.url,
            service_account=service_account,
            managed_policies=[managed_policy],
            partition=self._partition,
            tags=self._tags,
            parent=self,
        )

    def _addon(
        self,
        cluster: aws.eks.Cluster,
        addon: str,
        *,
        role: IrsaRole | None = None,
        preserve: bool | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        configuration: Mapping[str, Any] | None = None,
    ) -> aws.eks.Addon:
        version = self._addon_version(addon)
        self.addon_versions[addon] = version
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=version,
            service_account_role_arn=role.arn if role is not None else None,
            preserve=preserve,
            configuration_values=json.dumps(dict(configuration), sort_keys=True) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=self._tagged(f"{self._name}-{addon}"),
            # The IRSA role's policy attachments, not just the role: an add-on that starts before its
            # permissions exist fails its first AWS calls (and EKS reports the add-on degraded).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*depends_on, *(role.attachments if role is not None else ())]
            ),
        )

    def _addon_version(self, addon: str) -> pulumi.Output[str]:
        pinned = self._cluster_cfg.addon_versions.get(addon)  # type: ignore[call-overload]
        if pinned is not None:
            return pulumi.Output.from_input(pinned)
        # EKS's default version of the add-on for this Kubernetes version (most_recent=False), as
        # terraform-aws-eks resolves it (data "aws_eks_addon_version" with the cluster's version). It
        # follows `kubernetes_version`, and a real preview shows the version it resolved.
        return aws.eks.get_addon_version_output(
            addon_name=addon,
            kubernetes_version=self._cluster_cfg.kubernetes_version,
            most_recent=False,
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).version

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
                    device_name=device,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=size,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
                for device, size in node_volumes(group.ami_type, group.disk_size_gib)
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
            # The control plane's version: a version change updates the cluster first, then rolls
            # every node group to it (EKS refuses nodes newer than the control plane).
            version=cluster.version,
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

    def _storage_classes(self, ebs_csi: aws.eks.Addon) -> None:
        # EKS marks no class default from 1.30 on (every version this program accepts), so gp3 is the
        # only default class.
        k8s.storage.v1.StorageClass(
            f"{self._name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="gp3", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
            ),
            provisioner="ebs.csi.aws.com",
            # The stack's tags on every volume the driver provisions, as on every other AWS resource.
            parameters={
                "type": "gp3",
                "encrypted": "true",
                "csi.storage.k8s.io/fstype": "ext4",
                **volume_tag_parameters(self._tags),
            },
            # The volume is created in the AZ the pod lands in, not in a random one.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self.provider,
                depends_on=[ebs_csi],
                # A StorageClass's parameters are immutable, so a tag change replaces it; with a fixed
                # name the old one must go first. Provisioned volumes keep working without their class.
                delete_before_replace=True,
            ),
        )
