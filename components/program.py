"""Wire the components of one stack together. Called by `__main__.py`; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.addon_egress import with_addon_egress
from components.addons import EksFacts
from components.cluster import EksCluster, EksClusterArgs
from components.cluster_access import ExistingClusterAccess, ExistingClusterArgs
from components.config import CreateVpc, ExistingCluster, ExternalStores, ManagedStores, StackConfig
from components.egress import ControlPlaneEgress, ControlPlaneEgressArgs, egress_allowlist
from components.iam import partition_for_region
from components.incluster import ClusterTarget, build_in_cluster
from components.network import Network, NetworkArgs
from components.secrets import StackSecrets, read_stack_secrets
from components.stores import RDS_CA_BUNDLE_URL, ManagedStoresArgs
from components.stores import ManagedStores as ManagedStoresComponent


def build(config: StackConfig) -> dict[str, object]:
    # Tags go on each resource rather than the provider's default_tags, so the policy pack can see
    # them in every resource's inputs.
    secrets = read_stack_secrets()
    if isinstance(config.cluster, ExistingCluster):
        return _build_on_existing_cluster(config, config.cluster, secrets)
    aws_provider = _aws_provider(config)
    # The add-ons' image registries and layer bucket join the egress controls (components.addon_egress).
    config = with_addon_egress(config)
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
        rds_truststore=isinstance(config.stores, ManagedStores),
        master_secret=config.listeners_read_master_secret,
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
            vpc_cni_network_policy=config.addons.network_policy_enabled(True),
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
    master_secret_arn: pulumi.Input[str] | None = None
    admin_uris: tuple[pulumi.Input[str] | None, pulumi.Input[str] | None] = (
        secrets.postgres_admin_uri,
        secrets.redis_admin_uri,
    )
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
        admin_uris = (stores.postgres_uri, stores.redis_uri)
        master_secret_arn = stores.postgres_master_secret_arn

    in_cluster = build_in_cluster(
        config,
        secrets,
        ClusterTarget(
            provider=cluster.provider,
            eks=EksFacts(
                cluster_name=cluster.cluster_name,
                region=config.aws_region,
                vpc_id=network.vpc_id,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer_url=cluster.oidc_issuer_url,
                tags=tags,
                partition=partition,
            ),
            store_cidrs=_store_cidrs(config),
            aws_provider=aws_provider,
        ),
        postgres_admin_uri=admin_uris[0],
        redis_admin_uri=admin_uris[1],
        postgres_master_secret_arn=master_secret_arn,
    )

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
        **in_cluster,
        "stack": pulumi.get_stack(),
    }


def _aws_provider(config: StackConfig) -> aws.Provider:
    # allowed_account_ids: credentials for any other account fail before anything is created.
    return aws.Provider(
        f"{config.name}-aws", region=config.aws_region, allowed_account_ids=[config.aws_account_id]
    )


def _store_cidrs(config: StackConfig) -> list[str]:
    """Where Agent Servers and listeners may reach shared stores on 5432/6379."""
    if isinstance(config.stores, ExternalStores):
        return [str(c) for c in config.stores.egress_cidrs]
    if isinstance(config.stores, ManagedStores):
        # RDS and ElastiCache addresses are not fixed: allow the VPC they live in.
        network = config.network
        return [str(network.cidr if isinstance(network, CreateVpc) else network.vpc_cidr)]
    return []


def _build_on_existing_cluster(
    config: StackConfig, cluster: ExistingCluster, secrets: StackSecrets
) -> dict[str, object]:
    """Only the in-cluster layer: no VPC, no egress controls, no cluster, no managed stores. AWS is
    touched only to look up an existing EKS cluster, so a kubeconfig alone needs no AWS credentials."""
    providers = [_aws_provider(config)] if cluster.eks_cluster_name else []
    access = ExistingClusterAccess(
        f"{config.name}-cluster",
        ExistingClusterArgs(
            cluster=cluster, region=config.aws_region, identifier=config.name, kubeconfig=secrets.kubeconfig
        ),
        opts=pulumi.ResourceOptions(providers=providers),
    )
    in_cluster = build_in_cluster(
        config,
        secrets,
        ClusterTarget(provider=access.provider, store_cidrs=_store_cidrs(config)),
        postgres_admin_uri=secrets.postgres_admin_uri,
        redis_admin_uri=secrets.redis_admin_uri,
    )
    return {
        "environment": config.environment,
        "controlPlaneUrl": config.langsmith.control_plane_url,
        "controlPlaneHosts": list(config.langsmith.hosts),
        **({"clusterName": access.cluster_name} if access.cluster_name is not None else {}),
        **in_cluster,
        "stack": pulumi.get_stack(),
    }
