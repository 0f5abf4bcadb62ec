"""Pydantic models of the LangSmith Deployment Control Plane API (OpenAPI 0.1.0, copy of 2026-08-01).

Two families, on purpose:

* **Response models** (`Deployment`, `Revision`, `Listener`, the `*List` envelopes) *allow* extra fields,
because the
  service adds fields over time and an unknown field must not break a running listener; the fields we rely on
  are typed
  and required, so a missing or mistyped one fails validation (the client turns that into
  `InvalidResponseError`).
* **Request models** (`*CreateRequest`, `*PatchRequest`) *forbid* unknown fields: a typo in a field name
would otherwise
  be silently ignored by the service. The emulator validates request bodies with these same models.

Secret values are `SecretStr`: they never appear in a repr, a log line or a default dump. They are revealed
only when a
request body is serialized with `reveal_secrets(...)` (the client and the emulator do that, nothing else
should).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer

__all__ = [
    "TERMINAL_REVISION_STATUSES",
    "Container",
    "DataPlaneStatus",
    "Deployment",
    "DeploymentCreateRequest",
    "DeploymentPatchRequest",
    "DeploymentStatus",
    "DeploymentType",
    "DeploymentsList",
    "EnvVar",
    "Listener",
    "ListenerComputeConfig",
    "ListenerConfig",
    "ListenerCreateRequest",
    "ListenerPatchRequest",
    "ListenersList",
    "LocalObjectReference",
    "ResourceRequirements",
    "ResourceSpec",
    "Revision",
    "RevisionSource",
    "RevisionStatus",
    "RevisionsList",
    "Secret",
    "SecretReference",
    "Source",
    "SourceConfig",
    "SourceConfigRequest",
    "SourceRevisionConfig",
    "SourceRevisionConfigRequest",
    "ValidationErrorItem",
    "dump_request",
]

Source = Literal["github", "external_docker", "internal_docker", "internal_source"]
RevisionSource = Literal["github", "internal_docker", "internal_source"]
DeploymentType = Literal["dev_free", "dev", "prod"]
DataPlaneStatus = Literal["DEPLOYING", "DEPLOYED", "DEPLOY_FAILED"]
"""The statuses a data plane may report for a revision (emulator status channel only)."""

_REVEAL = "reveal_secrets"


class _UnknownTolerantEnum(enum.StrEnum):
    """A status enum that maps a value the spec does not list to UNKNOWN instead of failing.

    Statuses are informational for the listener; a status added by the service must not stop it from reading
    the
    deployment. The spec itself provides `UNKNOWN` for exactly this.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return cls.__members__["UNKNOWN"] if isinstance(value, str) else None


class RevisionStatus(_UnknownTolerantEnum):
    CREATING = "CREATING"
    QUEUED = "QUEUED"
    AWAITING_BUILD = "AWAITING_BUILD"
    BUILDING = "BUILDING"
    AWAITING_DEPLOY = "AWAITING_DEPLOY"
    DEPLOYING = "DEPLOYING"
    CREATE_FAILED = "CREATE_FAILED"
    BUILD_FAILED = "BUILD_FAILED"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DEPLOYED = "DEPLOYED"
    SKIPPED = "SKIPPED"
    INTERRUPTED = "INTERRUPTED"
    UNKNOWN = "UNKNOWN"


# langgraph-cli's _TERMINAL_STATUSES; INTERRUPTED and UNKNOWN are transient (the Terraform provider keeps
# polling).
TERMINAL_REVISION_STATUSES = frozenset(
    {
        RevisionStatus.DEPLOYED,
        RevisionStatus.CREATE_FAILED,
        RevisionStatus.BUILD_FAILED,
        RevisionStatus.DEPLOY_FAILED,
        RevisionStatus.SKIPPED,
    }
)


class DeploymentStatus(_UnknownTolerantEnum):
    AWAITING_DATABASE = "AWAITING_DATABASE"
    READY = "READY"
    UNUSED = "UNUSED"
    AWAITING_DELETE = "AWAITING_DELETE"
    UNKNOWN = "UNKNOWN"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- Shared nested types ---
# Used in requests and responses. Unknown fields are tolerated on nested Kubernetes objects because they are
# passed through to Kubernetes, which validates them itself.


class _Nested(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LocalObjectReference(_Nested):
    name: str


class EnvVar(_Nested):
    name: str
    value: str | None = None
    valueFrom: dict[str, Any] | None = None


class ResourceRequirements(_Nested):
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None


class VolumeMount(_Nested):
    name: str | None = None
    mountPath: str | None = None
    subPath: str | None = None
    mountPropagation: str | None = None
    readOnly: bool | None = None
    subPathExpr: str | None = None


class Volume(_Nested):
    name: str | None = None
    configMap: dict[str, Any] | None = None
    secret: dict[str, Any] | None = None
    emptyDir: dict[str, Any] | None = None
    persistentVolumeClaim: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None
    downwardAPI: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None


class Container(_Nested):
    name: str
    image: str
    imagePullPolicy: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    workingDir: str | None = None
    env: list[EnvVar] | None = None
    envFrom: list[dict[str, Any]] | None = None
    resources: ResourceRequirements | None = None
    volumeMounts: list[VolumeMount] | None = None
    securityContext: dict[str, Any] | None = None
    restartPolicy: str | None = None


_Cpu = Annotated[float, Field(ge=0.1, le=8.0)]
_CpuLimit = Annotated[float, Field(ge=0.1, le=16.0)]
"""The spec's bounds on what a client may *send*. Responses are read without them: the workspace list
carries every team's deployments, and one value outside them must not make the whole list unreadable
(the listener validates its own deployments' values before rendering, listener.validate)."""


class ResourceSpec(BaseModel):
    """`ResourceSpec-Input` / `ResourceSpec-Output` (identical fields). All fields nullable."""

    model_config = ConfigDict(extra="allow")

    min_scale: int | None = None
    max_scale: int | None = None
    cpu: float | None = None
    cpu_limit: float | None = None
    memory_mb: int | None = None
    memory_limit_mb: int | None = None
    queue_min_scale: int | None = None
    queue_max_scale: int | None = None
    queue_cpu: float | None = None
    queue_cpu_limit: float | None = None
    queue_memory_mb: int | None = None
    queue_memory_limit_mb: int | None = None
    orchestrator_cpu: float | None = None
    orchestrator_cpu_limit: float | None = None
    orchestrator_memory_mb: int | None = None
    orchestrator_memory_limit_mb: int | None = None
    orchestrator_min_scale: int | None = None
    orchestrator_max_scale: int | None = None
    executor_cpu: float | None = None
    executor_cpu_limit: float | None = None
    executor_memory_mb: int | None = None
    executor_memory_limit_mb: int | None = None
    redis_cpu: float | None = None
    redis_cpu_limit: float | None = None
    redis_memory_mb: int | None = None
    redis_memory_limit_mb: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    service_account_name: str | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    volumes: list[Volume] | None = None
    volume_mounts: list[VolumeMount] | None = None
    init_containers: list[Container] | None = None
    sidecars: list[Container] | None = None
    db_cpu: float | None = None
    db_cpu_limit: float | None = None
    db_memory_mb: int | None = None
    db_memory_limit_mb: int | None = None
    db_storage_gi: int | None = None
    db_max_connections: int | None = None


class _StrictResourceSpec(ResourceSpec):
    model_config = ConfigDict(extra="forbid")

    cpu: _Cpu | None = None
    cpu_limit: _CpuLimit | None = None
    queue_cpu: _Cpu | None = None
    queue_cpu_limit: _CpuLimit | None = None
    redis_cpu: _Cpu | None = None
    redis_cpu_limit: _CpuLimit | None = None


class Secret(BaseModel):
    """An environment variable for the deployment's container. The value is secret: hidden in repr and
    dumps."""

    model_config = ConfigDict(extra="allow")

    name: str
    value: SecretStr

    @field_serializer("value")
    def _value(self, value: SecretStr, info: SerializationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get(_REVEAL):
            return value.get_secret_value()
        return str(value)


class SecretReference(BaseModel):
    """Env var `name` populated from key `secret_key` of the existing Kubernetes Secret `secret_name`."""

    model_config = ConfigDict(extra="allow")

    name: str
    secret_name: str
    secret_key: str


class ListenerConfig(_Nested):
    k8s_namespace: str | None = None


class ListenerComputeConfig(_Nested):
    k8s_namespaces: list[str] | None = None


# --- Requests ---


class _StrictListenerConfig(ListenerConfig):
    model_config = ConfigDict(extra="forbid")


class _StrictListenerComputeConfig(ListenerComputeConfig):
    model_config = ConfigDict(extra="forbid")


class SourceConfigRequest(_Request):
    integration_id: UUID | None = None
    repo_url: str | None = None
    deployment_type: DeploymentType | None = None
    build_on_push: bool | None = None
    custom_url: str | None = None
    resource_spec: _StrictResourceSpec | None = None
    listener_id: UUID | None = None
    listener_config: _StrictListenerConfig | None = None
    install_command: str | None = None
    build_command: str | None = None


class SourceRevisionConfigRequest(_Request):
    repo_ref: str | None = None
    langgraph_config_path: str | None = None
    image_uri: str | None = None
    source_tarball_path: str | None = None


class _StrictSecret(Secret):
    model_config = ConfigDict(extra="forbid")


class _StrictSecretReference(SecretReference):
    model_config = ConfigDict(extra="forbid")


class DeploymentCreateRequest(_Request):
    name: str
    source: Source
    source_config: SourceConfigRequest
    source_revision_config: SourceRevisionConfigRequest
    secrets: list[_StrictSecret]
    secret_references: list[_StrictSecretReference] | None = None


class DeploymentPatchRequest(_Request):
    revision_source: RevisionSource | None = None
    source_config: SourceConfigRequest | None = None
    source_revision_config: SourceRevisionConfigRequest | None = None
    secrets: list[_StrictSecret] | None = None
    secret_references: list[_StrictSecretReference] | None = None


class ListenerCreateRequest(_Request):
    compute_type: Literal["k8s"]
    compute_id: str
    compute_config: _StrictListenerComputeConfig
    version: str | None = None


class ListenerPatchRequest(_Request):
    version: str | None = None
    compute_config: _StrictListenerComputeConfig | None = None


def dump_request(model: BaseModel) -> dict[str, Any]:
    """The JSON body for a request model: secrets revealed, unset fields left out (a PATCH sends only what it
    means)."""
    return model.model_dump(mode="json", exclude_unset=True, context={_REVEAL: True})


# --- Responses ---


class SourceConfig(_Response):
    integration_id: UUID | None = None
    repo_url: str | None = None
    deployment_type: str | None = None
    build_on_push: bool | None = None
    custom_url: str | None = None
    resource_spec: ResourceSpec | None = None
    listener_id: UUID | None = None
    # The real service may not echo listener_config back (control-plane-api.md §9.1): callers must tolerate
    # None.
    listener_config: ListenerConfig | None = None
    install_command: str | None = None
    build_command: str | None = None


class SourceRevisionConfig(_Response):
    repo_ref: str | None = None
    langgraph_config_path: str | None = None
    image_uri: str | None = None
    source_tarball_path: str | None = None
    repo_commit_sha: str | None = None


class Deployment(_Response):
    id: UUID
    tenant_id: UUID
    name: str
    source: str
    """A `Source` today; read as text so a source the service adds later (on anyone's deployment in the
    workspace) does not make the whole list unreadable. Only `external_docker` is ever deployed."""
    source_config: SourceConfig
    source_revision_config: SourceRevisionConfig
    secrets: list[Secret]
    secret_references: list[SecretReference] | None = None
    created_at: datetime
    updated_at: datetime
    status: DeploymentStatus
    latest_revision_id: UUID | None
    active_revision_id: UUID | None
    image_version: str | None = None


class Revision(_Response):
    id: UUID
    created_at: datetime
    updated_at: datetime
    status: RevisionStatus
    source: str
    source_revision_config: SourceRevisionConfig

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_REVISION_STATUSES


class Listener(_Response):
    id: UUID
    compute_type: Literal["k8s"]
    compute_id: str
    compute_config: ListenerComputeConfig
    version: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.compute_config.k8s_namespaces or ())


class DeploymentsList(_Response):
    resources: list[Deployment]
    offset: int


class RevisionsList(_Response):
    resources: list[Revision]
    offset: int


class ListenersList(_Response):
    resources: list[Listener]
    offset: int


class ValidationErrorItem(_Response):
    """One entry of FastAPI's `HTTPValidationError.detail`."""

    loc: list[str | int]
    msg: str
    type: str
