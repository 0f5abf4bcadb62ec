"""Typed errors of the control-plane client.

Every error carries the HTTP status (when there was a response), the server's `detail` and the request line,
and a
message a person can act on. None of them ever contains the API key: the client scrubs it from anything the
server
echoes, and requests/headers are never part of a message or repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ControlPlaneError",
    "DeploymentNotEnabledError",
    "FieldError",
    "InvalidResponseError",
    "ListenersNotAllowedError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestValidationError",
    "ServerError",
    "TransportError",
    "WorkspaceRequiredError",
]


@dataclass(frozen=True)
class FieldError:
    """One failing field of a 422: where (`loc`, e.g. `body.compute_config.k8s_namespaces`) and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.loc) or "<request>"

    def __str__(self) -> str:
        return f"{self.where}: {self.msg}"


class ControlPlaneError(Exception):
    """Base class: anything that went wrong talking to the control plane."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status_code: int | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, message={self.message!r})"


class TransportError(ControlPlaneError):
    """No usable HTTP response: connection refused/reset/dropped or a timeout, after all retries."""


class InvalidResponseError(ControlPlaneError):
    """The control plane answered, but not with what the API promises (malformed JSON, missing/mistyped
    fields)."""


class PaginationError(InvalidResponseError):
    """A list endpoint repeated resources already seen: it ignores `offset`, so paging would never end."""


class BadRequestError(ControlPlaneError):
    """400: the control plane refused the request for a business reason (see `detail`)."""


class AuthenticationError(ControlPlaneError):
    """401: the API key is missing or not valid for this control plane."""


class PermissionDeniedError(ControlPlaneError):
    """403 that matches none of the known cases below."""


class WorkspaceRequiredError(PermissionDeniedError):
    """403 `requires workspace specification`: an organization-scoped key was sent without a workspace
    (tenant) ID."""


class DeploymentNotEnabledError(PermissionDeniedError):
    """403 `not enabled`: LangSmith Deployment is not enabled for the organization."""


class ListenersNotAllowedError(PermissionDeniedError):
    """403 on a listener operation: listeners need a self-hosted enterprise plan enabled by LangChain."""


class NotFoundError(ControlPlaneError):
    """404: the deployment, revision or listener does not exist (or is not visible to this workspace)."""


class ConflictError(ControlPlaneError):
    """409: the resource already exists (e.g. a listener with the same compute ID in the workspace)."""


class RequestValidationError(ControlPlaneError):
    """422: the control plane rejected the request's shape; `errors` lists every failing field."""

    def __init__(self, message: str, *, errors: Sequence[FieldError] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors: tuple[FieldError, ...] = tuple(errors)


class RateLimitedError(ControlPlaneError):
    """429 (or 503 with Retry-After) that outlasted the retry budget; `retry_after` is the server's last
    hint."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ControlPlaneError):
    """5xx after all retries (or on a request that is not safe to retry)."""
