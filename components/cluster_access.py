"""Access to a cluster this stack does not create (`cluster.mode: existing`): its Kubernetes provider.

Either the secret stack key `kubeconfig` (any conformant cluster), or an EKS cluster looked up by
name with the stack's AWS credentials, reached with `aws eks get-token` like the clusters this
project builds. Either way there is exactly one explicit provider, and `cluster_identifier` keeps a
changed kubeconfig (a rotated token, a new context) from replacing every Kubernetes resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import kubeconfig as eks_kubeconfig
from components.config import ExistingCluster


def _ca_data(authorities: Any) -> str:
    first = authorities[0] if authorities else None
    if isinstance(first, dict):
        return str(first.get("data") or "")
    return str(getattr(first, "data", "") or "")


@dataclass(frozen=True)
class ExistingClusterArgs:
    cluster: ExistingCluster
    region: str
    identifier: str
    """Stable identity of the cluster for the provider (the stack's `name` when given a kubeconfig)."""
    kubeconfig: pulumi.Input[str] | None = None


class ExistingClusterAccess(pulumi.ComponentResource):
    provider: k8s.Provider
    cluster_name: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("langsmith:infra:ExistingCluster", name, None, opts)
        cluster = args.cluster
        identifier: pulumi.Input[str]
        if cluster.eks_cluster_name is not None:
            found = aws.eks.get_cluster_output(
                name=cluster.eks_cluster_name, opts=pulumi.InvokeOptions(parent=self)
            )
            config = pulumi.Output.secret(
                pulumi.Output.all(found.name, found.endpoint, found.certificate_authorities).apply(
                    lambda v: eks_kubeconfig(v[0], v[1], _ca_data(v[2]), args.region)
                )
            )
            identifier = found.arn
            self.cluster_name = found.name
        else:
            if args.kubeconfig is None:
                raise ValueError("an existing cluster without eks_cluster_name needs the kubeconfig secret")
            config = pulumi.Output.secret(args.kubeconfig)
            identifier = args.identifier
            self.cluster_name = None
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=config,
            context=cluster.context,
            cluster_identifier=identifier,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
