"""Where and as whom the client talks: base URL (from a region or an explicit URL), API key,
workspace, timeouts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from listener.controlplane.retry import RetryPolicy
from listener.regions import REGIONS, self_hosted_control_plane_url

__all__ = ["ControlPlaneConfig", "resolve_base_url"]


def resolve_base_url(
    *, region: str | None = None, url: str | None = None, self_hosted_url: str | None = None
) -> str:
    """The control-plane base URL from exactly one of: a SaaS region name, an explicit control-plane
    URL, or the URL of a self-hosted LangSmith (whose control plane lives under `/api-host`)."""
    given = {k: v for k, v in {"region": region, "url": url, "self_hosted_url": self_hosted_url}.items() if v}
    if len(given) != 1:
        raise ValueError(
            "Give exactly one of region, url or self_hosted_url for the control plane; "
            f"got {sorted(given) or 'none'}"
        )
    if region is not None:
        if region not in REGIONS:
            raise ValueError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
        return REGIONS[region].control_plane_url
    if self_hosted_url is not None:
        return self_hosted_control_plane_url(_checked_url("self_hosted_url", self_hosted_url))
    return _checked_url("url", url or "").rstrip("/")


def _checked_url(field: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{field} must be an http(s) URL with a host, got {value!r}")
    return value


class ControlPlaneConfig(BaseModel):
    """Immutable client settings. `api_key` is a SecretStr: it never shows in repr, str or logs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    base_url: str
    api_key: SecretStr
    tenant_id: UUID | None = None
    """The workspace to target (`X-Tenant-Id`); required by organization-scoped keys."""
    timeout: float = Field(default=30.0, gt=0)
    """Read/write/pool timeout per attempt, seconds (langgraph-cli uses 30 s)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked_url("base_url", value).rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("api_key must not be empty")
        return value

    @classmethod
    def for_region(cls, region: str, *, api_key: str | SecretStr, **kwargs: Any) -> ControlPlaneConfig:
        return cls(base_url=resolve_base_url(region=region), api_key=api_key, **kwargs)

    @classmethod
    def for_self_hosted(
        cls, langsmith_url: str, *, api_key: str | SecretStr, **kwargs: Any
    ) -> ControlPlaneConfig:
        return cls(base_url=resolve_base_url(self_hosted_url=langsmith_url), api_key=api_key, **kwargs)
