"""Cluster add-ons: what Agent Servers and listeners need from the cluster, pinned here.

Each add-on is a `helm.v3.Release` with its chart version and values as plain inputs (visible in the
plan; nothing is fetched at plan time), or first-class resources:

| add-on | why |
|---|---|
| KEDA | Agent Server queue autoscaling (ScaledObjects); installed before any listener (helm#505) |
| metrics-server | what HorizontalPodAutoscalers read when KEDA is off |
| Envoy Gateway + Gateway API CRDs + one shared Gateway | routing to Agent Servers in several namespaces (§11: an Ingress cannot) |
| AWS Load Balancer Controller + IRSA | an NLB for the Gateway (or ALBs for Ingresses) on EKS |
| cluster-autoscaler + IRSA | grows the managed node groups when Agent Servers do not fit |
| VPC CNI network policy | makes the NetworkPolicies in our namespaces actually apply (EKS); set on the add-on in `components.cluster` |

Why cluster-autoscaler and not Karpenter: the cluster is built from EKS managed node groups, which
the autoscaler scales in place (their ASGs already carry its discovery tags), so it needs one IAM
role and a chart. Karpenter would replace those node groups with its own provisioning: a node IAM
role and instance profile, an SQS interruption queue with EventBridge rules, NodePool/EC2NodeClass
objects, and access-entry changes, all on the AWS side another component owns; worth it for
bin-packing at scale, not as a default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels as lbl
from components.addon_versions import (
    AWS_LOAD_BALANCER_CONTROLLER,
    CLUSTER_AUTOSCALER,
    CLUSTER_AUTOSCALER_IMAGES,
    ENVOY_GATEWAY,
    ENVOY_PROXY_CONFIG,
    GATEWAY_CLASS,
    GATEWAY_CONTROLLER,
    GATEWAY_NAME,
    KEDA,
    METRICS_SERVER,
    Chart,
    selected,
)
from components.config import Addons, Routing
from components.iam import IrsaRole, irsa_role
from components.kubeobjects import declare


@dataclass(frozen=True)
class EksFacts:
    """What the EKS-only add-ons need to know about the cluster."""

    cluster_name: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    tags: Mapping[str, str]
    partition: str = "aws"


# --- IAM (EKS) -------------------------------------------------------------------------------------


def cluster_autoscaler_policy(cluster_name: str) -> str:
    """Scale only this cluster's node groups: writes are limited to ASGs tagged for this cluster, which
    EKS managed node groups are (docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html);
    reads are account-wide because the Describe calls do not support resource conditions. From the
    cluster-autoscaler AWS README's minimal policy (kubernetes/autoscaler, cloudprovider/aws)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:SetDesiredCapacity",
                        "autoscaling:TerminateInstanceInAutoScalingGroup",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                    },
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                        "eks:DescribeNodegroup",
                    ],
                    "Resource": "*",
                },
            ],
        },
        sort_keys=True,
    )


_LBC_TAG = "elbv2.k8s.aws/cluster"


def load_balancer_controller_policy(partition: str = "aws") -> str:
    """The AWS Load Balancer Controller's permissions, grouped as in its published policy
    (kubernetes-sigs/aws-load-balancer-controller docs/install/iam_policy.json for v2.13): read
    anything; create security groups, load balancers and target groups only carrying the controller's
    cluster tag, and change or delete only what carries it. Re-check this list against that file
    whenever the chart pin moves.

    Resource ARNs carry the stack's partition: upstream publishes the same policy with `arn:aws-us-gov:`
    and `arn:aws-cn:` for GovCloud and China (iam_policy_us-gov.json, iam_policy_cn.json), and an
    `arn:aws:` resource never matches a resource there, so every tagging call would be denied."""
    arn = f"arn:{partition}"
    tagged_request = {"Null": {f"aws:RequestTag/{_LBC_TAG}": "false"}}
    tagged_resource = {"Null": {f"aws:ResourceTag/{_LBC_TAG}": "false"}}
    statements: list[dict[str, Any]] = [
        {
            "Action": ["iam:CreateServiceLinkedRole"],
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
        },
        {
            "Action": [
                "ec2:DescribeAccountAttributes",
                "ec2:DescribeAddresses",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInternetGateways",
                "ec2:DescribeVpcs",
                "ec2:DescribeVpcPeeringConnections",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeTags",
                "ec2:DescribeRouteTables",
                "ec2:DescribeIpamPools",
                "ec2:GetCoipPoolUsage",
                "ec2:DescribeCoipPools",
                "ec2:GetSecurityGroupsForVpc",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeLoadBalancerAttributes",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeListenerAttributes",
                "elasticloadbalancing:DescribeListenerCertificates",
                "elasticloadbalancing:DescribeSSLPolicies",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTrustStores",
                "elasticloadbalancing:DescribeCapacityReservation",
            ],
            "Resource": "*",
        },
        {
            "Action": [
                "cognito-idp:DescribeUserPoolClient",
                "acm:ListCertificates",
                "acm:DescribeCertificate",
                "iam:ListServerCertificates",
                "iam:GetServerCertificate",
                "waf-regional:GetWebACL",
                "waf-regional:GetWebACLForResource",
                "waf-regional:AssociateWebACL",
                "waf-regional:DisassociateWebACL",
                "wafv2:GetWebACL",
                "wafv2:GetWebACLForResource",
                "wafv2:AssociateWebACL",
                "wafv2:DisassociateWebACL",
                "shield:GetSubscriptionState",
                "shield:DescribeProtection",
                "shield:CreateProtection",
                "shield:DeleteProtection",
            ],
            "Resource": "*",
        },
        {"Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"], "Resource": "*"},
        {"Action": ["ec2:CreateSecurityGroup"], "Resource": "*"},
        {
            "Action": ["ec2:CreateTags"],
            "Resource": f"{arn}:ec2:*:*:security-group/*",
            "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **tagged_request},
        },
        {
            "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": f"{arn}:ec2:*:*:security-group/*",
            "Condition": {
                "Null": {f"aws:RequestTag/{_LBC_TAG}": "true", f"aws:ResourceTag/{_LBC_TAG}": "false"}
            },
        },
        {
            "Action": [
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
            ],
            "Resource": "*",
            "Condition": tagged_resource,
        },
        {
            "Action": ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
            "Resource": "*",
            "Condition": tagged_request,
        },
        {
            "Action": [
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
            ],
            "Resource": "*",
        },
        {
            "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            "Resource": [
                f"{arn}:elasticloadbalancing:*:*:targetgroup/*/*",
                f"{arn}:elasticloadbalancing:*:*:loadbalancer/net/*/*",
                f"{arn}:elasticloadbalancing:*:*:loadbalancer/app/*/*",
            ],
            "Condition": {
                "Null": {f"aws:RequestTag/{_LBC_TAG}": "true", f"aws:ResourceTag/{_LBC_TAG}": "false"}
            },
        },
        {
            "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            "Resource": [
                f"{arn}:elasticloadbalancing:*:*:listener/net/*/*/*",
                f"{arn}:elasticloadbalancing:*:*:listener/app/*/*/*",
                f"{arn}:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
                f"{arn}:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
            ],
        },
        {
            "Action": [
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:SetIpAddressType",
                "elasticloadbalancing:SetSecurityGroups",
                "elasticloadbalancing:SetSubnets",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyListenerAttributes",
                "elasticloadbalancing:ModifyCapacityReservation",
            ],
            "Resource": "*",
            "Condition": tagged_resource,
        },
        {
            "Action": ["elasticloadbalancing:AddTags"],
            "Resource": [
                f"{arn}:elasticloadbalancing:*:*:targetgroup/*/*",
                f"{arn}:elasticloadbalancing:*:*:loadbalancer/net/*/*",
                f"{arn}:elasticloadbalancing:*:*:loadbalancer/app/*/*",
            ],
            "Condition": {
                "StringEquals": {
                    "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]
                },
                **tagged_request,
            },
        },
        {
            "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
            "Resource": f"{arn}:elasticloadbalancing:*:*:targetgroup/*/*",
        },
        {
            "Action": [
                "elasticloadbalancing:SetWebAcl",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:AddListenerCertificates",
                "elasticloadbalancing:RemoveListenerCertificates",
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:SetRulePriorities",
            ],
            "Resource": "*",
        },
    ]
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}, sort_keys=True
    )


# --- Helm values (pure) ----------------------------------------------------------------------------

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"


def keda_values() -> dict[str, Any]:
    # The chart's defaults run non-root with a read-only root filesystem; only pin the CRD handling:
    # CRDs are kept on uninstall so deleting the add-on never deletes every ScaledObject with it.
    return {"crds": {"install": True, "additionalAnnotations": {"helm.sh/resource-policy": "keep"}}}


def metrics_server_values() -> dict[str, Any]:
    return {"replicas": 2, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}


def load_balancer_controller_values(facts: EksFacts, role_arn: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "clusterName": facts.cluster_name,
        "region": facts.region,
        "vpcId": facts.vpc_id,
        "replicaCount": 2,
        # The Service mutator would turn every LoadBalancer Service into an NLB; only ours opt in.
        "enableServiceMutatorWebhook": False,
        "serviceAccount": {
            "create": True,
            "name": "aws-load-balancer-controller",
            "annotations": {IRSA_ANNOTATION: role_arn},
        },
    }


def cluster_autoscaler_values(
    facts: EksFacts, role_arn: pulumi.Input[str], kubernetes_version: str
) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": facts.region,
        # Discovers the ASGs of EKS managed node groups by the tags EKS puts on them.
        "autoDiscovery": {"clusterName": facts.cluster_name},
        "image": {"tag": CLUSTER_AUTOSCALER_IMAGES[kubernetes_version]},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            # Agent Servers' in-cluster Postgres uses EBS volumes, which the autoscaler handles.
            "skip-nodes-with-local-storage": False,
        },
        "rbac": {
            "serviceAccount": {
                "create": True,
                "name": "cluster-autoscaler",
                "annotations": {IRSA_ANNOTATION: role_arn},
            }
        },
    }


def envoy_gateway_values() -> dict[str, Any]:
    return {"deployment": {"replicas": 2}}


INTERNAL_LOAD_BALANCER_ANNOTATIONS = {
    # kubernetes/cloud-provider-aws (legacy in-tree aws.go, ServiceAnnotationLoadBalancerInternal):
    # any value but "false" makes the ELB internal; the AWS Load Balancer Controller honours it too.
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    # cloud-provider-azure (ServiceAnnotationLoadBalancerInternal).
    "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
    # GKE internal passthrough Network Load Balancer.
    "networking.gke.io/load-balancer-type": "Internal",
}
"""What makes a `LoadBalancer` Service internal on the clouds a cluster is commonly on (each
provider's service controller defaults to internet-facing)."""


def gateway_manifests(routing: Routing, *, nlb: bool, environment: str) -> list[dict[str, Any]]:
    """EnvoyProxy settings (the proxy Service's load balancer), the GatewayClass and the shared Gateway.

    The Gateway admits HTTPRoutes only from agent namespaces (`namespace-role: agents`), so nothing
    else in the cluster can attach routes to it."""
    common = lbl.common(environment)
    namespace = ENVOY_GATEWAY.namespace
    service_annotations: dict[str, str]
    if nlb:
        service_annotations = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"
            if routing.internal
            else "internet-facing",
        }
    elif routing.internal:
        # Without our load balancer controller the cluster's own cloud provider serves the Service,
        # and every one of them makes an internet-facing load balancer unless told otherwise: EKS's
        # built-in controller a public Classic ELB, AKS and GKE a public one too. Each reads only its
        # own annotation and ignores the others'.
        service_annotations = dict(INTERNAL_LOAD_BALANCER_ANNOTATIONS)
    else:
        service_annotations = {}
    proxy_config = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": {"name": ENVOY_PROXY_CONFIG, "namespace": namespace, "labels": common},
        "spec": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {
                    "envoyDeployment": {"replicas": 2},
                    "envoyService": {"type": "LoadBalancer", "annotations": service_annotations},
                },
            }
        },
    }
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "labels": common},
        "spec": {
            "controllerName": GATEWAY_CONTROLLER,
            "parametersRef": {
                "group": "gateway.envoyproxy.io",
                "kind": "EnvoyProxy",
                "name": ENVOY_PROXY_CONFIG,
                "namespace": namespace,
            },
        },
    }
    allowed = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {lbl.NAMESPACE_ROLE: lbl.AGENTS}}},
        "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
    }
    listeners: list[dict[str, Any]] = [
        {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": allowed}
    ]
    if routing.tls_secret_name:
        listeners.append(
            {
                "name": "https",
                "protocol": "HTTPS",
                "port": 443,
                "tls": {
                    "mode": "Terminate",
                    "certificateRefs": [{"kind": "Secret", "name": routing.tls_secret_name}],
                },
                "allowedRoutes": allowed,
            }
        )
    if routing.hostname:
        for item in listeners:
            item["hostname"] = routing.hostname
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": namespace, "labels": common},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners},
    }
    return [proxy_config, gateway_class, gateway]


def addon_namespace(name: str, environment: str) -> dict[str, Any]:
    # Add-ons run controllers and proxies that need more than `restricted` allows (KEDA's webhooks and
    # Envoy's proxies bind ports and mount service-account tokens); `baseline` still refuses privileged
    # pods, host namespaces and hostPath.
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {**lbl.common(environment), **lbl.pod_security("baseline", "latest")},
        },
    }


def summary(charts: Sequence[Chart]) -> list[dict[str, str]]:
    """What the stack installs, for the `addons` stack output."""
    return [
        {
            "name": c.release,
            "chart": c.chart,
            "version": c.version,
            "appVersion": c.app_version,
            "namespace": c.namespace,
        }
        for c in charts
    ]


# --- The component --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterAddonsArgs:
    addons: Addons
    routing: Routing
    kubernetes_version: str
    environment: str
    eks: EksFacts | None = None
    """None on an existing cluster without AWS facts: EKS-only add-ons are then never selected."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ClusterAddons(pulumi.ComponentResource):
    """The add-ons of one cluster. `prerequisites` are what a listener must wait for."""

    prerequisites: list[pulumi.Resource]
    gateway: tuple[str, str] | None
    """(namespace, name) of the shared Gateway, when routing uses one."""

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("langsmith:infra:ClusterAddons", name, None, opts)
        self._name = name
        self._args = args
        eks = args.eks is not None
        charts = selected(args.addons, args.routing, eks=eks)
        self.charts = charts
        self.prerequisites = []
        self.gateway = None
        releases: dict[str, pulumi.Resource] = {}
        for chart in charts:
            self._permissions: list[pulumi.Resource] = []
            values = self._values(chart)
            after = [*args.depends_on, *self._permissions]
            if chart is ENVOY_GATEWAY and AWS_LOAD_BALANCER_CONTROLLER.release in releases:
                # The controller must be running to give the proxies' Service its NLB.
                after.append(releases[AWS_LOAD_BALANCER_CONTROLLER.release])
            releases[chart.release] = self._release(chart, values, after)
        if KEDA.release in releases:
            self.prerequisites.append(releases[KEDA.release])
        if METRICS_SERVER.release in releases:
            self.prerequisites.append(releases[METRICS_SERVER.release])
        if ENVOY_GATEWAY.release in releases:
            nlb = AWS_LOAD_BALANCER_CONTROLLER.release in releases
            created: list[pulumi.Resource] = []
            for manifest in gateway_manifests(args.routing, nlb=nlb, environment=args.environment):
                created.append(
                    declare(
                        f"{name}-{manifest['kind'].lower()}-{manifest['metadata']['name']}",
                        manifest,
                        # The release installs the CRDs these kinds need.
                        pulumi.ResourceOptions(
                            parent=self, depends_on=[releases[ENVOY_GATEWAY.release], *created]
                        ),
                    )
                )
            self.prerequisites.append(created[-1])
            self.gateway = (ENVOY_GATEWAY.namespace, GATEWAY_NAME)
        self.register_outputs({"addons": summary(charts)})

    def _values(self, chart: Chart) -> dict[str, Any]:
        args = self._args
        if chart is KEDA:
            return keda_values()
        if chart is METRICS_SERVER:
            return metrics_server_values()
        if chart is ENVOY_GATEWAY:
            return envoy_gateway_values()
        assert args.eks is not None
        if chart is AWS_LOAD_BALANCER_CONTROLLER:
            # Short resource names: IAM role names are at most 64 characters with Pulumi's 8-character suffix.
            role = self._irsa_role(
                "lbc",
                ("kube-system", "aws-load-balancer-controller"),
                pulumi.Output.from_input(load_balancer_controller_policy(args.eks.partition)),
            )
            return load_balancer_controller_values(args.eks, role.arn)
        if chart is CLUSTER_AUTOSCALER:
            role = self._irsa_role(
                "autoscaler",
                ("kube-system", "cluster-autoscaler"),
                pulumi.Output.from_input(args.eks.cluster_name).apply(cluster_autoscaler_policy),
            )
            return cluster_autoscaler_values(args.eks, role.arn, args.kubernetes_version)
        raise AssertionError(f"no values for {chart.release}")

    def _irsa_role(self, role: str, service_account: tuple[str, str], policy: pulumi.Input[str]) -> IrsaRole:
        facts = self._args.eks
        assert facts is not None
        made = irsa_role(
            f"{self._name}-{role}",
            oidc_provider_arn=facts.oidc_provider_arn,
            oidc_issuer_url=facts.oidc_issuer_url,
            service_account=service_account,
            inline_policy=policy,
            partition=facts.partition,
            tags=facts.tags,
            parent=self,
        )
        # The chart's pods must not start before their permissions exist (their first AWS calls fail).
        self._permissions.extend(made.attachments)
        return made

    def _release(
        self, chart: Chart, values: Mapping[str, Any], after: Sequence[pulumi.Resource]
    ) -> pulumi.Resource:
        depends = list(after)
        if chart.namespace != "kube-system":
            namespace = declare(
                f"{self._name}-{chart.release}-namespace",
                addon_namespace(chart.namespace, self._args.environment),
                pulumi.ResourceOptions(parent=self, depends_on=list(after)),
            )
            depends.append(namespace)
        return k8s.helm.v3.Release(
            f"{self._name}-{chart.release}",
            name=chart.release,
            chart=chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository)
            if chart.repository
            else None,
            namespace=chart.namespace,
            create_namespace=False,
            values=dict(values),
            # Roll back a failed upgrade instead of leaving a half-applied add-on.
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
