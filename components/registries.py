"""Which hosts a node must reach to pull an image: pure functions on image references.

A pull talks to the registry's API host and, for most public registries, to other hosts too (token
service, blob CDN). Behind the network firewall every one of them must be on the domain allowlist,
or the pull fails with a timeout long after `pulumi up` finished. `components.rules` refuses such a
stack; this module says which hosts a registry needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

DOCKER_HUB = "docker.io"

# Hosts a pull from each well-known registry touches besides the one in the image reference.
# Docker Hub: https://docs.docker.com/desktop/setup/allow-list/ ("Docker Pull/Push" rows: the registry API,
# the token service and the blob CDNs; anonymous and personal-plan pulls are served from R2).
# GHCR: https://docs.github.com/en/packages/learn-github-packages/about-permissions-for-github-packages and
# GitHub's allowlist docs (layers are redirected to pkg-containers.githubusercontent.com).
REGISTRY_HOSTS: Mapping[str, tuple[str, ...]] = {
    DOCKER_HUB: (
        "registry-1.docker.io",
        "auth.docker.io",
        "production.cloudflare.docker.com",
        "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
    ),
    "ghcr.io": ("ghcr.io", "pkg-containers.githubusercontent.com"),
}

# <account>.dkr.ecr.<region>.amazonaws.com (private ECR). Layers come from the region's S3 layer bucket.
_ECR = re.compile(r"^[0-9]{12}\.dkr\.ecr(-fips)?\.(?P<region>[a-z]{2}(-gov)?-[a-z]+-[0-9])\.amazonaws\.com$")


def registry_host(image: str) -> str:
    """The registry of an image reference, as container runtimes resolve it.

    The first path component is a registry only if it has a '.' or ':' or is 'localhost'
    (distribution/reference's rule); otherwise the image is on Docker Hub.
    """
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.split(":")[0]
    return DOCKER_HUB


def ecr_region(host: str) -> str | None:
    match = _ECR.match(host)
    return match.group("region") if match else None


def hosts_for_registry(host: str) -> tuple[str, ...]:
    """Every host a pull from `host` contacts (the host itself for registries we know nothing else of)."""
    if host in REGISTRY_HOSTS:
        return REGISTRY_HOSTS[host]
    region = ecr_region(host)
    if region is not None:
        return (
            host,
            f"api.ecr.{region}.amazonaws.com",
            f"prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com",
        )
    return (host,)


def domain_allows(pattern: str, host: str) -> bool:
    """Whether a firewall domain-list entry lets `host` through.

    AWS Network Firewall domain lists match a name exactly, or, with a leading dot, the domain and
    every subdomain (https://docs.aws.amazon.com/network-firewall/latest/developerguide/stateful-rule-groups-domain-names.html).
    """
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def uncovered(hosts: Iterable[str], allowed: Iterable[str]) -> list[str]:
    patterns = list(allowed)
    return [h for h in hosts if not any(domain_allows(p, h) for p in patterns)]
