"""EKS cluster: endpoint, encryption, logging, access, node groups, IRSA, add-ons, Kubernetes provider."""

from __future__ import annotations

import json

import pytest

from components.cluster import gp2_is_default, irsa_trust_policy, kubeconfig, principal_slug
from tests.support import cached_run, is_secret, named, of_type, one, run_variant
from tools.harness import SECRET, stack_names

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
K8S_PROVIDER = "pulumi:providers:kubernetes"


def test_endpoint_is_private_by_default() -> None:
    vpc = one(cached_run("dev", preview=False), CLUSTER).inputs["vpcConfig"]
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
    result = run_variant(tmp_path, "dev", {"cluster": {"log_types": ["api", "audit", "scheduler"]}})
    cluster = one(result, CLUSTER).inputs
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "scheduler"]
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["version"] == "1.33"
    assert cluster["name"] == "lsdp-dev"


def test_admin_principals_get_access_entries_with_cluster_admin() -> None:
    result = cached_run("prod", preview=False)
    entry = one(result, "aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == "arn:aws:iam::123456789012:role/platform-admin"
    assert entry.inputs["type"] == "STANDARD"
    association = one(result, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert (
        association.inputs["policyArn"]
        == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    )
    assert association.inputs["accessScope"] == {"type": "cluster"}
    assert association.inputs["principalArn"] == entry.inputs["principalArn"]
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
    network = {"az_count": 2, "egress": {"mode": "network-firewall"}}
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
    assert policies == {"arn:aws:iam::aws:policy/AmazonEBSCSIDriverPolicy"}


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


def test_gp2_is_undefaulted_only_where_eks_makes_it_default(tmp_path) -> None:
    assert gp2_is_default("1.29")
    assert not gp2_is_default("1.30")
    # The pinned add-ons do not support 1.29 (components/addon_versions.py), so they are off here.
    result = run_variant(
        tmp_path,
        "dev",
        {"cluster": {"kubernetes_version": "1.29"}, "addons": {"keda": False, "cluster_autoscaler": False}},
    )
    patch = one(result, "kubernetes:storage.k8s.io/v1:StorageClassPatch")
    assert patch.inputs["metadata"]["name"] == "gp2"
    assert patch.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "false"}


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
