"""Wave 0: the deployment's env Secret and the in-cluster stores' password Secrets.

The env Secret is immutable and named after a hash of its contents, so each revision (and each change
of its values) gets its own: a failed revision can never change what running pods read, and a value
removed in the control plane is gone from the next one. It is written with `data`, so what is in
the cluster is exactly what was rendered. The password Secrets are create-only (never applied): a
generated password must never be replaced by another writer's.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from listener import naming
from listener.render.context import (
    COMPONENT_CONFIG,
    COMPONENT_MANAGED_STORES,
    COMPONENT_POSTGRES,
    COMPONENT_REDIS,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_USER,
    REDIS_PORT,
    Context,
    RenderError,
)

POSTGRES_PASSWORD_KEY = "POSTGRES_PASSWORD"  # noqa: S105 -- a key name, not a password
REDIS_PASSWORD_KEY = "REDIS_PASSWORD"  # noqa: S105 -- a key name, not a password
STORE_URI_VARS = ("POSTGRES_URI", "DATABASE_URI", "REDIS_URI")
MANAGED_STORE_VARS = ("POSTGRES_URI_CUSTOM", "REDIS_URI_CUSTOM", "REDIS_KEY_PREFIX")
"""`listener.managed.ENV_KEYS`: read from the credentials Secret, never from the env Secret."""
ENV_HASH_LEN = 10


def postgres_password(ctx: Context) -> str:
    if ctx.spec.postgres_password is None:
        raise RenderError(
            f"deployment {ctx.spec.deployment_name!r} ({ctx.spec.deployment_id}) uses in-cluster stores but "
            "has no postgres_password: generate one once, store it, and pass it in on every render"
        )
    return ctx.spec.postgres_password.value


def redis_password(ctx: Context) -> str:
    if ctx.spec.redis_password is None:
        raise RenderError(
            f"deployment {ctx.spec.deployment_name!r} ({ctx.spec.deployment_id}) uses in-cluster stores but "
            "has no redis_password: generate one once, store it, and pass it in on every render"
        )
    return ctx.spec.redis_password.value


def env_data(ctx: Context) -> dict[str, str]:
    """User secrets, then platform variables, then store URIs: later groups win, so a user secret can
    never redirect the server to another database or drop the platform's settings."""
    data: dict[str, str] = {}
    data.update((k, v.value) for k, v in ctx.spec.secrets)
    data.update(ctx.spec.platform_env)
    data.update((k, v.value) for k, v in ctx.spec.platform_secrets)
    if ctx.in_cluster_stores:
        password = quote(postgres_password(ctx), safe="")
        pg = (
            f"postgres://{POSTGRES_USER}:{password}@{ctx.service_host(ctx.names.postgres)}:{POSTGRES_PORT}"
            f"/{POSTGRES_DB}?sslmode=disable"
        )
        data["POSTGRES_URI"] = pg
        data["DATABASE_URI"] = pg
        redis = quote(redis_password(ctx), safe="")
        data["REDIS_URI"] = f"redis://:{redis}@{ctx.service_host(ctx.names.redis)}:{REDIS_PORT}"
    else:
        # These come from the external or credentials Secret via secretKeyRef; a stale copy here would
        # be misleading, and a user secret must not point the server at another database.
        for var in (*STORE_URI_VARS, *(MANAGED_STORE_VARS if ctx.managed_stores else ())):
            data.pop(var, None)
    return dict(sorted(data.items()))


def config_hash(ctx: Context) -> str:
    """Goes on the pod templates so a changed value rolls the pods even within one revision."""
    return naming.id_hash(naming.canonical_json(env_data(ctx)), 64)


def env_secret_name(ctx: Context) -> str:
    """`<base>-env-<10 hex of the contents' hash>`: one immutable Secret per distinct environment."""
    return f"{ctx.names.env_secret}-{config_hash(ctx)[:ENV_HASH_LEN]}"


def encoded(values: dict[str, str]) -> dict[str, str]:
    # surrogateescape: a value read back from a live Secret that held non-UTF-8 bytes (decoded the
    # same way) is rendered as exactly those bytes; any other text encodes as plain UTF-8.
    return {
        k: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode() for k, v in sorted(values.items())
    }


def env_secret(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ctx.metadata(env_secret_name(ctx), COMPONENT_CONFIG),
        "type": "Opaque",
        "immutable": True,
        "data": encoded(env_data(ctx)),
    }


def _credentials(ctx: Context, name: str, component: str, key: str, value: str) -> dict[str, Any]:
    meta = ctx.metadata(name, component)
    meta["annotations"] = {**meta["annotations"], naming.ANNOTATION_CREATE_ONLY: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": encoded({key: value}),
    }


def postgres_secret(ctx: Context) -> dict[str, Any]:
    return _credentials(
        ctx, ctx.names.postgres_secret, COMPONENT_POSTGRES, POSTGRES_PASSWORD_KEY, postgres_password(ctx)
    )


def redis_secret(ctx: Context) -> dict[str, Any]:
    return _credentials(ctx, ctx.names.redis_secret, COMPONENT_REDIS, REDIS_PASSWORD_KEY, redis_password(ctx))


def store_secret(ctx: Context) -> dict[str, Any]:
    """Managed stores: the credentials Secret, create-only like the in-cluster passwords (rotation
    rewrites it in place; re-applying a stale render would undo a rotation). Stable labels: it
    outlives revisions."""
    managed = ctx.spec.managed_stores
    if managed is None:
        raise RenderError(
            f"deployment {ctx.spec.deployment_name!r} ({ctx.spec.deployment_id}) uses managed stores but has "
            "no credentials: provision its database first and pass them in on every render"
        )
    if managed.secret_name != ctx.names.store_secret:
        raise RenderError(f"the credentials Secret must be named {ctx.names.store_secret!r}")
    meta = ctx.metadata(managed.secret_name, COMPONENT_MANAGED_STORES)
    meta["labels"] = ctx.stable_labels(COMPONENT_MANAGED_STORES)
    meta["annotations"] = {**meta["annotations"], naming.ANNOTATION_CREATE_ONLY: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": encoded({k: v.value for k, v in managed.data}),
    }


def render_secrets(ctx: Context) -> list[dict[str, Any]]:
    # Credentials first: if another writer created them meanwhile, the rollout stops before an env
    # Secret with the wrong password is written.
    objs = [postgres_secret(ctx), redis_secret(ctx)] if ctx.in_cluster_stores else []
    if ctx.managed_stores:
        objs.append(store_secret(ctx))
    return [*objs, env_secret(ctx)]
