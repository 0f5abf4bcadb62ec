"""What the add-ons need from the VPC's egress controls, added by the program (pure).

The add-ons' pins live in code (`components.addon_versions`), so where their images come from moves
with a pin, not with a stack file: the program adds those hosts to the firewall's domain allowlist
and registry.k8s.io's regional layer bucket to the S3 endpoint's policy, and both show in the plan
(`egressAllowlist`, the endpoint's policy). What a user chooses (the listener image, Agent Server
images) stays explicit in the stack file and is checked by `components.rules`.
"""

from __future__ import annotations

from components.addon_versions import selected
from components.config import CreateVpc, DomainDestination, StackConfig
from components.registries import hosts_for_registry, uncovered

K8S_REGISTRY = "registry.k8s.io"
K8S_REGISTRY_BUCKET_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-northeast-1",
        "ap-southeast-1",
        "ap-south-1",
    }
)
"""Regions where registry.k8s.io keeps a layer bucket `prod-registry-k8s-io-<region>` and redirects AWS
clients to it (kubernetes/registry.k8s.io: archeio's S3 redirect and the buckets' sync scripts).
In-region S3 traffic takes the VPC's S3 gateway endpoint, whose policy admits only listed buckets."""


def addon_domains(config: StackConfig) -> list[str]:
    """Hosts the add-ons' image pulls touch that the stack's firewall allowlist does not cover yet."""
    egress = config.network.egress
    if egress.mode == "security-group":
        return []
    allowed = [d.domain for d in egress.extra_destinations if isinstance(d, DomainDestination)]
    charts = selected(config.addons, config.routing, eks=True)
    hosts = dict.fromkeys(h for chart in charts for h in hosts_for_registry(chart.image_registry))
    return uncovered(hosts, allowed)


def addon_buckets(config: StackConfig) -> list[str]:
    """S3 buckets the add-ons' image pulls read through the VPC's S3 endpoint, not listed yet."""
    network = config.network
    charts = selected(config.addons, config.routing, eks=True)
    if not isinstance(network, CreateVpc) or config.aws_region not in K8S_REGISTRY_BUCKET_REGIONS:
        return []
    if not any(chart.image_registry == K8S_REGISTRY for chart in charts):
        return []
    bucket = f"prod-registry-k8s-io-{config.aws_region}"
    return [] if bucket in network.s3_buckets else [bucket]


def with_addon_egress(config: StackConfig) -> StackConfig:
    """The config with the add-ons' egress needs added to `network`."""
    network = config.network
    egress = network.egress
    domains = [DomainDestination(domain=h) for h in addon_domains(config)]
    update: dict[str, object] = {
        "egress": egress.model_copy(update={"extra_destinations": [*egress.extra_destinations, *domains]})
    }
    if isinstance(network, CreateVpc):
        update["s3_buckets"] = [*network.s3_buckets, *addon_buckets(config)]
    return config.model_copy(update={"network": network.model_copy(update=update)})
