"""Wave 1: in-cluster Postgres (StatefulSet + headless Service) and Redis (Deployment + Service).

Modelled on the operator's `db` and `redis` templates (hybrid-data-plane.md §7.6), hardened: both run
as the images' own non-root uid 999 with a read-only root filesystem and emptyDirs where they write;
images are digest-pinned; Redis requires a generated password; and a NetworkPolicy per store admits
only this deployment's API server and queue pods (and, for Postgres, KEDA's operator when KEDA
scales on the pending-runs query).
"""

from __future__ import annotations

from typing import Any

from listener import naming
from listener.render import pods
from listener.render.context import (
    COMPONENT_API,
    COMPONENT_POSTGRES,
    COMPONENT_QUEUE,
    COMPONENT_REDIS,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_USER,
    REDIS_PORT,
    Context,
)
from listener.render.resources import (
    DEFAULT_DB_MAX_CONNECTIONS,
    DEFAULT_DB_STORAGE_GI,
    db_compute,
    redis_compute,
)
from listener.render.secrets import POSTGRES_PASSWORD_KEY, REDIS_PASSWORD_KEY

STORE_UID = 999
PG_DATA_VOLUME = "postgres-data"
PG_MOUNT = "/var/lib/postgresql/data"


def _store_pod_spec(ctx: Context, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    rs = ctx.spec.resources
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": [container],
        "enableServiceLinks": False,
        "securityContext": pods.pod_security_context(True, uid=STORE_UID),
        "volumes": volumes,
    }
    if rs.image_pull_secrets:
        # Private registries mirrors usually hold the store images too.
        spec["imagePullSecrets"] = [{"name": n} for n in rs.image_pull_secrets]
    return spec


def postgres_service(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(ctx.names.postgres, COMPONENT_POSTGRES),
        "spec": {
            # Headless: the StatefulSet's governing Service; one replica, so the name resolves to it.
            "clusterIP": "None",
            "ports": [
                {"name": "postgres", "port": POSTGRES_PORT, "protocol": "TCP", "targetPort": "postgres"}
            ],
            "selector": ctx.selector(COMPONENT_POSTGRES),
        },
    }


def postgres_statefulset(ctx: Context) -> dict[str, Any]:
    rs = ctx.spec.resources
    max_conn = rs.db_max_connections if rs.db_max_connections is not None else DEFAULT_DB_MAX_CONNECTIONS
    storage = rs.db_storage_gi if rs.db_storage_gi is not None else DEFAULT_DB_STORAGE_GI
    ready = ["pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER, "-d", POSTGRES_DB]
    container = {
        "name": "postgres",
        "image": ctx.options.postgres_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["postgres", "-c", f"max_connections={max_conn}"],
        "env": [
            {"name": "PGDATA", "value": f"{PG_MOUNT}/pgdata"},
            {"name": "POSTGRES_DB", "value": POSTGRES_DB},
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {"name": ctx.names.postgres_secret, "key": POSTGRES_PASSWORD_KEY}
                },
            },
            {"name": "POSTGRES_USER", "value": POSTGRES_USER},
        ],
        "ports": [{"containerPort": POSTGRES_PORT, "name": "postgres", "protocol": "TCP"}],
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {
            "exec": {"command": ready},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
            "initialDelaySeconds": 30,
        },
        "resources": db_compute(rs).to_k8s(),
        "securityContext": pods.container_security_context(),
        "volumeMounts": [
            {"mountPath": PG_MOUNT, "name": PG_DATA_VOLUME},
            {"mountPath": "/tmp", "name": pods.TMP_VOLUME},  # noqa: S108 -- a private emptyDir,
            {"mountPath": "/var/run/postgresql", "name": "run"},
        ],
    }
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{storage}Gi"}},
    }
    if ctx.options.storage_class_name:
        pvc_spec["storageClassName"] = ctx.options.storage_class_name
    # Size-limited: /dev/shm is small on most runtimes, and these hold only sockets and temp files.
    volumes = [pods.empty_dir("run", "16Mi"), pods.empty_dir(pods.TMP_VOLUME, "1Gi")]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": ctx.metadata(ctx.names.postgres, COMPONENT_POSTGRES),
        "spec": {
            # Keep the data if someone scales to zero; drop it only with the StatefulSet itself, which
            # the prune layer does only for deployments the control plane says are deleted.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "replicas": 1,
            "selector": {"matchLabels": ctx.selector(COMPONENT_POSTGRES)},
            "serviceName": ctx.names.postgres,
            "template": {
                "metadata": {"labels": ctx.stable_labels(COMPONENT_POSTGRES)},
                "spec": _store_pod_spec(ctx, container, volumes),
            },
            "updateStrategy": {"type": "RollingUpdate"},
            "volumeClaimTemplates": [
                {
                    # volumeClaimTemplates are immutable: no revision id here, or every revision would
                    # need the StatefulSet recreated.
                    "metadata": {"name": PG_DATA_VOLUME, "labels": ctx.stable_labels(COMPONENT_POSTGRES)},
                    "spec": pvc_spec,
                }
            ],
        },
    }


def redis_deployment(ctx: Context) -> dict[str, Any]:
    password = {"secretKeyRef": {"name": ctx.names.redis_secret, "key": REDIS_PASSWORD_KEY}}
    container = {
        "name": "redis",
        "image": ctx.options.redis_image,
        "imagePullPolicy": "IfNotPresent",
        # A broker for in-flight runs only: no snapshots to a volume that would not survive anyway.
        # `$(REDIS_PASSWORD)` is expanded by the kubelet from the env below, never written in the spec.
        "args": ["redis-server", "--save", "", "--appendonly", "no", "--requirepass", "$(REDIS_PASSWORD)"],
        # redis-cli reads REDISCLI_AUTH, so the liveness probe authenticates without the password
        # appearing on a command line.
        "env": [
            {"name": "REDISCLI_AUTH", "valueFrom": password},
            {"name": "REDIS_PASSWORD", "valueFrom": password},
        ],
        "ports": [{"containerPort": REDIS_PORT, "name": "redis", "protocol": "TCP"}],
        "livenessProbe": {
            "exec": {"command": ["redis-cli", "ping"]},
            "periodSeconds": 30,
            "timeoutSeconds": 10,
        },
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "timeoutSeconds": 5},
        "resources": redis_compute(ctx.spec.resources).to_k8s(),
        "securityContext": pods.container_security_context(),
        "volumeMounts": [{"mountPath": "/data", "name": "data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(ctx.names.redis, COMPONENT_REDIS),
        "spec": {
            "progressDeadlineSeconds": ctx.options.progress_deadline_seconds,
            "replicas": 1,
            "revisionHistoryLimit": ctx.options.revision_history_limit,
            "selector": {"matchLabels": ctx.selector(COMPONENT_REDIS)},
            # Two Redis pods would split the queue between them: replace, don't surge.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": ctx.stable_labels(COMPONENT_REDIS)},
                "spec": _store_pod_spec(ctx, container, [pods.empty_dir("data", "1Gi")]),
            },
        },
    }


def redis_service(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(ctx.names.redis, COMPONENT_REDIS),
        "spec": {
            "ports": [{"name": "redis", "port": REDIS_PORT, "protocol": "TCP", "targetPort": "redis"}],
            "selector": ctx.selector(COMPONENT_REDIS),
            "type": "ClusterIP",
        },
    }


def _clients(ctx: Context) -> dict[str, Any]:
    """This deployment's API server and queue pods, by their selector labels (never the revision)."""
    selector = ctx.selector(COMPONENT_API)
    match = {k: v for k, v in selector.items() if k != naming.LABEL_COMPONENT}
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": naming.LABEL_COMPONENT, "operator": "In", "values": [COMPONENT_API, COMPONENT_QUEUE]}
            ],
            "matchLabels": match,
        }
    }


def network_policy(ctx: Context, name: str, component: str, port: int) -> dict[str, Any]:
    peers = [_clients(ctx)]
    if component == COMPONENT_POSTGRES and ctx.options.autoscaler == "keda":
        # KEDA's operator runs the pending-runs query against this database (scaling.py).
        peers.append(
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": ctx.options.keda_namespace}
                }
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": ctx.metadata(name, component),
        "spec": {
            "ingress": [{"from": peers, "ports": [{"port": port, "protocol": "TCP"}]}],
            "podSelector": {"matchLabels": ctx.selector(component)},
            "policyTypes": ["Ingress"],
        },
    }


def render_stores(ctx: Context) -> list[dict[str, Any]]:
    if not ctx.in_cluster_stores:
        return []
    # The policies come first: the stores are never reachable from the rest of the namespace.
    return [
        network_policy(ctx, ctx.names.postgres, COMPONENT_POSTGRES, POSTGRES_PORT),
        network_policy(ctx, ctx.names.redis, COMPONENT_REDIS, REDIS_PORT),
        postgres_statefulset(ctx),
        postgres_service(ctx),
        redis_deployment(ctx),
        redis_service(ctx),
    ]
