"""Wave 0: the deployment's env Secret and the in-cluster Postgres password Secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from listener import naming
from listener.render.context import (
    COMPONENT_CONFIG,
    COMPONENT_POSTGRES,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_USER,
    REDIS_PORT,
    Context,
    RenderError,
)

POSTGRES_PASSWORD_KEY = "POSTGRES_PASSWORD"  # noqa: S105 -- a key name, not a password
STORE_URI_VARS = ("POSTGRES_URI", "DATABASE_URI", "REDIS_URI")


def postgres_password(ctx: Context) -> str:
    if ctx.spec.postgres_password is None:
        raise RenderError(
            f"deployment {ctx.spec.deployment_name!r} ({ctx.spec.deployment_id}) uses in-cluster stores but "
            "has no postgres_password: generate one once, store it, and pass it in on every render"
        )
    return ctx.spec.postgres_password.value


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
        data["REDIS_URI"] = f"redis://{ctx.service_host(ctx.names.redis)}:{REDIS_PORT}"
    else:
        # These come from the external Secret via secretKeyRef; a stale copy here would be misleading.
        for var in STORE_URI_VARS:
            data.pop(var, None)
    return dict(sorted(data.items()))


def config_hash(ctx: Context) -> str:
    """Goes on the pod templates so a changed value rolls the pods even within one revision."""
    return naming.id_hash(naming.canonical_json(env_data(ctx)), 64)


def env_secret(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ctx.metadata(ctx.names.env_secret, COMPONENT_CONFIG),
        "type": "Opaque",
        "stringData": env_data(ctx),
    }


def postgres_secret(ctx: Context) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ctx.metadata(ctx.names.postgres_secret, COMPONENT_POSTGRES),
        "type": "Opaque",
        "stringData": {POSTGRES_PASSWORD_KEY: postgres_password(ctx)},
    }


def render_secrets(ctx: Context) -> list[dict[str, Any]]:
    objs = [postgres_secret(ctx)] if ctx.in_cluster_stores else []
    return [*objs, env_secret(ctx)]
