"""The add-ons' pins: chart, version and the Kubernetes versions each is known to work on.

Pure data (no Pulumi), so config validation can refuse a cluster version an add-on is not pinned for
before anything is planned. `components.addons` installs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config import Addons, Routing


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    version: str
    repository: str | None
    """None for an OCI chart (`chart` is then the `oci://` reference)."""
    namespace: str
    app_version: str
    kubernetes: tuple[str, str] | None
    """The Kubernetes minors the project tests this version on (inclusive), or None if it publishes none."""
    source: str
    image_registry: str = "docker.io"
    """The registry the chart's default images come from: behind the egress firewall its hosts must be
    allowed (`components.rules`, `components.registries`)."""


KEDA = Chart(
    release="keda",
    chart="keda",
    version="2.20.0",
    repository="https://kedacore.github.io/charts",
    namespace="keda",
    app_version="2.20.0",
    kubernetes=("1.33", "1.35"),
    source="https://keda.sh/docs/2.20/operate/cluster/ (compatibility matrix)",
    image_registry="ghcr.io",
)
METRICS_SERVER = Chart(
    release="metrics-server",
    chart="metrics-server",
    version="3.13.0",
    repository="https://kubernetes-sigs.github.io/metrics-server/",
    namespace="kube-system",
    app_version="0.8.0",
    kubernetes=None,
    source="https://github.com/kubernetes-sigs/metrics-server/releases (chart 3.13.0 = v0.8.0)",
    image_registry="registry.k8s.io",
)
ENVOY_GATEWAY = Chart(
    release="envoy-gateway",
    chart="oci://docker.io/envoyproxy/gateway-helm",
    version="v1.7.1",
    repository=None,
    namespace="envoy-gateway-system",
    app_version="v1.7.1 (Gateway API v1.4.1 CRDs included)",
    kubernetes=("1.32", "1.35"),
    source="https://gateway.envoyproxy.io/news/releases/matrix",
    image_registry="docker.io",
)
AWS_LOAD_BALANCER_CONTROLLER = Chart(
    release="aws-load-balancer-controller",
    chart="aws-load-balancer-controller",
    version="1.13.0",
    repository="https://aws.github.io/eks-charts",
    namespace="kube-system",
    app_version="v2.13.0",
    kubernetes=None,
    source="https://github.com/aws/eks-charts (chart 1.13.0 = controller v2.13.0)",
    image_registry="public.ecr.aws",
)
CLUSTER_AUTOSCALER = Chart(
    release="cluster-autoscaler",
    chart="cluster-autoscaler",
    version="9.56.0",
    repository="https://kubernetes.github.io/autoscaler",
    namespace="kube-system",
    app_version="per Kubernetes minor, see CLUSTER_AUTOSCALER_IMAGES",
    kubernetes=("1.32", "1.35"),
    source="chart 9.56.0 as in langchain-ai/terraform (hybrid-data-plane.md §12.1)",
    image_registry="registry.k8s.io",
)
CLUSTER_AUTOSCALER_IMAGES = {"1.32": "v1.32.5", "1.33": "v1.33.5", "1.34": "v1.34.4", "1.35": "v1.35.1"}
"""The autoscaler's minor must match the cluster's (kubernetes/autoscaler README). Patch releases from
kubernetes/k8s.io#8815 and aws-ia/terraform-aws-eks-blueprints-addons#516 (2026-07)."""

GATEWAY_CLASS = "langsmith-dataplane"
GATEWAY_NAME = "langsmith-agents"
GATEWAY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
ENVOY_PROXY_CONFIG = "langsmith-dataplane"


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def unsupported(chart: Chart, kubernetes_version: str) -> str | None:
    """Why `chart` is not pinned for this cluster version, or None when it is."""
    if chart is CLUSTER_AUTOSCALER and kubernetes_version not in CLUSTER_AUTOSCALER_IMAGES:
        known = ", ".join(sorted(CLUSTER_AUTOSCALER_IMAGES))
        return (
            f"cluster-autoscaler is pinned only for Kubernetes {known} (its minor must match the cluster's)"
        )
    if chart.kubernetes is None:
        return None
    low, high = chart.kubernetes
    if not _minor(low) <= _minor(kubernetes_version) <= _minor(high):
        return (
            f"{chart.release} {chart.app_version} is tested on Kubernetes {low} to {high} ({chart.source}); "
            "bump its pin in components/addon_versions.py or disable it"
        )
    return None


def selected(addons: Addons, routing: Routing, *, eks: bool) -> list[Chart]:
    """The charts this stack installs, in install order."""
    charts = []
    if addons.metrics_server:
        charts.append(METRICS_SERVER)
    if addons.keda:
        charts.append(KEDA)
    if eks and addons.aws_load_balancer_controller:
        charts.append(AWS_LOAD_BALANCER_CONTROLLER)
    if eks and addons.autoscaler_enabled(eks):
        charts.append(CLUSTER_AUTOSCALER)
    if routing.mode == "gateway":
        charts.append(ENVOY_GATEWAY)
    return charts
