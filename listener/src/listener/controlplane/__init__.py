"""Typed client of the LangSmith Deployment Control Plane API (`/v2/listeners`, `/v2/deployments`)."""

from listener.controlplane.builders import external_docker_deployment, new_image_revision
from listener.controlplane.client import UNSET, ControlPlaneClient
from listener.controlplane.config import ControlPlaneConfig, resolve_base_url
from listener.controlplane.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ControlPlaneError,
    DeploymentNotEnabledError,
    FieldError,
    InvalidResponseError,
    ListenersNotAllowedError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitedError,
    RequestValidationError,
    ServerError,
    TransportError,
    WorkspaceRequiredError,
)
from listener.controlplane.retry import RetryPolicy
from listener.controlplane.status import EmulatorStatusReporter, LoggingStatusReporter, StatusReporter

__all__ = [
    "UNSET",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ControlPlaneClient",
    "ControlPlaneConfig",
    "ControlPlaneError",
    "DeploymentNotEnabledError",
    "EmulatorStatusReporter",
    "FieldError",
    "InvalidResponseError",
    "ListenersNotAllowedError",
    "LoggingStatusReporter",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestValidationError",
    "RetryPolicy",
    "ServerError",
    "StatusReporter",
    "TransportError",
    "WorkspaceRequiredError",
    "external_docker_deployment",
    "new_image_revision",
    "resolve_base_url",
]
