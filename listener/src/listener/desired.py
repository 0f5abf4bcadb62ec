"""Desired state: which control-plane deployments this listener runs, where, and as what.

Pure functions over the control-plane models. The reconciler asks three questions of them each
cycle: which deployments are ours (and which must be refused, with a reason), which of those
changed since the last cycle (cheaply: id, latest revision, updated_at), and what spec to render.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from listener.controlplane.listing import UnreadableDeployment
from listener.controlplane.models import Deployment
from listener.spec import AgentServerSpec, ExternalStores, ResourceSpec, SecretReference, SecretValue

EXTERNAL_DOCKER = "external_docker"


@dataclass(frozen=True)
class Placement:
    """A deployment this listener runs, in the namespace it runs in."""

    deployment: Deployment
    namespace: str

    @property
    def deployment_id(self) -> str:
        return str(self.deployment.id)

    @property
    def revision_id(self) -> str | None:
        revision = self.deployment.latest_revision_id
        return str(revision) if revision else None


@dataclass(frozen=True)
class Refusal:
    """A deployment placed on this listener that it will not apply, and why (reported, never applied)."""

    deployment_id: str
    revision_id: str | None
    reason: str
    report_upstream: bool = True
    """False for a record that may be another listener's: its status is not this listener's to set."""


Fingerprint = tuple[str | None, str]
"""(latest revision id, hash of what we render from, including where: namespace and listener). Not
`updated_at`: the control plane moves it when the data plane reports status, which would turn every
report into a needless re-apply."""


def place(
    deployments: Iterable[Deployment], listener_id: UUID, namespaces: Iterable[str]
) -> tuple[list[Placement], list[Refusal]]:
    """Split the workspace's deployments into those this listener runs and those it must refuse.

    Deployments of other listeners, and sources other than `external_docker`, are simply not ours.
    """
    watched = tuple(namespaces)
    placed: list[Placement] = []
    refused: list[Refusal] = []
    for deployment in deployments:
        config = deployment.source_config
        if deployment.source != EXTERNAL_DOCKER or config.listener_id != listener_id:
            continue
        revision = str(deployment.latest_revision_id) if deployment.latest_revision_id else None
        requested = config.listener_config.k8s_namespace if config.listener_config else None
        # Checked before the namespace: a placement must always be renderable, whichever way its namespace
        # was chosen (`agent_server_spec` raises otherwise, which would abort the whole cycle).
        if revision is None:
            refused.append(Refusal(str(deployment.id), None, "the deployment has no revision yet"))
        elif not deployment.source_revision_config.image_uri:
            refused.append(Refusal(str(deployment.id), revision, "the latest revision has no image_uri"))
        elif requested is None:
            # The service does not always echo listener_config back; a single-namespace listener is unambiguous.
            if len(watched) == 1:
                placed.append(Placement(deployment, watched[0]))
            else:
                refused.append(
                    Refusal(
                        str(deployment.id),
                        revision,
                        "the deployment names no namespace (source_config.listener_config.k8s_namespace) and "
                        f"this listener watches several ({', '.join(watched)})",
                    )
                )
        elif requested not in watched:
            refused.append(
                Refusal(
                    str(deployment.id),
                    revision,
                    f"namespace '{requested}' is not watched by this listener (it watches {', '.join(watched)})",
                )
            )
        else:
            placed.append(Placement(deployment, requested))
    placed.sort(key=lambda p: p.deployment_id)
    refused.sort(key=lambda r: r.deployment_id)
    return placed, refused


def refuse_unreadable(
    unreadable: Iterable[UnreadableDeployment], listener_id: UUID
) -> tuple[list[Refusal], list[UnreadableDeployment]]:
    """Deployments the list shows but that cannot be validated: (refused, not ours).

    Refused — this listener's, or whose listener cannot be read: they count as listed (prune never
    takes an unreadable record for a deletion) and nothing is written for them; their running objects
    stay as they are. Only those known to be this listener's are reported upstream (a record whose
    listener cannot be read may be another listener's, which may read it). Not ours — another
    listener's, on none, or another source: ignored, like a valid deployment elsewhere.
    """
    refused: list[Refusal] = []
    ignored: list[UnreadableDeployment] = []
    for item in unreadable:
        ours = item.listener_known and item.listener_id == listener_id
        other_source = item.source is not None and item.source != EXTERNAL_DOCKER
        if (item.listener_known and not ours) or other_source:
            ignored.append(item)
            continue
        revision = str(item.revision_id) if item.revision_id else None
        refused.append(Refusal(str(item.id), revision, item.reason, report_upstream=ours))
    refused.sort(key=lambda r: r.deployment_id)
    return refused, ignored


def fingerprint(placement: Placement) -> Fingerprint:
    deployment = placement.deployment
    revision = str(deployment.latest_revision_id) if deployment.latest_revision_id else None
    content = {
        # Where it runs is part of what it is: a move to another namespace or listener is a change.
        "namespace": placement.namespace,
        "listener_id": str(deployment.source_config.listener_id),
        "name": deployment.name,
        "image": deployment.source_revision_config.image_uri,
        "secrets": sorted((s.name, s.value.get_secret_value()) for s in deployment.secrets),
        "secret_references": sorted(r.model_dump_json() for r in deployment.secret_references or ()),
        "resource_spec": deployment.source_config.resource_spec.model_dump(mode="json")
        if deployment.source_config.resource_spec
        else None,
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return (revision, digest)


def changed(previous: Mapping[str, Fingerprint], placements: Iterable[Placement]) -> list[Placement]:
    """Placements that are new or whose control-plane state moved since the last cycle."""
    return [p for p in placements if previous.get(p.deployment_id) != fingerprint(p)]


@dataclass(frozen=True)
class Platform:
    """What the platform injects into every Agent Server (from the listener's settings)."""

    listener_id: str
    langsmith_endpoint: str | None
    """The LangSmith API of this control plane; None when unknown, which turns tracing off."""
    api_key: SecretValue | None
    """Shared with Agent Servers for tracing and licensing, as LangSmith's own platform does; only
    ever together with `langsmith_endpoint`, so it never goes to a service it does not belong to."""
    tracing: bool = True
    external_stores: ExternalStores | None = None

    @property
    def traced(self) -> bool:
        return self.tracing and self.langsmith_endpoint is not None


def agent_server_spec(
    placement: Placement,
    platform: Platform,
    postgres_password: SecretValue | None,
    redis_password: SecretValue | None = None,
) -> AgentServerSpec:
    deployment = placement.deployment
    revision = placement.revision_id
    if revision is None or not deployment.source_revision_config.image_uri:
        raise ValueError(f"deployment {deployment.id} has no revision with an image to run")
    env = {
        "LANGSMITH_DEPLOYMENT_NAME": deployment.name,
        "LANGSMITH_HOST_PROJECT_ID": str(deployment.id),
        "LANGSMITH_HOST_PROJECT_NAME": deployment.name,
        "LANGSMITH_HOST_REVISION_ID": revision,
        "LANGSMITH_TENANT_ID": str(deployment.tenant_id),
        "LANGSMITH_WORKSPACE_ID": str(deployment.tenant_id),
        "LANGCHAIN_PROJECT": deployment.name,
        "LANGSMITH_PROJECT": deployment.name,
        "LANGCHAIN_TRACING_V2": "true" if platform.traced else "false",
        "LANGSMITH_TRACING": "true" if platform.traced else "false",
    }
    if platform.langsmith_endpoint:
        env["LANGSMITH_ENDPOINT"] = platform.langsmith_endpoint
        env["LANGCHAIN_ENDPOINT"] = platform.langsmith_endpoint
    platform_secrets: tuple[tuple[str, SecretValue], ...] = ()
    if platform.api_key is not None and platform.langsmith_endpoint:
        platform_secrets = (("LANGCHAIN_API_KEY", platform.api_key), ("LANGSMITH_API_KEY", platform.api_key))
    user_names = {secret.name for secret in deployment.secrets}
    return AgentServerSpec(
        deployment_id=str(deployment.id),
        deployment_name=deployment.name,
        revision_id=revision,
        tenant_id=str(deployment.tenant_id),
        listener_id=platform.listener_id,
        namespace=placement.namespace,
        image=deployment.source_revision_config.image_uri,
        # By name only: a duplicated name would otherwise compare two SecretValues (TypeError). Stable, so
        # the last duplicate still wins when the env Secret is built.
        secrets=tuple(
            sorted(
                ((s.name, SecretValue(s.value.get_secret_value())) for s in deployment.secrets),
                key=lambda item: item[0],
            )
        ),
        secret_references=tuple(
            sorted(
                (
                    SecretReference(r.name, r.secret_name, r.secret_key)
                    for r in deployment.secret_references or ()
                ),
                key=lambda r: r.name,
            )
        ),
        # A user secret of the same name wins: the user asked for it explicitly.
        platform_env=tuple(sorted((k, v) for k, v in env.items() if k not in user_names)),
        platform_secrets=tuple((k, v) for k, v in platform_secrets if k not in user_names),
        resources=resource_spec(deployment),
        postgres_password=postgres_password,
        redis_password=redis_password,
        external_stores=platform.external_stores,
    )


def resource_spec(deployment: Deployment) -> ResourceSpec:
    spec = deployment.source_config.resource_spec
    if spec is None:
        return ResourceSpec()

    def dumped(items: Iterable[object] | None) -> tuple[dict, ...]:
        return tuple(item.model_dump(exclude_none=True) for item in items or ())  # type: ignore[attr-defined]

    scalars = {
        name: getattr(spec, name)
        for name in ResourceSpec.__dataclass_fields__
        if name not in _STRUCTURED and getattr(spec, name, None) is not None
    }
    return ResourceSpec(
        **scalars,
        labels=tuple(sorted((spec.labels or {}).items())),
        annotations=tuple(sorted((spec.annotations or {}).items())),
        service_account_name=spec.service_account_name,
        image_pull_secrets=tuple(ref.name for ref in spec.image_pull_secrets or ()),
        volumes=dumped(spec.volumes),
        volume_mounts=dumped(spec.volume_mounts),
        init_containers=dumped(spec.init_containers),
        sidecars=dumped(spec.sidecars),
    )


_STRUCTURED = frozenset(
    {
        "labels",
        "annotations",
        "service_account_name",
        "image_pull_secrets",
        "volumes",
        "volume_mounts",
        "init_containers",
        "sidecars",
    }
)
