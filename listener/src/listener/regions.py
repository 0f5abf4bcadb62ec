"""Where the LangSmith control plane lives, per region: the one source of these facts.

The Pulumi program builds its egress allowlist from this module and the listener builds its
base URL from it, so the two can never disagree. Sources: shared/reference/hybrid-data-plane.md
§2.2-2.3 and control-plane-api.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

RegionName = Literal["us", "eu", "apac", "aws-us"]


@dataclass(frozen=True)
class Region:
    name: str
    control_plane_host: str
    """`api.host…`: the Deployment Control Plane API the listener polls."""
    smith_api_host: str
    """`api.smith…`: LangSmith's API (traces, API-key validation)."""
    published_ips: tuple[str, ...]
    """LangChain's published ingress IPs. They are listed for `api.smith.*`; no separate list exists
    for `api.host.*`, which is why a domain allowlist (Network Firewall) is the safer egress mode."""

    @property
    def control_plane_url(self) -> str:
        return f"https://{self.control_plane_host}"

    @property
    def hosts(self) -> tuple[str, str]:
        return (self.control_plane_host, self.smith_api_host)


REGIONS: dict[str, Region] = {
    "us": Region(
        "us", "api.host.langchain.com", "api.smith.langchain.com", ("34.8.121.39", "34.107.251.234")
    ),
    "eu": Region(
        "eu", "eu.api.host.langchain.com", "eu.api.smith.langchain.com", ("34.95.92.214", "34.13.73.122")
    ),
    "apac": Region(
        "apac", "apac.api.host.langchain.com", "apac.api.smith.langchain.com", ("34.149.149.213",)
    ),
    "aws-us": Region(
        "aws-us",
        "aws.api.host.langchain.com",
        "aws.api.smith.langchain.com",
        ("3.129.27.169", "13.58.107.119", "16.59.151.49", "16.59.98.147", "3.134.146.243", "3.150.87.246"),
    ),
}

SELF_HOSTED_API_PATH = "/api-host"


def self_hosted_control_plane_url(langsmith_url: str) -> str:
    """Self-hosted LangSmith serves the control-plane API under `/api-host` on its own host."""
    parts = urlsplit(langsmith_url.rstrip("/"))
    path = parts.path if parts.path.endswith(SELF_HOSTED_API_PATH) else parts.path + SELF_HOSTED_API_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


SELF_HOSTED_LANGSMITH_API_PATH = "/api/v1"


def langsmith_api_url(control_plane_url: str) -> str | None:
    """The LangSmith API (what Agent Servers trace to) that belongs to a control-plane URL, or None.

    A region's control plane pairs with that region's `api.smith` host; self-hosted LangSmith serves
    the control plane at `<host>/api-host` and its API at `<host>/api/v1`
    (docs.langchain.com/langsmith/self-host-usage). Any other URL (an emulator, a proxy) has no known
    LangSmith API: None, never the public default, so a self-hosted install's traces and key never go
    to LangChain's public service by accident.
    """
    parts = urlsplit(control_plane_url.rstrip("/"))
    for region in REGIONS.values():
        if parts.netloc == region.control_plane_host and parts.path in ("", "/"):
            return f"https://{region.smith_api_host}"
    if parts.path.endswith(SELF_HOSTED_API_PATH):
        prefix = parts.path[: -len(SELF_HOSTED_API_PATH)]
        return urlunsplit((parts.scheme, parts.netloc, prefix + SELF_HOSTED_LANGSMITH_API_PATH, "", ""))
    return None
