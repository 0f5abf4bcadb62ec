"""Wire the components of one stack together. Called by `__main__.py`; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.cluster import EksCluster, EksClusterArgs
from components.config import ManagedStores, StackConfig
from components.egress import ControlPlaneEgress, ControlPlaneEgressArgs, egress_allowlist
from components.iam import partition_for_region
from components.network import Network, NetworkArgs
from components.stores import RDS_CA_BUNDLE_URL, ManagedStoresArgs
from components.stores import ManagedStores as ManagedStoresComponent


def build(config: StackConfig) -> dict[str, object]:
    # Tags go on each resource rather than the provider's default_tags, so the policy pack can see
    # them in every resource's inputs.
    # allowed_account_ids: credentials for any other account fail before anything is created.
    aws_provider = aws.Provider(
        f"{config.name}-aws", region=config.aws_region, allowed_account_ids=[config.aws_account_id]
    )
    with_aws = pulumi.ResourceOptions(providers=[aws_provider])
    tags = config.resource_tags
    cluster_name = config.name
    partition = partition_for_region(config.aws_region)

    network = Network(
        f"{config.name}-net",
        NetworkArgs(
            vpc=config.network,
            region=config.aws_region,
            cluster_name=cluster_name,
            tags=tags,
            account_id=config.aws_account_id,
            partition=partition,
        ),
        opts=with_aws,
    )
    allowlist = egress_allowlist(
        config.langsmith,
        config.network.egress,
        region=config.aws_region,
        interface_endpoints=config.network.interface_endpoints,
    )
    egress = ControlPlaneEgress(
        f"{config.name}-egress",
        ControlPlaneEgressArgs(
            allowlist=allowlist,
            vpc_id=network.vpc_id,
            tags=tags,
            routing=network.routing,
            delete_protection=config.is_prod,
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
            protect=config.is_prod,
            vpc_id=network.vpc_id,
            vpc_cidr=network.vpc_cidr,
            account_id=config.aws_account_id,
            partition=partition,
            node_dependencies=[*network.endpoints, *egress.routes],
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
            "postgresMasterSecretArn": stores.postgres_master_secret_arn,
            "postgresCaBundleUrl": RDS_CA_BUNDLE_URL,
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
        "bastionInstanceId": cluster.bastion_instance_id,
        "addonVersions": cluster.addon_versions,
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
