"""Pure constructors for the request bodies a data plane sends most (hybrid `external_docker` deployments)."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from pydantic import SecretStr

from listener.controlplane.models import (
    DeploymentCreateRequest,
    DeploymentPatchRequest,
    ListenerConfig,
    ResourceSpec,
    Secret,
    SecretReference,
    SourceConfigRequest,
    SourceRevisionConfigRequest,
)

__all__ = ["external_docker_deployment", "new_image_revision"]


def _secrets(values: Mapping[str, str | SecretStr]) -> list[Secret]:
    return [
        Secret(name=name, value=SecretStr(str(v)) if not isinstance(v, SecretStr) else v)
        for name, v in values.items()
    ]


def external_docker_deployment(
    *,
    name: str,
    image_uri: str,
    listener_id: UUID | str,
    k8s_namespace: str,
    secrets: Mapping[str, str | SecretStr] | None = None,
    secret_references: list[SecretReference] | None = None,
    resource_spec: ResourceSpec | None = None,
) -> DeploymentCreateRequest:
    """A hybrid deployment placed on a listener (control-plane-api.md §8)."""
    source_config: dict[str, object] = {
        "listener_id": listener_id,
        "listener_config": ListenerConfig(k8s_namespace=k8s_namespace).model_dump(),
    }
    if resource_spec is not None:
        source_config["resource_spec"] = resource_spec.model_dump(exclude_none=True)
    return DeploymentCreateRequest.model_validate(
        {
            "name": name,
            "source": "external_docker",
            "source_config": SourceConfigRequest.model_validate(source_config),
            "source_revision_config": SourceRevisionConfigRequest(image_uri=image_uri),
            "secrets": [s.model_dump(context={"reveal_secrets": True}) for s in _secrets(secrets or {})],
            **(
                {"secret_references": [r.model_dump() for r in secret_references]}
                if secret_references
                else {}
            ),
        }
    )


def new_image_revision(
    image_uri: str, *, secrets: Mapping[str, str | SecretStr] | None = None
) -> DeploymentPatchRequest:
    """A PATCH that creates a new revision running `image_uri` (secrets omitted = carried over)."""
    body: dict[str, object] = {"source_revision_config": SourceRevisionConfigRequest(image_uri=image_uri)}
    if secrets is not None:
        body["secrets"] = [s.model_dump(context={"reveal_secrets": True}) for s in _secrets(secrets)]
    return DeploymentPatchRequest.model_validate(body)
