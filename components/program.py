"""Wire the components of one stack together. Called by `__main__.py`; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.cluster import EksCluster, EksClusterArgs
from components.config import CreateVpc, ManagedStores, StackConfig
from components.egress import ControlPlaneEgress, ControlPlaneEgressArgs, egress_allowlist
from components.network import Network, NetworkArgs
from components.stores import ManagedStores as ManagedStoresComponent
from components.stores import ManagedStoresArgs


def build(config: StackConfig) -> dict[str, object]:
    # Tags go on each resource rather than the provider's default_tags, so the policy pack can see
    # them in every resource's inputs.
    aws_provider = aws.Provider(f"{config.name}-aws", region=config.aws_region)
    with_aws = pulumi.ResourceOptions(providers=[aws_provider])
    tags = config.resource_tags
    cluster_name = config.name

    network = Network(
        f"{config.name}-net",
        NetworkArgs(vpc=config.network, region=config.aws_region, cluster_name=cluster_name, tags=tags),
        opts=with_aws,
    )
    allowlist = egress_allowlist(
        config.langsmith,
        config.network.egress,
        region=config.aws_region,
        interface_endpoints=config.network.interface_endpoints
        if isinstance(config.network, CreateVpc)
        else (),
    )
    egress = ControlPlaneEgress(
        f"{config.name}-egress",
        ControlPlaneEgressArgs(
            allowlist=allowlist, vpc_id=network.vpc_id, tags=tags, firewall=network.firewall_placement
        ),
        opts=with_aws,
    )
    cluster = EksCluster(
        f"{config.name}-eks",
        EksClusterArgs(
            cluster=config.cluster,
            cluster_name=cluster_name,
            region=config.aws_region,
            private_subnet_ids=network.private_subnet_ids,
            node_security_group_ids=[egress.security_group_id]
            if egress.security_group_id is not None
            else [],
            tags=tags,
            deletion_protection=config.is_prod,
        ),
        opts=with_aws,
    )

    store_outputs: dict[str, object] = {}
    if isinstance(config.stores, ManagedStores):
        stores = ManagedStoresComponent(
            f"{config.name}-stores",
            ManagedStoresArgs(
                name_prefix=config.name,
                vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids,
                # Every node carries EKS's cluster security group, so it is the one client group.
                client_security_group_ids=[cluster.cluster_security_group_id],
                config=config.stores,
                is_prod=config.is_prod,
                tags=tags,
            ),
            opts=with_aws,
        )
        # Hosts are plain; credentials and URIs stay secret (the in-cluster Secrets will consume them).
        store_outputs = {
            "postgresHost": stores.postgres_host,
            "postgresUri": stores.postgres_uri,
            "redisHost": stores.redis_host,
            "redisUri": stores.redis_uri,
        }

    return {
        **store_outputs,
        "environment": config.environment,
        "controlPlaneUrl": config.langsmith.control_plane_url,
        "controlPlaneHosts": list(config.langsmith.hosts),
        "egressAllowlist": allowlist.as_output(),
        "vpcId": network.vpc_id,
        "availabilityZones": network.availability_zones,
        "privateSubnetIds": network.private_subnet_ids,
        "publicSubnetIds": network.public_subnet_ids,
        "clusterName": cluster.cluster_name,
        "clusterEndpoint": cluster.endpoint,
        "clusterSecurityGroupId": cluster.cluster_security_group_id,
        "oidcProviderArn": cluster.oidc_provider_arn,
        "kubeconfig": cluster.kubeconfig,
        "listeners": [
            {
                "name": listener.name,
                "workspace": listener.workspace,
                "computeId": listener.compute_id,
                "namespaces": list(listener.namespaces),
            }
            for listener in config.topology.listeners
        ],
        "stack": pulumi.get_stack(),
    }
