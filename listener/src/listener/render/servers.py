"""Wave 2: the API server and queue Deployments and the API Service."""

from __future__ import annotations

from typing import Any

from listener import naming
from listener.render import pods
from listener.render.context import (
    API_PORT,
    COMPONENT_API,
    COMPONENT_QUEUE,
    MANAGED_CA_DIR,
    MANAGED_CA_KEY,
    Context,
)
from listener.render.resources import Compute, Scale, api_compute, api_scale, queue_compute, queue_scale
from listener.render.secrets import MANAGED_STORE_VARS, STORE_URI_VARS, config_hash, env_secret_name

API_PORT_NAME = "api-server"
QUEUE_PORT_NAME = "queue"
AUTOMATIC_ENV = ("PORT", "N_JOBS_PER_WORKER")
STORE_CA_VOLUME = "ls-store-ca"


def has_store_ca(ctx: Context) -> bool:
    """Managed stores whose PostgreSQL is verified against a CA bundle the pods get as a file."""
    managed = ctx.spec.managed_stores
    return ctx.managed_stores and managed is not None and any(k == MANAGED_CA_KEY for k, _ in managed.data)


def is_autoscaled(ctx: Context, scale: Scale) -> bool:
    return ctx.options.autoscaler == "keda" or scale.autoscaled


def _env(ctx: Context, jobs_per_worker: int) -> list[dict[str, Any]]:
    ours: list[dict[str, Any]] = [
        {"name": "N_JOBS_PER_WORKER", "value": str(jobs_per_worker)},
        {"name": "PORT", "value": str(API_PORT)},
    ]
    ext = ctx.spec.external_stores
    if not ctx.in_cluster_stores and ext is not None:
        keys = {"POSTGRES_URI": ext.postgres_uri_key, "DATABASE_URI": ext.postgres_uri_key}
        keys["REDIS_URI"] = ext.redis_uri_key
        ours += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": ext.secret_name, "key": keys[var]}}}
            for var in STORE_URI_VARS
        ]
    if ctx.managed_stores:
        # Read at pod start from the credentials Secret: rotation rewrites it and restarts the pods.
        ours += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": ctx.names.store_secret, "key": var}}}
            for var in MANAGED_STORE_VARS
        ]
    reserved = {e["name"] for e in ours}
    # Duplicate env names are resolved by the kubelet with a warning; dedupe so the winner is explicit.
    refs = {r.name: r for r in ctx.spec.secret_references if r.name not in reserved}
    user = [
        {"name": r.name, "valueFrom": {"secretKeyRef": {"name": r.secret_name, "key": r.secret_key}}}
        for r in refs.values()
    ]
    return sorted(ours + user, key=lambda e: e["name"])


def _pod_template(
    ctx: Context,
    *,
    component: str,
    container: dict[str, Any],
    with_init_containers: bool,
) -> dict[str, Any]:
    rs = ctx.spec.resources
    labels = ctx.labels(component)
    annotations = {
        **{k: v for k, v in rs.annotations if not k.startswith("langsmith-dataplane/")},
        naming.ANNOTATION_CONFIG_HASH: config_hash(ctx),
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": rs.service_account_name is not None,
        "containers": [container, *(dict(s) for s in rs.sidecars)],
        "enableServiceLinks": False,
        "securityContext": pods.pod_security_context(ctx.options.run_as_non_root),
        "terminationGracePeriodSeconds": 60,
        "topologySpreadConstraints": pods.zone_spread(ctx.selector(component)),
        "volumes": [pods.empty_dir(pods.TMP_VOLUME, "1Gi"), *(dict(v) for v in rs.volumes)],
    }
    if has_store_ca(ctx):
        spec["volumes"].insert(
            1,
            {
                "name": STORE_CA_VOLUME,
                "secret": {
                    "secretName": ctx.names.store_secret,
                    "items": [{"key": MANAGED_CA_KEY, "path": MANAGED_CA_KEY}],
                },
            },
        )
    if rs.service_account_name is not None:
        spec["serviceAccountName"] = rs.service_account_name
    if rs.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in rs.image_pull_secrets]
    if with_init_containers and rs.init_containers:
        spec["initContainers"] = [dict(c) for c in rs.init_containers]
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": dict(sorted(spec.items()))}


def _container(
    ctx: Context,
    *,
    name: str,
    port_name: str,
    compute: Compute,
    jobs_per_worker: int,
    command: tuple[str, ...] | None,
    startup_failures: int,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": ctx.spec.image, "imagePullPolicy": "IfNotPresent"}
    if command is not None:
        c["command"] = list(command)
    c.update(
        env=_env(ctx, jobs_per_worker),
        envFrom=[{"secretRef": {"name": env_secret_name(ctx)}}],
        ports=[{"containerPort": API_PORT, "name": port_name, "protocol": "TCP"}],
        # Startup covers migrations on first boot; after that readiness gates traffic and liveness
        # restarts a wedged server (thresholds from the operator's template: 15 s / 5 s / 6).
        startupProbe=pods.http_probe("/ok", port_name, period=5, timeout=5, failures=startup_failures),
        readinessProbe=pods.http_probe("/ok", port_name, period=15, timeout=5, failures=6),
        livenessProbe=pods.http_probe("/ok", port_name, period=15, timeout=5, failures=6),
        resources=compute.to_k8s(),
        securityContext=pods.container_security_context(),
        volumeMounts=[
            {"mountPath": "/tmp", "name": pods.TMP_VOLUME},  # noqa: S108 -- a private emptyDir,
            *(dict(m) for m in ctx.spec.resources.volume_mounts),
        ],
    )
    if has_store_ca(ctx):
        c["volumeMounts"].insert(1, {"mountPath": MANAGED_CA_DIR, "name": STORE_CA_VOLUME, "readOnly": True})
    return c


def _deployment(
    ctx: Context, *, name: str, component: str, scale: Scale, template: dict[str, Any]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "progressDeadlineSeconds": ctx.options.progress_deadline_seconds,
        "revisionHistoryLimit": ctx.options.revision_history_limit,
        "selector": {"matchLabels": ctx.selector(component)},
        # The previous revision keeps serving until a new pod is Ready.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": template,
    }
    if not is_autoscaled(ctx, scale):
        # With an autoscaler the field is left out entirely: server-side apply would otherwise reset
        # the autoscaler's choice on every sync.
        spec["replicas"] = scale.min or 1
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(name, component),
        "spec": dict(sorted(spec.items())),
    }


def api_jobs_per_worker(ctx: Context) -> int:
    """Jobs run in the API server only when there is no separate queue (langgraph-cloud chart rule)."""
    return 0 if ctx.options.queue_enabled else ctx.options.jobs_per_worker


def api_deployment(ctx: Context) -> dict[str, Any]:
    container = _container(
        ctx,
        name=API_PORT_NAME,
        port_name=API_PORT_NAME,
        compute=api_compute(ctx.spec.resources),
        jobs_per_worker=api_jobs_per_worker(ctx),
        command=None,
        startup_failures=60,
    )
    template = _pod_template(ctx, component=COMPONENT_API, container=container, with_init_containers=True)
    return _deployment(
        ctx,
        name=ctx.names.api,
        component=COMPONENT_API,
        scale=api_scale(ctx.spec.resources),
        template=template,
    )


def queue_deployment(ctx: Context) -> dict[str, Any]:
    container = _container(
        ctx,
        name=QUEUE_PORT_NAME,
        port_name=QUEUE_PORT_NAME,
        compute=queue_compute(ctx.spec.resources),
        jobs_per_worker=ctx.options.jobs_per_worker,
        command=ctx.options.queue_command,
        startup_failures=60,
    )
    template = _pod_template(ctx, component=COMPONENT_QUEUE, container=container, with_init_containers=True)
    return _deployment(
        ctx,
        name=ctx.names.queue,
        component=COMPONENT_QUEUE,
        scale=queue_scale(ctx.spec.resources),
        template=template,
    )


def api_service(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(ctx.names.api, COMPONENT_API),
        "spec": {
            "ports": [
                {"name": API_PORT_NAME, "port": API_PORT, "protocol": "TCP", "targetPort": API_PORT_NAME}
            ],
            "selector": ctx.selector(COMPONENT_API),
            "type": "ClusterIP",
        },
    }


def render_servers(ctx: Context) -> list[dict[str, Any]]:
    objs = [api_deployment(ctx)]
    if ctx.options.queue_enabled:
        objs.append(queue_deployment(ctx))
    objs.append(api_service(ctx))
    return objs
