"""Kubernetes ``Status`` errors, raised by the store and rendered by the HTTP shell."""

from __future__ import annotations

from typing import Any

from tools.fakekube.kinds import Kind


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
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.name = name
        self.causes = causes or []

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.kind is not None:
            details["group"] = self.kind.group
            details["kind"] = self.kind.plural
        if self.causes:
            details["causes"] = self.causes
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def not_found(kind: Kind, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{kind.resource} "{name}" not found', kind=kind, name=name)


def already_exists(kind: Kind, name: str) -> ApiStatusError:
    return ApiStatusError(
        409, "AlreadyExists", f'{kind.resource} "{name}" already exists', kind=kind, name=name
    )


def stale(kind: Kind, name: str) -> ApiStatusError:
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=kind,
        name=name,
    )


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def invalid(kind: Kind, name: str, causes: list[tuple[str, str]]) -> ApiStatusError:
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    return ApiStatusError(
        422,
        "Invalid",
        f'{kind.kind} "{name}" is invalid: {text}',
        kind=kind,
        name=name,
        causes=[{"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes],
    )
