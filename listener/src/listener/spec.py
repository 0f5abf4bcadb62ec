"""What one Agent Server deployment should look like: the plain data between desired state and rendering.

`desired` builds these from control-plane models; `render` turns them into Kubernetes manifests.
Both sides are pure functions, so every field here is plain, immutable data. Secret values travel
only inside `SecretValue`, whose repr never shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# In-cluster store images, pinned by digest so a moved tag never changes a running database's binary
# (LISTENER_POSTGRES_IMAGE / LISTENER_REDIS_IMAGE override them, e.g. with a private mirror). The
# digests are those Docker Hub serves for these tags, as recorded in several public repositories.
DEFAULT_POSTGRES_IMAGE = (
    "pgvector/pgvector:0.8.0-pg16@sha256:a132765ec351c65111b5b675928a3a0515a466a40f97277329db8b8209ad8bc9"
)
DEFAULT_REDIS_IMAGE = "redis:7.4.5@sha256:90e7a336d044f1abc9e9dbc05d65566850896d11453bbd1dd0fb7e5059f0e8fb"

RoutingMode = Literal["httproute", "ingress", "none"]
StoreMode = Literal["in-cluster", "external", "managed"]
Autoscaler = Literal["hpa", "keda"]


@dataclass(frozen=True)
class SecretValue:
    """A secret string; `repr`/`str` never reveal it, so it can't leak through logs or exceptions."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "SecretValue(****)"

    __str__ = __repr__


@dataclass(frozen=True)
class SecretReference:
    """Env var `name` read from key `secret_key` of an existing Secret `secret_name` in the namespace."""

    name: str
    secret_name: str
    secret_key: str


@dataclass(frozen=True)
class ResourceSpec:
    """The control plane's `ResourceSpec` (control-plane-api.md §6.5); None means "use the default"."""

    min_scale: int | None = None
    max_scale: int | None = None
    queue_min_scale: int | None = None
    queue_max_scale: int | None = None
    cpu: float | None = None
    cpu_limit: float | None = None
    memory_mb: int | None = None
    memory_limit_mb: int | None = None
    queue_cpu: float | None = None
    queue_cpu_limit: float | None = None
    queue_memory_mb: int | None = None
    queue_memory_limit_mb: int | None = None
    redis_cpu: float | None = None
    redis_cpu_limit: float | None = None
    redis_memory_mb: int | None = None
    redis_memory_limit_mb: int | None = None
    db_cpu: float | None = None
    db_cpu_limit: float | None = None
    db_memory_mb: int | None = None
    db_memory_limit_mb: int | None = None
    db_storage_gi: int | None = None
    db_max_connections: int | None = None
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()
    init_containers: tuple[dict[str, Any], ...] = ()
    sidecars: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ExternalStores:
    """Stores outside the cluster (e.g. RDS/ElastiCache): URIs read from an existing Secret."""

    secret_name: str
    postgres_uri_key: str = "POSTGRES_URI"
    redis_uri_key: str = "REDIS_URI"


@dataclass(frozen=True)
class ManagedStoresSecret:
    """Managed stores: the deployment's credentials Secret (its database role and password, and the
    Agent Server's `POSTGRES_URI_CUSTOM`, `REDIS_URI_CUSTOM`, `REDIS_KEY_PREFIX`), read by the pods
    with `secretKeyRef`. Created once; afterwards only `rotate-credentials` rewrites it."""

    secret_name: str
    data: tuple[tuple[str, SecretValue], ...]


@dataclass(frozen=True)
class AgentServerSpec:
    """One control-plane deployment at one revision, placed in one namespace by one listener."""

    deployment_id: str
    deployment_name: str
    revision_id: str
    tenant_id: str
    listener_id: str
    namespace: str
    image: str
    secrets: tuple[tuple[str, SecretValue], ...] = ()
    """User secrets from the control plane, as env vars."""
    secret_references: tuple[SecretReference, ...] = ()
    platform_env: tuple[tuple[str, str], ...] = ()
    """Non-secret variables the platform injects (project name, revision id, endpoints, ...)."""
    platform_secrets: tuple[tuple[str, SecretValue], ...] = ()
    """Secret variables the platform injects (e.g. the LangSmith API key for tracing)."""
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    postgres_password: SecretValue | None = None
    """In-cluster stores: the generated password, read back from the cluster after the first deploy
    so rendering stays deterministic."""
    redis_password: SecretValue | None = None
    """In-cluster Redis: generated and kept like the Postgres password."""
    external_stores: ExternalStores | None = None
    managed_stores: ManagedStoresSecret | None = None


@dataclass(frozen=True)
class RenderOptions:
    """Listener-wide choices that shape every deployment (from the listener's settings)."""

    routing: RoutingMode = "none"
    hostname: str | None = None
    """HTTPRoute/Ingress host; each deployment is served under the path `/<deployment name>`."""
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    ingress_class_name: str | None = None
    autoscaler: Autoscaler = "hpa"
    queue_enabled: bool = True
    queue_command: tuple[str, ...] = ("/storage/queue_entrypoint.sh",)
    """`("python", "-m", "langgraph_api.queue_entrypoint")` for Agent Server images older than 2026-02."""
    jobs_per_worker: int = 10
    progress_deadline_seconds: int = 600
    store_mode: StoreMode = "in-cluster"
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    redis_image: str = DEFAULT_REDIS_IMAGE
    keda_namespace: str = "keda"
    """Where KEDA's operator runs; its pods may reach Postgres for the pending-runs trigger."""
    storage_class_name: str | None = None
    run_as_non_root: bool = True
    cluster_domain: str = "cluster.local"
    """Used in the in-cluster store URIs (`<service>.<namespace>.svc.<cluster_domain>`)."""
    hpa_cpu_utilization: int = 80
    """HPA target: average CPU utilisation, in percent of the request."""
    revision_history_limit: int = 10
    """ReplicaSets kept per Deployment (the operator's template uses 10)."""
