"""The listener's configuration, from `LISTENER_*` environment variables, validated at start.

A bad value stops the listener before it touches anything, with a message that names the
variable and the value (never the API key's value).
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from listener.regions import REGIONS, RegionName
from listener.spec import DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE, RenderOptions

ENV_PREFIX = "LISTENER_"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IPV4 = re.compile(r"^[0-9]+(\.[0-9]+){3}$")


def _split_commas(value: object) -> object:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


def _split_words(value: object) -> object:
    return tuple(value.split()) if isinstance(value, str) else value


def _namespaces(items: list[str]) -> list[str]:
    for item in items:
        if not _DNS_LABEL.match(item) or len(item) > 63:
            raise ValueError(f"{item!r} is not a DNS-1123 label")
        if item == "default" or item.startswith("kube-"):
            raise ValueError(f"{item!r} is reserved; the listener never deploys into 'default' or 'kube-*'")
    if not items:
        raise ValueError("at least one namespace is required")
    if len(set(items)) != len(items):
        raise ValueError("a namespace is listed twice")
    return items


def _command(parts: tuple[str, ...]) -> tuple[str, ...]:
    if not parts:
        raise ValueError("must not be empty")
    return parts


Namespaces = Annotated[list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_namespaces)]
Command = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_words), AfterValidator(_command)]


class Settings(BaseSettings):
    # `inf`/`nan` are not numbers an operator means; every number below also has an upper bound.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, allow_inf_nan=False)

    # Who we are, and where the control plane is.
    api_key: SecretStr
    workspace_id: UUID
    """The LangSmith workspace (sent as `X-Tenant-Id`)."""
    listener_id: UUID
    region: RegionName | None = None
    control_plane_url: str | None = None
    """An explicit control-plane URL (self-hosted LangSmith: `https://host/api-host`, or the emulator)."""
    namespaces: Namespaces

    # The loop.
    poll_interval_seconds: float = Field(default=10.0, ge=1.0, le=3600.0)
    poll_jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    resync_interval_seconds: float = Field(default=300.0, ge=10.0, le=86400.0)
    rollout_timeout_seconds: float = Field(default=600.0, ge=30.0, le=86400.0)
    unschedulable_grace_seconds: float = Field(default=15.0, ge=0.0, le=3600.0)
    inventory_watch: bool = False
    """Keep the inventory current with watches instead of one list per namespace and kind per cycle
    that looks at it (experimental: see listener/README.md, "Work queue, inventory and drift")."""
    workers: int = Field(default=4, ge=1, le=32)
    """Deployments reconciled at once (the work queue's threads). A step mostly waits on the API
    server, so a few per core; more only adds load on the API server."""

    # What gets rendered.
    routing: Literal["httproute", "ingress", "none"] = "none"
    hostname: str | None = None
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    ingress_class_name: str | None = None
    autoscaler: Literal["hpa", "keda"] = "hpa"
    queue_enabled: bool = True
    queue_command: Command = ("/storage/queue_entrypoint.sh",)
    store_mode: Literal["in-cluster", "external", "managed"] = "in-cluster"
    external_stores_secret: str | None = None
    storage_class_name: str | None = None
    data_retention: Literal["retain", "delete"] = "retain"
    """What happens to a deleted deployment's Postgres volume: kept (default) or deleted with it."""

    # Managed stores (issue 14): a database + login roles and a Redis key prefix (or ACL user) per
    # deployment in the shared PostgreSQL and Redis. The URIs carry admin passwords: SecretStr, never
    # echoed in errors or logs.
    postgres_admin_uri: SecretStr | None = None
    redis_admin_uri: SecretStr | None = None
    postgres_admin_password_secret_arn: str | None = None
    """An RDS-managed master secret in Secrets Manager (JSON `username`/`password`): the admin URI then
    carries no password; the listener reads it through its IAM role (IRSA) and re-reads it after RDS
    rotates it."""
    redis_isolation: Literal["prefix", "acl"] = "prefix"
    """`prefix`: REDIS_KEY_PREFIX only (every deployment shares the admin credentials); `acl`: also an ACL
    user per deployment confined to its prefix (needs ACL SETUSER: not ElastiCache)."""
    managed_admin_connections: int = Field(default=2, ge=1, le=16)
    """Admin connections per store, however many deployments there are."""

    # Where status goes.
    status_reporting: Literal["emulator", "heartbeat", "off"] = "heartbeat"
    """`heartbeat` is all real LangSmith accepts; `emulator` also posts revision transitions to the
    emulator's data-plane channel."""

    probe_url_template: str = "http://{service}.{namespace}.svc.cluster.local:{port}/ok"
    """Where a new revision's `GET /ok` is checked before it is called DEPLOYED; only `{service}`,
    `{namespace}` and `{port}` may appear in it."""

    # How we reach Kubernetes: in-cluster service account unless a kubeconfig is given.
    kubeconfig: str | None = None

    # --- Safety (issue 10): pruning guards, tracing endpoint, in-cluster store images -------------
    prune_window_seconds: float = Field(default=300.0, ge=60.0, le=7 * 86400.0)
    """How long a deployment must be absent from complete lists (and confirmed gone) before pruning."""
    prune_max_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    """At most this fraction of the listener's deployments (and at least one) is pruned per cycle."""
    prune_allow_empty: bool = False
    """Allow pruning the last of the listener's deployments (Argo CD's `allowEmpty`)."""
    langsmith_endpoint: str | None = None
    """The LangSmith API Agent Servers trace to; derived from the region or a self-hosted
    `/api-host` URL when unset."""
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    redis_image: str = DEFAULT_REDIS_IMAGE
    keda_namespace: str = "keda"
    """Where KEDA's operator runs: its pods may reach Postgres (the pending-runs trigger)."""
    # --- end of the safety block ---

    # --- Running in production: leader election, health/metrics, shutdown, logs (issue 13) ---
    leader_election: bool = False
    """Elect one leader among replicas with a Lease in the listener's own namespace."""
    pod_namespace: str | None = None
    """The listener's own namespace (downward API `metadata.namespace`); holds the Lease."""
    pod_name: str | None = None
    """This replica's name (downward API `metadata.name`): its identity in the Lease."""
    lease_name: str | None = None
    """Default `langsmith-listener-<listener id>`, so two listeners in one namespace never share one."""
    health_port: int = Field(default=8080, ge=1, le=65535)
    """`GET /healthz`, `/readyz` and `/metrics` are served here."""
    health_stall_seconds: float = Field(default=120.0, ge=10.0, le=3600.0)
    """`/healthz` fails when the loop has made no progress (no cycle, no request) for this long."""
    shutdown_timeout_seconds: float = Field(default=20.0, ge=1.0, le=3600.0)
    """On SIGTERM, how long the current cycle may run on; keep it below terminationGracePeriodSeconds."""
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("pod_namespace")
    @classmethod
    def _pod_namespace(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_LABEL.match(value) or len(value) > 63):
            raise ValueError("is not a DNS-1123 label")
        return value

    @field_validator("pod_name", "lease_name")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_SUBDOMAIN.match(value) or len(value) > 253):
            raise ValueError("is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')")
        return value

    @property
    def lease(self) -> str:
        return self.lease_name or f"langsmith-listener-{self.listener_id}"

    @model_validator(mode="after")
    def _leader_election_identity(self) -> Settings:
        if self.leader_election and not (self.pod_namespace and self.pod_name):
            raise ValueError(
                f"{ENV_PREFIX}LEADER_ELECTION=true needs {ENV_PREFIX}POD_NAMESPACE and {ENV_PREFIX}POD_NAME "
                "(from the downward API)"
            )
        return self

    # --- end of the production block ---

    # Checked here, not first by the client's config: its ValidationError escaped `main` as a traceback
    # (exit 1) that named neither variable.
    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("control_plane_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, "e.g. https://langsmith.example.com/api-host")
        return value

    @field_validator("langsmith_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, "e.g. https://langsmith.example.com/api/v1")
        return value.rstrip("/") if value else value

    @field_validator("postgres_image", "redis_image")
    @classmethod
    def _image(cls, value: str) -> str:
        from listener.validate import is_image_reference

        if not value or any(c.isspace() for c in value):
            raise ValueError("must be an image reference without whitespace")
        if not is_image_reference(value):
            # The kubelet's grammar (distribution/reference): anything else is InvalidImageName on
            # every store pod, found only after a rollout started.
            raise ValueError("is not a valid image reference (e.g. pgvector/pgvector@sha256:<64 hex>)")
        return value

    # Names that go into every rendered object: checked here by Kubernetes' own rules, or every
    # revision fails later with the API server's 422 (or a pod that never mounts its Secret).
    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        # Ingress `rules[].host` and Gateway API `Hostname`: a lower-case DNS-1123 subdomain, optionally
        # `*.`-prefixed, never an IP address (k8s networking validation; gateway-api apis/v1 Hostname).
        if value is None:
            return value
        bare = value.removeprefix("*.")
        if not _DNS_SUBDOMAIN.match(bare) or len(value) > 253 or _IPV4.match(bare):
            raise ValueError(
                "is not a host name (a lower-case DNS name such as agents.example.com, optionally "
                "*.-prefixed; no scheme, port, path or IP address)"
            )
        return value

    @field_validator("gateway_name", "ingress_class_name", "external_stores_secret", "storage_class_name")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_SUBDOMAIN.match(value) or len(value) > 253):
            raise ValueError("is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')")
        return value

    @field_validator("gateway_namespace")
    @classmethod
    def _gateway_namespace(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_LABEL.match(value) or len(value) > 63):
            raise ValueError("is not a DNS-1123 label")
        return value

    @field_validator("keda_namespace")
    @classmethod
    def _keda_namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not a DNS-1123 label")
        return value

    @field_validator("postgres_admin_password_secret_arn")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value is not None:
            from listener.managed.master_secret import parse_arn

            parse_arn(value)
        return value

    @field_validator("probe_url_template")
    @classmethod
    def _probe(cls, value: str) -> str:
        return _probe_template(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.region is None and self.control_plane_url is None:
            raise ValueError(
                f"set {ENV_PREFIX}REGION (us, eu, apac, aws-us) or {ENV_PREFIX}CONTROL_PLANE_URL"
            )
        if self.region is not None and self.control_plane_url is not None:
            raise ValueError(f"set only one of {ENV_PREFIX}REGION and {ENV_PREFIX}CONTROL_PLANE_URL")
        if self.prune_window_seconds < self.poll_interval_seconds:
            # An absence is observed once per poll, and observations more than two windows apart
            # restart its streak (listener.reconcile.prune): with polls longer than the window, a
            # deleted deployment would never be pruned, while every refusal said "pruned from <time>".
            raise ValueError(
                f"{ENV_PREFIX}PRUNE_WINDOW_SECONDS={self.prune_window_seconds:g} is shorter than "
                f"{ENV_PREFIX}POLL_INTERVAL_SECONDS={self.poll_interval_seconds:g}: nothing deleted in the control "
                "plane would ever be pruned; make the window at least one poll interval"
            )
        if self.routing != "none" and not self.hostname:
            raise ValueError(f"{ENV_PREFIX}ROUTING={self.routing} needs {ENV_PREFIX}HOSTNAME")
        if self.routing == "httproute" and not self.gateway_name:
            raise ValueError(f"{ENV_PREFIX}ROUTING=httproute needs {ENV_PREFIX}GATEWAY_NAME")
        if self.routing == "ingress" and len(self.namespaces) > 1:
            raise ValueError(
                f"{ENV_PREFIX}ROUTING=ingress cannot serve several namespaces (an Ingress routes only within "
                "its namespace); use httproute with a Gateway"
            )
        if self.store_mode == "external" and not self.external_stores_secret:
            raise ValueError(f"{ENV_PREFIX}STORE_MODE=external needs {ENV_PREFIX}EXTERNAL_STORES_SECRET")
        if self.store_mode == "managed":
            _check_managed(self)
        return self

    @property
    def base_url(self) -> str:
        if self.control_plane_url:
            return self.control_plane_url.rstrip("/")
        return REGIONS[self.region or "us"].control_plane_url

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            routing=self.routing,
            hostname=self.hostname,
            gateway_name=self.gateway_name,
            gateway_namespace=self.gateway_namespace,
            ingress_class_name=self.ingress_class_name,
            autoscaler=self.autoscaler,
            queue_enabled=self.queue_enabled,
            queue_command=self.queue_command,
            progress_deadline_seconds=int(self.rollout_timeout_seconds),
            store_mode=self.store_mode,
            storage_class_name=self.storage_class_name,
            postgres_image=self.postgres_image,
            redis_image=self.redis_image,
            keda_namespace=self.keda_namespace,
        )

    def probe_url(self, namespace: str, service: str, port: int) -> str:
        return self.probe_url_template.format(namespace=namespace, service=service, port=port)


_URL_FIELDS = frozenset({"control_plane_url", "langsmith_endpoint"})


def _check_url(value: str, example: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"must be an http(s) URL with a host, {example}")
    if parts.username is not None or parts.password is not None:
        # The URL is logged and named in every control-plane error: credentials in it would be too.
        raise ValueError("must not carry credentials (user:password@); the API key goes in LISTENER_API_KEY")


def _without_credentials(value: object) -> object:
    """A URL as it may be shown: any `user:password@` replaced."""
    if not isinstance(value, str) or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return "<not shown>"
    if parts.username is None and parts.password is None:
        return value
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


PROBE_FIELDS = frozenset({"service", "namespace", "port"})


def _probe_template(value: str) -> str:
    """Only the documented fields, plainly: an unknown `{field}` (or `{service.attr}`, `{0}`, a
    format spec) would otherwise pass here and fail the first time a rollout is checked."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as error:
        raise ValueError(f"is not a valid template: {error}") from None
    fields = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PROBE_FIELDS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"may only use {{service}}, {{namespace}} and {{port}}, not {shown}")
        fields.add(name)
    if not {"service", "namespace"} <= fields:
        raise ValueError("must contain {service} and {namespace}")
    sample = urlsplit(value.format(service="svc", namespace="ns", port=8000))
    if sample.scheme not in ("http", "https") or not sample.netloc:
        raise ValueError("must be an http(s) URL with a host")
    return value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Warnings for `LISTENER_*` variables that are no setting (a typo is otherwise silently ignored)."""
    known = sorted(name.upper() for name in Settings.model_fields)
    warnings = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper.removeprefix(ENV_PREFIX) in known:
            continue
        # Compared without the shared prefix, which would make every name look close to every other.
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), known, n=1, cutoff=0.6)
        hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
        warnings.append(f"{variable} is not a listener setting and is ignored{hint}")
    return warnings


def _check_managed(settings: Settings) -> None:
    """Both admin URIs present and parseable; messages name the variable, never its value."""
    from listener.managed.errors import StoreConfigError
    from listener.managed.targets import PostgresTarget, RedisTarget

    for variable, value, parse in (
        ("POSTGRES_ADMIN_URI", settings.postgres_admin_uri, PostgresTarget.from_admin_uri),
        ("REDIS_ADMIN_URI", settings.redis_admin_uri, RedisTarget.from_admin_uri),
    ):
        if value is None or not value.get_secret_value().strip():
            raise ValueError(
                f"{ENV_PREFIX}STORE_MODE=managed needs {ENV_PREFIX}{variable} (from the listener's store "
                "admin Secret)"
            )
        try:
            parse(value.get_secret_value())
        except StoreConfigError as error:
            raise ValueError(f"{ENV_PREFIX}{variable} {error.reason}") from None


_SECRET_FIELDS = frozenset({"api_key", "postgres_admin_uri", "redis_admin_uri"})


class SettingsError(Exception):
    """Settings that cannot start the listener; `str()` names every offending variable."""


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    try:
        if environ is None:
            return Settings()  # type: ignore[call-arg]
        fields = {
            name.removeprefix(ENV_PREFIX).lower(): value
            for name, value in environ.items()
            if name.startswith(ENV_PREFIX)
        }
        return Settings.model_validate(fields)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    lines = ["the listener's settings are invalid:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"  {variable}: is required")
        elif field in _SECRET_FIELDS or field == "":
            # Secret values, and the whole input of a cross-field error, are never echoed.
            lines.append(f"  {variable}: {message}")
        elif field in _URL_FIELDS:
            lines.append(f"  {variable}={_without_credentials(item.get('input'))!r}: {message}")
        else:
            lines.append(f"  {variable}={item.get('input')!r}: {message}")
    return "\n".join(lines)
