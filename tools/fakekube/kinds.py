"""The kinds a fake cluster serves: built-in ones always, custom resources once their CRD is installed.

Adding a built-in kind is one line in ``BUILTIN``. Flags mirror what the real API server does:
``status``/``scale`` are subresources (main-resource writes cannot change status; ``/scale`` reads and
writes ``spec.replicas``); ``generation`` says what bumps ``metadata.generation`` (the registry
strategies: ``spec``, or ``spec+annotations`` for Deployments, see pkg/registry/apps/deployment/
strategy.go); ``schema`` names the OpenAPI definition the kubernetes-validate bundle ships for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Generation = Literal["none", "spec", "spec+annotations", "custom"]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, eq=False)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status: bool = False
    scale: bool = False
    generation: Generation = "none"
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Field selectors the real API server supports for this kind besides metadata.name/namespace.
    extra_field_selectors: tuple[str, ...] = ()
    # "builtin" kinds are validated against kubernetes-validate's bundled OpenAPI schemas;
    # custom resources carry their CRD's structural schema (a JSON schema) instead.
    crd_schema: dict[str, Any] | None = field(default=None, repr=False)
    # Custom resources' scale subresource paths (specReplicasPath, statusReplicasPath, labelSelectorPath).
    scale_paths: tuple[str, str, str | None] | None = None
    # Only for request-only kinds (reviews, TokenRequest): never stored.
    virtual: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """The name errors and RBAC messages use: ``deployments.apps``, ``secrets``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_selectors(self) -> tuple[str, ...]:
        return ("metadata.name", "metadata.namespace", *self.extra_field_selectors)

    @property
    def is_custom(self) -> bool:
        return self.crd_schema is not None

    def __repr__(self) -> str:
        return f"Kind({self.api_version}, {self.kind})"


_NS_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
_REVIEW = ("create",)

BUILTIN: tuple[Kind, ...] = (
    Kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        status=True,
        short_names=("ns",),
        verbs=_NS_VERBS,
        extra_field_selectors=("status.phase",),
    ),
    Kind("", "v1", "Secret", "secrets", extra_field_selectors=("type",)),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    Kind("", "v1", "Service", "services", status=True, short_names=("svc",)),
    Kind(
        "",
        "v1",
        "Pod",
        "pods",
        status=True,
        generation="spec",
        short_names=("po",),
        extra_field_selectors=("spec.nodeName", "spec.serviceAccountName", "status.phase"),
    ),
    Kind(
        "",
        "v1",
        "Event",
        "events",
        short_names=("ev",),
        extra_field_selectors=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ),
    ),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", status=True, short_names=("pvc",)),
    Kind(
        "", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, status=True, short_names=("pv",)
    ),
    Kind("", "v1", "Node", "nodes", namespaced=False, status=True, short_names=("no",)),
    Kind("", "v1", "ResourceQuota", "resourcequotas", status=True, short_names=("quota",)),
    Kind("", "v1", "LimitRange", "limitranges", short_names=("limits",)),
    Kind("apps", "v1", "Deployment", "deployments", status=True, scale=True, generation="spec+annotations",
         short_names=("deploy",)),
    Kind("apps", "v1", "StatefulSet", "statefulsets", status=True, scale=True, generation="spec",
         short_names=("sts",)),
    Kind("apps", "v1", "ReplicaSet", "replicasets", status=True, scale=True, generation="spec",
         short_names=("rs",)),
    Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", status=True,
         generation="spec", short_names=("hpa",)),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", status=True, generation="spec",
         short_names=("pdb",)),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses", status=True, generation="spec",
         short_names=("ing",)),
    Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", generation="spec",
         short_names=("netpol",)),
    Kind("coordination.k8s.io", "v1", "Lease", "leases"),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    Kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short_names=("sc",)),
    Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
         namespaced=False, status=True, generation="spec", short_names=("crd", "crds")),
    Kind("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
         namespaced=False, verbs=_REVIEW, virtual=True),
    Kind("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
         namespaced=False, verbs=_REVIEW, virtual=True),
)  # fmt: skip


class KindRegistry:
    """The served kinds of one fake cluster. Thread-safe: CRDs come and go while requests are served."""

    def __init__(self, kinds: Iterable[Kind] = BUILTIN) -> None:
        self._lock = threading.Lock()
        self._kinds: list[Kind] = []
        self._by_url: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str], Kind] = {}
        self._by_gr: dict[tuple[str, str], Kind] = {}
        for k in kinds:
            self._add(k)

    def _add(self, k: Kind) -> None:
        self._kinds.append(k)
        self._by_url[(k.group, k.version, k.plural)] = k
        self._by_kind[(k.api_version, k.kind)] = k
        self._by_gr.setdefault((k.group, k.plural), k)

    def add(self, kinds: Iterable[Kind]) -> None:
        with self._lock:
            for k in kinds:
                old = self._by_url.get((k.group, k.version, k.plural))
                if old is not None:
                    self._kinds.remove(old)
                    if self._by_gr.get((k.group, k.plural)) is old:
                        del self._by_gr[(k.group, k.plural)]
                self._add(k)

    def remove_group_resource(self, group: str, plural: str) -> list[Kind]:
        with self._lock:
            gone = [k for k in self._kinds if k.group == group and k.plural == plural and k.is_custom]
            for k in gone:
                self._kinds.remove(k)
                del self._by_url[(k.group, k.version, k.plural)]
                del self._by_kind[(k.api_version, k.kind)]
                self._by_gr.pop((k.group, k.plural), None)
            return gone

    @property
    def kinds(self) -> tuple[Kind, ...]:
        with self._lock:
            return tuple(self._kinds)

    def by_url(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_url.get((group, version, plural))

    def by_group_resource(self, group: str, plural: str) -> Kind | None:
        return self._by_gr.get((group, plural))

    def find(self, api_version: str, kind: str) -> Kind | None:
        return self._by_kind.get((api_version, kind))

    def by_kind(self, api_version: str, kind: str) -> Kind:
        found = self._by_kind.get((api_version, kind))
        if found is None:
            raise KeyError(f"{kind}.{api_version} is not served")
        return found

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


_DEFAULT = KindRegistry()


def builtin(api_version: str, kind: str) -> Kind:
    return _DEFAULT.by_kind(api_version, kind)


NAMESPACE = builtin("v1", "Namespace")
SECRET = builtin("v1", "Secret")
CONFIGMAP = builtin("v1", "ConfigMap")
SERVICEACCOUNT = builtin("v1", "ServiceAccount")
SERVICE = builtin("v1", "Service")
POD = builtin("v1", "Pod")
EVENT = builtin("v1", "Event")
PVC = builtin("v1", "PersistentVolumeClaim")
PV = builtin("v1", "PersistentVolume")
NODE = builtin("v1", "Node")
RESOURCEQUOTA = builtin("v1", "ResourceQuota")
LIMITRANGE = builtin("v1", "LimitRange")
DEPLOYMENT = builtin("apps/v1", "Deployment")
STATEFULSET = builtin("apps/v1", "StatefulSet")
REPLICASET = builtin("apps/v1", "ReplicaSet")
HPA = builtin("autoscaling/v2", "HorizontalPodAutoscaler")
PDB = builtin("policy/v1", "PodDisruptionBudget")
INGRESS = builtin("networking.k8s.io/v1", "Ingress")
NETWORKPOLICY = builtin("networking.k8s.io/v1", "NetworkPolicy")
LEASE = builtin("coordination.k8s.io/v1", "Lease")
ROLE = builtin("rbac.authorization.k8s.io/v1", "Role")
ROLEBINDING = builtin("rbac.authorization.k8s.io/v1", "RoleBinding")
CLUSTERROLE = builtin("rbac.authorization.k8s.io/v1", "ClusterRole")
CLUSTERROLEBINDING = builtin("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
STORAGECLASS = builtin("storage.k8s.io/v1", "StorageClass")
CRD = builtin("apiextensions.k8s.io/v1", "CustomResourceDefinition")
SSAR = builtin("authorization.k8s.io/v1", "SelfSubjectAccessReview")
SAR = builtin("authorization.k8s.io/v1", "SubjectAccessReview")


def kinds_from_crd(crd: dict[str, Any], json_schema_for: Any) -> list[Kind]:
    """The served kinds a CustomResourceDefinition declares (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        sub = version.get("subresources") or {}
        scale = sub.get("scale")
        out.append(
            Kind(
                spec.get("group", ""),
                version["name"],
                names.get("kind", ""),
                names.get("plural", ""),
                namespaced=spec.get("scope") == "Namespaced",
                status="status" in sub,
                scale=scale is not None,
                generation="custom",
                short_names=tuple(names.get("shortNames") or ()),
                crd_schema=json_schema_for(((version.get("schema") or {}).get("openAPIV3Schema")) or {}),
                scale_paths=(
                    (scale["specReplicasPath"], scale["statusReplicasPath"], scale.get("labelSelectorPath"))
                    if scale
                    else None
                ),
            )
        )
    return out
