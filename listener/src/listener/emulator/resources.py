"""Pure functions of the emulator: resource_spec defaults, PATCH merging, revision rules. Plain dicts in and
out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "REVISION_FIELDS",
    "immutable_changes",
    "materialize_resource_spec",
    "merge_non_null",
    "patch_creates_revision",
]

# Emulator defaults for an external image without a resource_spec. The real service's numbers are not
# published;
# these follow the documented rules (limits 2x requests, Redis memory limit = request, queue defaults to API
# values).
_DEFAULTS: dict[str, Any] = {
    "min_scale": 1,
    "max_scale": 1,
    "cpu": 1.0,
    "memory_mb": 1024,
    "redis_cpu": 0.5,
    "redis_memory_mb": 1024,
    "db_cpu": 1.0,
    "db_memory_mb": 1024,
    "db_storage_gi": 10,
    "db_max_connections": 100,
}


def materialize_resource_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored resource_spec: given values win, missing ones follow the documented defaults."""
    out: dict[str, Any] = {**_DEFAULTS, **{k: v for k, v in (spec or {}).items() if v is not None}}

    def default(key: str, value: Any) -> None:
        if out.get(key) is None:
            out[key] = value

    default("queue_min_scale", out["min_scale"])
    default("queue_max_scale", out["max_scale"])
    default("queue_cpu", out["cpu"])
    default("queue_memory_mb", out["memory_mb"])
    default("cpu_limit", min(16.0, round(out["cpu"] * 2, 1)))
    default("memory_limit_mb", out["memory_mb"] * 2)
    default("queue_cpu_limit", min(16.0, round(out["queue_cpu"] * 2, 1)))
    default("queue_memory_limit_mb", out["queue_memory_mb"] * 2)
    default("redis_cpu_limit", min(16.0, round(out["redis_cpu"] * 2, 1)))
    default("redis_memory_limit_mb", out["redis_memory_mb"])  # documented: the request, not 2x
    default("db_cpu_limit", round(out["db_cpu"] * 2, 1))
    default("db_memory_limit_mb", out["db_memory_mb"] * 2)
    return out


def merge_non_null(stored: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The service merges request nulls into the stored row rather than clearing (control-plane-api.md
    §9.1)."""
    return {**stored, **{k: v for k, v in patch.items() if v is not None}}


# source_config fields that cannot change after create (a change means delete + create).
_IMMUTABLE_SOURCE_CONFIG = ("listener_id", "listener_config", "deployment_type", "integration_id", "repo_url")


def immutable_changes(
    stored_source_config: Mapping[str, Any], patch_source_config: Mapping[str, Any]
) -> list[str]:
    """Names of immutable source_config fields that a PATCH tries to change (null means unchanged)."""
    changed = []
    for key in _IMMUTABLE_SOURCE_CONFIG:
        new = patch_source_config.get(key)
        if new is not None and new != stored_source_config.get(key):
            changed.append(key)
    return changed


REVISION_FIELDS = ("repo_ref", "langgraph_config_path", "image_uri", "source_tarball_path")


def patch_creates_revision(patch: Mapping[str, Any]) -> bool:
    """A non-null image_uri/repo_ref/langgraph_config_path/source_tarball_path, resource_spec or a non-empty
    secrets
    list makes a new revision; an empty secrets list means "unchanged" (control-plane-api.md §11.5)."""
    src_rev = patch.get("source_revision_config") or {}
    if any(src_rev.get(f) is not None for f in REVISION_FIELDS):
        return True
    if (patch.get("source_config") or {}).get("resource_spec") is not None:
        return True
    return bool(patch.get("secrets"))
