"""The data-driven table of resource kinds the fake API server serves.

Adding a kind is one line in ``KINDS``. Flags mirror what the real API server does for that kind:
``status`` means a ``/status`` subresource exists (so main-resource writes cannot change status and
vice versa); ``generation`` means ``metadata.generation`` is maintained.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status: bool = True
    generation: bool = True
    # Field selectors the real API server supports for this kind besides metadata.name/namespace.
    extra_field_selectors: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """The name RBAC messages use: ``deployments.apps``, ``secrets``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_selectors(self) -> tuple[str, ...]:
        return ("metadata.name", "metadata.namespace", *self.extra_field_selectors)


KINDS: tuple[Kind, ...] = (
    Kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        generation=False,
        extra_field_selectors=("status.phase",),
    ),
    Kind("", "v1", "Secret", "secrets", status=False, generation=False, extra_field_selectors=("type",)),
    Kind("", "v1", "ConfigMap", "configmaps", status=False, generation=False),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", status=False, generation=False),
    Kind("", "v1", "Service", "services", generation=False),
    Kind("", "v1", "Pod", "pods", generation=False, extra_field_selectors=("spec.nodeName", "status.phase")),
    Kind(
        "",
        "v1",
        "Event",
        "events",
        status=False,
        generation=False,
        extra_field_selectors=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ),
    ),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", generation=False),
    Kind("apps", "v1", "Deployment", "deployments"),
    Kind("apps", "v1", "StatefulSet", "statefulsets"),
    Kind("apps", "v1", "ReplicaSet", "replicasets"),
    Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses"),
    Kind("coordination.k8s.io", "v1", "Lease", "leases", status=False, generation=False),
    Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    Kind("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
)


class KindRegistry:
    """Look-ups over a kind table, by URL parts or by apiVersion/kind."""

    def __init__(self, kinds: tuple[Kind, ...] = KINDS) -> None:
        self.kinds = kinds
        self._by_url = {(k.group, k.version, k.plural): k for k in kinds}
        self._by_kind = {(k.api_version, k.kind): k for k in kinds}

    def by_url(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_url.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Kind:
        return self._by_kind[(api_version, kind)]

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions, core group ("") included, in table order."""
        out: dict[str, list[str]] = {}
        for k in self.kinds:
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                versions.append(k.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Kind]:
        return [k for k in self.kinds if k.group == group and k.version == version]


REGISTRY = KindRegistry()
NAMESPACE = REGISTRY.by_kind("v1", "Namespace")
POD = REGISTRY.by_kind("v1", "Pod")
EVENT = REGISTRY.by_kind("v1", "Event")
PVC = REGISTRY.by_kind("v1", "PersistentVolumeClaim")
DEPLOYMENT = REGISTRY.by_kind("apps/v1", "Deployment")
STATEFULSET = REGISTRY.by_kind("apps/v1", "StatefulSet")
REPLICASET = REGISTRY.by_kind("apps/v1", "ReplicaSet")
