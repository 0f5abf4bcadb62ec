"""Kubernetes ``Status`` errors and ``field.Error`` lists, worded as the API server words them.

``FieldError`` mirrors k8s.io/apimachinery/pkg/util/validation/field (errors.go): the cause ``type``,
the dotted ``field`` path and ``ErrorBody()`` as the cause ``message``. ``invalid()`` builds the
422 the way ``errors.NewInvalid`` does: ``Deployment.apps "web" is invalid: <field>: <body>`` with one
cause per field error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tools.fakekube.kinds import Kind


@dataclass(frozen=True)
class FieldError:
    type: str  # FieldValueInvalid, FieldValueRequired, ...
    field: str
    body: str  # ErrorBody(): "Invalid value: \"x\": detail"

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body


def _render(value: Any) -> str:
    """How field.Error prints a bad value: strings quoted (%q), numbers and bools plain."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def field_invalid(path: str, value: Any, detail: str) -> FieldError:
    body = f"Invalid value: {_render(value)}"
    return FieldError("FieldValueInvalid", path, f"{body}: {detail}" if detail else body)


def field_required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, f"Required value: {detail}" if detail else "Required value")


def field_forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, f"Forbidden: {detail}")


def field_duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {_render(value)}")


def field_not_found(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", path, f"Not found: {_render(value)}")


def field_not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    valid = ", ".join(json.dumps(s) for s in supported)
    return FieldError(
        "FieldValueNotSupported", path, f"Unsupported value: {_render(value)}: supported values: {valid}"
    )


def field_too_long(path: str, max_bytes: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, f"Too long: may not be more than {max_bytes} bytes")


def field_immutable(path: str, value: Any) -> FieldError:
    return field_invalid(path, value, "field is immutable")


class ApiStatusError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: Kind | None = None,
        name: str | None = None,
        causes: list[dict[str, str]] | None = None,
        details_kind: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.name = name
        self.causes = causes or []
        # NotFound/Conflict/Forbidden name the resource ("deployments"), Invalid names the kind.
        self.details_kind = details_kind if details_kind is not None else (kind.plural if kind else None)
        self.retry_after = retry_after
        # For errors about a resource that may not be served (403 before routing): (group, resource).
        self.group_resource: tuple[str, str] | None = None

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.kind is not None:
            if self.kind.group:
                details["group"] = self.kind.group
            if self.details_kind:
                details["kind"] = self.details_kind
        elif self.group_resource is not None:
            if self.group_resource[0]:
                details["group"] = self.group_resource[0]
            details["kind"] = self.group_resource[1]
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:  # omitempty, like metav1.Status
            body["reason"] = self.reason
        if details:
            body["details"] = details
        return body


def not_found(kind: Kind, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{kind.resource} "{name}" not found', kind=kind, name=name)


def unknown_resource() -> ApiStatusError:
    """What the API server answers for a path no served kind matches."""
    return ApiStatusError(404, "NotFound", "the server could not find the requested resource")


def already_exists(kind: Kind, name: str) -> ApiStatusError:
    return ApiStatusError(
        409, "AlreadyExists", f'{kind.resource} "{name}" already exists', kind=kind, name=name
    )


def stale(kind: Kind, name: str) -> ApiStatusError:
    return conflict(
        kind,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def conflict(kind: Kind, name: str, why: str) -> ApiStatusError:
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.resource} "{name}": {why}',
        kind=kind,
        name=name,
    )


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def forbidden(kind: Kind | None, name: str | None, why: str) -> ApiStatusError:
    """errors.NewForbidden: ``<resource> "<name>" is forbidden: <why>``."""
    if kind is None:
        message = f"forbidden: {why}"
    elif name:
        message = f'{kind.resource} "{name}" is forbidden: {why}'
    else:
        message = f"{kind.resource} is forbidden: {why}"
    return ApiStatusError(403, "Forbidden", message, kind=kind, name=name)


def _error_list(errs: list[FieldError]) -> str:
    """field.ErrorList's text: the one error, or all of them in brackets."""
    return str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"


def _causes(errs: list[FieldError]) -> list[dict[str, str]]:
    return [{"reason": e.type, "message": e.body, "field": e.field} for e in errs]


def invalid(kind: Kind, name: str, errs: list[FieldError]) -> ApiStatusError:
    """errors.NewInvalid over a field.ErrorList."""
    qualified = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    return ApiStatusError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {_error_list(errs)}',
        kind=kind,
        name=name,
        causes=_causes(errs),
        details_kind=kind.kind,
    )


def invalid_options(options: str, errs: list[FieldError]) -> ApiStatusError:
    """errors.NewInvalid for a request's options (ListOptions, DeleteOptions, CreateOptions, ...):
    ``<Options>.meta.k8s.io "" is invalid: ...``."""
    return ApiStatusError(
        422, "Invalid", f'{options}.meta.k8s.io "" is invalid: {_error_list(errs)}', causes=_causes(errs)
    )


def internal(message: str) -> ApiStatusError:
    """A non-Status error inside the API server: 500 with an empty reason (kubectl prints it bare)."""
    return ApiStatusError(500, "", message)
