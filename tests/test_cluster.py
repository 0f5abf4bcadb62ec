"""EKS cluster: endpoint, encryption, logging, access, node groups, IRSA, add-ons, Kubernetes provider."""

from __future__ import annotations

import json

import pytest

from components.cluster import irsa_trust_policy, kubeconfig
from components.config import principal_slug
from tests.support import cached_run, is_secret, named, of_type, one, run_variant
from tools.harness import SECRET, stack_names

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
K8S_PROVIDER = "pulumi:providers:kubernetes"
PUBLIC = {"public": True, "public_cidrs": ["203.0.113.0/24"]}
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ADDON = "aws:eks/addon:Addon"


def test_endpoint_is_private_by_default() -> None:
    vpc = one(cached_run("prod", preview=False), CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in vpc


def test_public_endpoint_only_with_its_allowlist(tmp_path) -> None:
    cluster = {"endpoint": {"public": True, "public_cidrs": ["198.51.100.0/24"]}}
    vpc = one(run_variant(tmp_path, "dev", {"cluster": cluster}), CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["publicAccessCidrs"] == ["198.51.100.0/24"]


def test_secrets_are_envelope_encrypted_with_a_rotating_key() -> None:
    result = cached_run("prod", preview=False)
    key = one(result, "aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    encryption = one(result, CLUSTER).inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    assert encryption["provider"]["keyArn"] == f"arn:aws:kms:us-east-2:123456789012:{key.name}"
    # The cluster role may use that key and nothing else.
    kms_policy = json.loads(named(result, "lsdp-prod-eks-cluster-kms").inputs["policy"])
    assert kms_policy["Statement"][0]["Resource"] == encryption["provider"]["keyArn"]


def test_control_plane_logging_and_api_access_mode(tmp_path) -> None:
    cluster = {"log_types": ["api", "audit", "scheduler"], "endpoint": PUBLIC}
    result = run_variant(tmp_path, "dev", {"cluster": cluster})
    cluster = one(result, CLUSTER).inputs
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "scheduler"]
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["version"] == "1.35"
    assert cluster["name"] == "lsdp-dev"


def test_admin_principals_get_access_entries_with_cluster_admin() -> None:
    result = cached_run("prod", preview=False)
    entries = {e.name: e.inputs for e in of_type(result, "aws:eks/accessEntry:AccessEntry")}
    assert {n: e["principalArn"] for n, e in entries.items()} == {
        "lsdp-prod-eks-deployer": "arn:aws:iam::123456789012:role/lsdp-prod-deployer",
        "lsdp-prod-eks-ci-lsdp-prod-ci-preview": "arn:aws:iam::123456789012:role/lsdp-prod-ci-preview",
        "lsdp-prod-eks-admin-platform-admin": "arn:aws:iam::123456789012:role/platform-admin",
    }
    assert {e["type"] for e in entries.values()} == {"STANDARD"}
    for association in of_type(result, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"):
        assert (
            association.inputs["policyArn"]
            == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        assert association.inputs["accessScope"] == {"type": "cluster"}
        assert association.inputs["principalArn"] == entries[association.name]["principalArn"]
    assert not of_type(cached_run("dev", preview=False), "aws:eks/accessEntry:AccessEntry")


def test_node_groups_follow_the_config() -> None:
    result = cached_run("prod", preview=False)
    groups = {g.name: g.inputs for g in of_type(result, NODE_GROUP)}
    assert set(groups) == {"lsdp-prod-eks-system", "lsdp-prod-eks-agents"}
    agents = groups["lsdp-prod-eks-agents"]
    assert agents["instanceTypes"] == ["m6i.2xlarge", "m6a.2xlarge"]
    assert agents["scalingConfig"] == {"minSize": 3.0, "desiredSize": 3.0, "maxSize": 12.0}
    assert agents["labels"] == {"role": "agents"}
    assert agents["capacityType"] == "ON_DEMAND"
    assert agents["amiType"] == "AL2023_x86_64_STANDARD"
    assert agents["subnetIds"] == [f"lsdp-prod-net-private-{i}-id" for i in range(3)]
    assert agents["launchTemplate"] == {"id": "lsdp-prod-eks-agents-id", "version": "1"}
    assert "diskSize" not in agents  # the launch template owns the disk


def test_nodes_carry_the_cluster_and_control_plane_egress_security_groups() -> None:
    result = cached_run("prod", preview=False)
    cluster_sg = result.outputs["clusterSecurityGroupId"]
    assert cluster_sg.startswith("sg-")
    for template in of_type(result, "aws:ec2/launchTemplate:LaunchTemplate"):
        inputs = template.inputs
        assert inputs["vpcSecurityGroupIds"] == [cluster_sg, "lsdp-prod-egress-sg-id"]
        ebs = inputs["blockDeviceMappings"][0]["ebs"]
        assert (ebs["volumeType"], ebs["volumeSize"], ebs["encrypted"]) == ("gp3", 50.0, "true")
        assert inputs["metadataOptions"]["httpTokens"] == "required"


def test_firewall_only_stack_gives_nodes_just_the_cluster_group(tmp_path) -> None:
    ghcr = [{"domain": "ghcr.io"}, {"domain": "pkg-containers.githubusercontent.com"}]
    network = {"az_count": 2, "egress": {"mode": "network-firewall", "extra_destinations": ghcr}}
    result = run_variant(tmp_path, "prod", {"network": network})
    for template in of_type(result, "aws:ec2/launchTemplate:LaunchTemplate"):
        assert template.inputs["vpcSecurityGroupIds"] == [result.outputs["clusterSecurityGroupId"]]


def test_oidc_provider_for_the_cluster_issuer() -> None:
    result = cached_run("prod", preview=False)
    oidc = one(result, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["url"].startswith("https://oidc.eks.us-east-2.amazonaws.com/id/")
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert result.outputs["oidcProviderArn"].endswith(oidc.inputs["url"].removeprefix("https://"))


def test_ebs_csi_irsa_role_trusts_only_its_service_account() -> None:
    result = cached_run("prod", preview=False)
    oidc = one(result, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    issuer = oidc.inputs["url"].removeprefix("https://")
    trust = json.loads(named(result, "lsdp-prod-eks-ebs-csi", "aws:iam/role:Role").inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Federated": result.outputs["oidcProviderArn"]}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{issuer}:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
            f"{issuer}:aud": "sts.amazonaws.com",
        }
    }
    addon = named(result, "lsdp-prod-eks-aws-ebs-csi-driver")
    assert addon.inputs["serviceAccountRoleArn"] == "arn:aws:iam:us-east-2:123456789012:lsdp-prod-eks-ebs-csi"
    policies = {
        r.inputs["policyArn"]
        for r in of_type(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name == "lsdp-prod-eks-ebs-csi"
    }
    # The managed policy is a service role: its ARN has the service-role/ path, and without it the
    # ARN does not exist (IAM NoSuchEntity at attach time). https://docs.aws.amazon.com/eks/latest/userguide/csi-iam-role.html
    assert policies == {"arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"}


def test_core_addons_and_their_order() -> None:
    result = cached_run("prod", preview=False)
    addons = {a.inputs["addonName"]: a for a in of_type(result, "aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver"}
    node_groups = {g.urn for g in of_type(result, NODE_GROUP)}
    for group in of_type(result, NODE_GROUP):
        assert {addons["vpc-cni"].urn, addons["kube-proxy"].urn} <= set(group.dependencies)
    for name in ("coredns", "aws-ebs-csi-driver"):
        assert node_groups <= set(addons[name].dependencies)
    assert one(result, CLUSTER).inputs["bootstrapSelfManagedAddons"] is False


@pytest.mark.parametrize("preview", [True, False])
def test_kubernetes_provider_is_explicit_secret_and_pinned_to_the_cluster(preview: bool) -> None:
    result = cached_run("prod", preview=preview)
    provider = one(result, K8S_PROVIDER)
    assert is_secret(provider.inputs["kubeconfig"])
    assert "clusterIdentifier" in provider.inputs
    if not preview:
        assert provider.inputs["clusterIdentifier"] == "arn:aws:eks:us-east-2:123456789012:lsdp-prod-eks-eks"
        config = json.loads(provider.inputs["kubeconfig"]["value"])
        assert config["users"][0]["user"]["exec"]["command"] == "aws"
    assert {g.urn for g in of_type(result, NODE_GROUP)} <= set(provider.dependencies)
    assert result.outputs["kubeconfig"] == SECRET
    for resource in result.resources:
        if resource.type.startswith("kubernetes:"):
            assert resource.provider.startswith(provider.urn + "::"), resource.name


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_uses_the_stacks_explicit_providers(stack: str) -> None:
    result = cached_run(stack, preview=False)
    # A stack on an existing cluster reached by kubeconfig needs no AWS provider at all.
    aws_providers = of_type(result, "pulumi:providers:aws")
    assert len(aws_providers) <= 1
    k8s_provider = one(result, K8S_PROVIDER)
    for resource in result.resources:
        if resource.type.startswith("aws:"):
            assert resource.provider.startswith(aws_providers[0].urn + "::"), resource.name
        elif resource.type.startswith("kubernetes:"):
            assert resource.provider.startswith(k8s_provider.urn + "::"), resource.name


def test_default_storage_class_is_encrypted_gp3_bound_on_first_consumer() -> None:
    result = cached_run("dev", preview=False)
    (gp3,) = of_type(result, "kubernetes:storage.k8s.io/v1:StorageClass")
    assert gp3.inputs["metadata"] == {
        "name": "gp3",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    }
    assert gp3.inputs["provisioner"] == "ebs.csi.aws.com"
    assert gp3.inputs["parameters"]["type"] == "gp3"
    assert gp3.inputs["parameters"]["encrypted"] == "true"
    assert gp3.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert named(result, "lsdp-dev-eks-aws-ebs-csi-driver").urn in gp3.dependencies
    assert not of_type(result, "kubernetes:storage.k8s.io/v1:StorageClassPatch")


def test_provisioned_volumes_carry_the_stack_tags() -> None:
    # The EBS CSI driver tags each volume with every StorageClass parameter named tagSpecification*
    # ("key=value"): https://github.com/kubernetes-sigs/aws-ebs-csi-driver/blob/master/docs/tagging.md
    result = cached_run("prod", preview=False)
    (gp3,) = of_type(result, "kubernetes:storage.k8s.io/v1:StorageClass")
    tags = dict(
        value.split("=", 1)
        for key, value in gp3.inputs["parameters"].items()
        if key.startswith("tagSpecification")
    )
    cluster_tags = one(result, CLUSTER).inputs["tags"]
    assert tags == {k: v for k, v in cluster_tags.items() if k != "Name"}
    assert tags["environment"] == "prod"
    assert tags["data-classification"] == "confidential"


def test_pure_helpers() -> None:
    config = json.loads(kubeconfig("c1", "https://x", "Q0E=", "eu-west-1"))
    assert config["clusters"][0]["cluster"] == {"server": "https://x", "certificate-authority-data": "Q0E="}
    assert config["users"][0]["user"]["exec"]["args"] == [
        "eks",
        "get-token",
        "--cluster-name",
        "c1",
        "--region",
        "eu-west-1",
        "--output",
        "json",
    ]
    trust = json.loads(irsa_trust_policy("arn:p", "https://oidc.example/id/X", "ns", "sa"))
    assert trust["Statement"][0]["Condition"]["StringEquals"]["oidc.example/id/X:sub"] == (
        "system:serviceaccount:ns:sa"
    )
    assert principal_slug("arn:aws:iam::123456789012:role/team/Platform.Admin") == "platform-admin"


# --- Managed policies and IRSA ---------------------------------------------------------------------


def test_each_addon_waits_for_its_irsa_policy_attachment() -> None:
    # An add-on created before its role's policy is attached starts without permissions (the VPC CNI
    # then cannot assign pod addresses): the add-on must depend on the attachment, not only the role.
    result = cached_run("prod", preview=False)
    for addon, role in (
        ("vpc-cni", "lsdp-prod-eks-vpc-cni"),
        ("aws-ebs-csi-driver", "lsdp-prod-eks-ebs-csi"),
    ):
        attachment = named(result, role, ATTACHMENT)
        assert attachment.urn in named(result, f"lsdp-prod-eks-{addon}", ADDON).dependencies


def test_every_attached_managed_policy_comes_from_the_table() -> None:
    from components.iam import MANAGED_POLICIES

    result = cached_run("staging", preview=False)
    arns = {r.inputs["policyArn"] for r in of_type(result, ATTACHMENT)}
    assert arns == {
        "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
        "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    }
    assert {arn.removeprefix("arn:aws:iam::aws:policy/") for arn in arns} == set(MANAGED_POLICIES.values())


# --- Upgrades ----------------------------------------------------------------------------------------


def test_node_groups_and_addons_follow_the_cluster_version() -> None:
    result = cached_run("prod", preview=False)
    cluster = one(result, CLUSTER)
    assert cluster.inputs["version"] == "1.35"
    assert cluster.inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    for group in of_type(result, NODE_GROUP):
        # The cluster's version output, so the group moves after the control plane.
        assert group.inputs["version"] == "1.35"
        assert cluster.urn in group.dependencies
    versions = {a.inputs["addonName"]: a.inputs["addonVersion"] for a in of_type(result, ADDON)}
    assert versions == dict.fromkeys(
        ("vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver"), "<EKS default for 1.35>"
    )
    assert result.outputs["addonVersions"] == versions


def _version_inputs(result) -> dict[str, object]:
    inputs: dict[str, object] = {"cluster": one(result, CLUSTER).inputs["version"]}
    inputs |= {g.name: g.inputs["version"] for g in of_type(result, NODE_GROUP)}
    inputs |= {a.name: a.inputs["addonVersion"] for a in of_type(result, ADDON)}
    return inputs


def test_changing_kubernetes_version_moves_control_plane_nodes_and_addons_together(tmp_path) -> None:
    base = _version_inputs(cached_run("staging", preview=False))
    cluster = {
        "kubernetes_version": "1.34",
        "endpoint": {"bastion": {}},
        "access": {"deployer_role_arn": "arn:aws:iam::123456789012:role/lsdp-staging-deployer"},
        "node_groups": [
            {
                "name": "default",
                "instance_types": ["m6i.xlarge"],
                "min_size": 2,
                "desired_size": 2,
                "max_size": 6,
            }
        ],
    }
    older = _version_inputs(run_variant(tmp_path, "staging", {"cluster": cluster}))
    assert base.keys() == older.keys()
    # Every version-bearing input changed, none stayed behind.
    assert [k for k in base if base[k] == older[k]] == []
    assert older["lsdp-staging-eks-coredns"] == "<EKS default for 1.34>"


def test_addon_versions_can_be_pinned(tmp_path) -> None:
    cluster = {"endpoint": PUBLIC, "addon_versions": {"coredns": "v1.12.4-eksbuild.1"}}
    result = run_variant(tmp_path, "dev", {"cluster": cluster})
    assert named(result, "lsdp-dev-eks-coredns").inputs["addonVersion"] == "v1.12.4-eksbuild.1"
    assert named(result, "lsdp-dev-eks-kube-proxy").inputs["addonVersion"] == "<EKS default for 1.35>"


def test_networking_addons_survive_their_own_deletion() -> None:
    # `preserve`: deleting the add-on resource leaves its DaemonSets on the nodes (without aws-node
    # no pod gets an address). https://docs.aws.amazon.com/eks/latest/APIReference/API_DeleteAddon.html
    result = cached_run("prod", preview=False)
    preserve = {a.inputs["addonName"]: a.inputs.get("preserve") for a in of_type(result, ADDON)}
    assert preserve == {"vpc-cni": True, "kube-proxy": True, "coredns": True, "aws-ebs-csi-driver": None}


# --- Production defaults -------------------------------------------------------------------------------


def test_control_plane_log_group_exists_before_the_cluster() -> None:
    # EKS writes to /aws/eks/<cluster>/cluster and creates the group itself (no retention) if it is
    # missing: ours must exist first, or creating it fails with ResourceAlreadyExistsException.
    result = cached_run("prod", preview=False)
    group = named(result, "lsdp-prod-eks-logs")
    assert group.inputs["name"] == "/aws/eks/lsdp-prod/cluster"
    assert group.inputs["retentionInDays"] == 90
    assert group.inputs["tags"]["environment"] == "prod"
    assert group.urn in one(result, CLUSTER).dependencies


def test_secrets_key_has_an_explicit_policy_for_the_stacks_account() -> None:
    result = cached_run("prod", preview=False)
    policy = json.loads(one(result, "aws:kms/key:Key").inputs["policy"])
    (statement,) = policy["Statement"]
    # AWS's default key policy, stated: the account's IAM policies govern the key.
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statement["Action"] == "kms:*"
    assert statement["Effect"] == "Allow"


def test_prod_protects_the_cluster_and_its_key_dev_does_not() -> None:
    prod, dev = cached_run("prod", preview=False), cached_run("dev", preview=False)
    for result, protected in ((prod, True), (dev, False)):
        assert one(result, CLUSTER).protect is protected
        assert one(result, "aws:kms/key:Key").protect is protected
    assert one(prod, CLUSTER).inputs["deletionProtection"] is True


# --- Reaching the private endpoint ---------------------------------------------------------------------


def test_private_access_sources_get_443_on_the_cluster_security_group(tmp_path) -> None:
    endpoint = {
        "private_access_cidrs": ["10.255.0.0/16"],
        "private_access_security_group_ids": ["sg-0123456789abcdef0"],
    }
    result = run_variant(tmp_path, "dev", {"cluster": {"endpoint": endpoint}})
    rules = {
        r.name: r.inputs
        for r in of_type(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if "-api-from-" in r.name
    }
    cluster_sg = result.outputs["clusterSecurityGroupId"]
    assert rules["lsdp-dev-eks-api-from-10-255-0-0-16"]["cidrIpv4"] == "10.255.0.0/16"
    assert (
        rules["lsdp-dev-eks-api-from-sg-0123456789abcdef0"]["referencedSecurityGroupId"]
        == "sg-0123456789abcdef0"
    )
    for rule in rules.values():
        assert (rule["securityGroupId"], rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == (
            cluster_sg,
            "tcp",
            443,
            443,
        )


def test_ssm_bastion_has_no_way_in_but_session_manager() -> None:
    result = cached_run("staging", preview=False)
    instance = one(result, "aws:ec2/instance:Instance").inputs
    assert instance["associatePublicIpAddress"] is False
    assert instance["metadataOptions"]["httpTokens"] == "required"
    assert "keyName" not in instance
    assert instance["rootBlockDevice"]["encrypted"] is True
    assert instance["subnetId"] == "lsdp-staging-net-private-0-id"
    sg = named(result, "lsdp-staging-eks-bastion-sg")
    assert "ingress" not in sg.inputs
    assert not [
        r
        for r in of_type(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == "lsdp-staging-eks-bastion-sg-id"
    ]
    (egress,) = [
        r
        for r in of_type(result, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if "bastion" in r.name
    ]
    assert (egress.inputs["cidrIpv4"], egress.inputs["fromPort"]) == ("10.20.0.0/16", 443)
    # The bastion may reach the API: 443 into the cluster security group from the bastion's group.
    api = named(result, "lsdp-staging-eks-api-from-bastion")
    assert api.inputs["referencedSecurityGroupId"] == "lsdp-staging-eks-bastion-sg-id"
    assert result.outputs["bastionInstanceId"] == "lsdp-staging-eks-bastion-id"
    assert (
        one(result, "aws:iam/instanceProfile:InstanceProfile").inputs["role"]
        == "lsdp-staging-eks-bastion-role"
    )


def test_bastion_image_matches_its_architecture(tmp_path) -> None:
    from components.bastion import AL2023_AMI_PARAMETERS
    from tools import fake_cloud

    arm = one(cached_run("staging", preview=False), "aws:ec2/instance:Instance").inputs  # t4g.nano
    assert (
        arm["ami"]
        == fake_cloud.invoke(
            "aws:ssm/getParameter:getParameter", {"name": AL2023_AMI_PARAMETERS["arm64"]}, "us-west-2"
        )["value"]
    )


def test_a_deployer_role_replaces_the_implicit_creator_entry() -> None:
    prod = cached_run("prod", preview=False)
    assert one(prod, CLUSTER).inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    provider = one(prod, K8S_PROVIDER)
    association = named(
        prod, "lsdp-prod-eks-deployer", "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
    )
    # The first Kubernetes call waits for the deployer's admin rights.
    assert association.urn in provider.dependencies
    dev = cached_run("dev", preview=False)
    assert one(dev, CLUSTER).inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is True
