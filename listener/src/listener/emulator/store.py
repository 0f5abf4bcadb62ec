"""The emulator's state: listeners, deployments and revisions as plain JSON dicts, in memory and optionally
in SQLite.

Operations raise `ApiError(status, detail)` with the control plane's documented messages; the HTTP layer
(app.py)
only translates. A lock makes every operation atomic: the ASGI loop and a test thread may both touch the
store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from listener.emulator.resources import (
    immutable_changes,
    materialize_resource_spec,
    merge_non_null,
    patch_creates_revision,
)

__all__ = ["ApiError", "Settings", "Store"]

_TERMINAL = {"DEPLOYED", "CREATE_FAILED", "BUILD_FAILED", "DEPLOY_FAILED", "SKIPPED"}
_DATAPLANE_STATUSES = {"DEPLOYING", "DEPLOYED", "DEPLOY_FAILED"}


class ApiError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Settings:
    """Behaviour switches, changeable at run time (PATCH /_emulator/settings)."""

    listeners_allowed: bool = True
    """False: every listener verb answers 403 with the plan message (org without a self-hosted enterprise
    plan)."""
    deployments_enabled: bool = True
    """False: every /v2 call answers 403 `... not enabled ...`."""
    require_tenant: bool = False
    """True: a request without X-Tenant-Id answers 403 `... requires workspace specification` (org-scoped
    key)."""
    require_listener: bool = False
    """True: creating a deployment without source_config.listener_id answers 400 `... listener_id' is
    required`."""
    echo_listener_config: bool = True
    """False: responses drop source_config.listener_config, as the real service may (control-plane-api.md
    §9.1)."""
    reject_unknown_fields: bool = False
    """True: unknown request-body fields answer 422 (extra_forbidden) instead of being ignored like the
    service
    does; catches clients that misspell a field name."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = value


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


@dataclass
class Store:
    tenant_id: str
    db_path: Path | None = None
    settings: Settings = field(default_factory=Settings)
    listeners: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seq: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _db: sqlite3.Connection | None = None

    def __post_init__(self) -> None:
        if self.db_path is not None:
            self._db = sqlite3.connect(self.db_path, check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects (kind TEXT, id TEXT, body TEXT, PRIMARY KEY (kind, id))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.commit()
            tables = {"listener": self.listeners, "deployment": self.deployments, "revision": self.revisions}
            for kind, oid, body in self._db.execute("SELECT kind, id, body FROM objects"):
                tables[kind][oid] = json.loads(body)
            seqs = [r.get("_seq", 0) for t in tables.values() for r in t.values()]
            self._seq = max(seqs, default=0)

    # --- persistence ---

    def meta(self, key: str, default: Callable[[], str]) -> str:
        """A value persisted with the data (the API key and tenant of a --db emulator survive restarts)."""
        if self._db is None:
            return default()
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row:
            return str(row[0])
        value = default()
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        self._db.commit()
        return value

    def set_meta(self, key: str, value: str) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
            self._db.commit()

    @contextmanager
    def _tx(self) -> Iterator[list[tuple[str, str, dict[str, Any] | None]]]:
        """Collect (kind, id, record-or-None) writes and persist them in one SQLite transaction."""
        with self._lock:
            writes: list[tuple[str, str, dict[str, Any] | None]] = []
            yield writes
            if self._db is not None and writes:
                with self._db:
                    for kind, oid, rec in writes:
                        if rec is None:
                            self._db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, oid))
                        else:
                            self._db.execute(
                                "INSERT OR REPLACE INTO objects (kind, id, body) VALUES (?, ?, ?)",
                                (kind, oid, json.dumps(rec)),
                            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- listeners ---

    def _listeners_guard(self) -> None:
        if not self.settings.listeners_allowed:
            raise ApiError(
                403,
                f"Listeners cannot be created for LangSmith workspace ID '{self.tenant_id}'. "
                "Creating listeners is "
                "only allowed for LangSmith organizations with self-hosted enterprise plans.",
            )

    def _listener(self, listener_id: str) -> dict[str, Any]:
        rec = self.listeners.get(listener_id)
        if rec is None:
            raise ApiError(404, f"Listener ID {listener_id} not found.")
        return rec

    def list_listeners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_public(r) for r in sorted(self.listeners.values(), key=lambda r: r["_seq"])]

    def get_listener(self, listener_id: str) -> dict[str, Any]:
        with self._lock:
            self._listeners_guard()
            return _public(self._listener(listener_id))

    def create_listener(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as writes:
            self._listeners_guard()
            if any(r["compute_id"] == body["compute_id"] for r in self.listeners.values()):
                raise ApiError(
                    409,
                    f"Listener for LangSmith workspace ID '{self.tenant_id}' and compute ID "
                    f"'{body['compute_id']}' already exists.",
                )
            now = _now()
            rec = {
                "id": str(uuid.uuid4()),
                "compute_type": body["compute_type"],
                "compute_id": body["compute_id"],
                "compute_config": {
                    "k8s_namespaces": (body.get("compute_config") or {}).get("k8s_namespaces")
                },
                "version": body.get("version"),
                "created_at": now,
                "updated_at": now,
                "_seq": self._next_seq(),
            }
            self.listeners[rec["id"]] = rec
            writes.append(("listener", rec["id"], rec))
            return _public(rec)

    def patch_listener(self, listener_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as writes:
            self._listeners_guard()
            rec = self._listener(listener_id)
            if body.get("version") is not None:
                rec["version"] = body["version"]
            namespaces = (body.get("compute_config") or {}).get("k8s_namespaces")
            if namespaces is not None:
                rec["compute_config"] = {"k8s_namespaces": namespaces}
            rec["updated_at"] = _now()
            writes.append(("listener", listener_id, rec))
            return _public(rec)

    def delete_listener(self, listener_id: str) -> None:
        with self._tx() as writes:
            self._listeners_guard()
            self._listener(listener_id)
            del self.listeners[listener_id]
            writes.append(("listener", listener_id, None))

    # --- deployments ---

    def _deployment(self, deployment_id: str) -> dict[str, Any]:
        rec = self.deployments.get(deployment_id)
        if rec is None:
            raise ApiError(404, f"Deployment ID {deployment_id} not found.")
        return rec

    def _revision(self, deployment_id: str, revision_id: str) -> dict[str, Any]:
        self._deployment(deployment_id)
        rec = self.revisions.get(revision_id)
        if rec is None or rec["_deployment_id"] != deployment_id:
            raise ApiError(404, f"Revision ID {revision_id} not found.")
        return rec

    def view_deployment(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = _public(rec)
        if not self.settings.echo_listener_config:
            out["source_config"] = {k: v for k, v in out["source_config"].items() if k != "listener_config"}
        return out

    def list_deployments(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            ids = set(filters["deployment_ids"].split(",")) if filters.get("deployment_ids") else None
            out = []
            for rec in sorted(self.deployments.values(), key=lambda r: r["_seq"]):
                if filters.get("name_contains") and filters["name_contains"] not in rec["name"]:
                    continue
                if filters.get("status") and rec["status"] != filters["status"]:
                    continue
                if (
                    filters.get("deployment_type")
                    and rec["source_config"].get("deployment_type") != filters["deployment_type"]
                ):
                    continue
                if filters.get("image_version") and rec.get("image_version") != filters["image_version"]:
                    continue
                if ids is not None and rec["id"] not in ids:
                    continue
                out.append(self.view_deployment(rec))
            return out

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        with self._lock:
            return self.view_deployment(self._deployment(deployment_id))

    def _check_placement(self, source_config: dict[str, Any]) -> None:
        listener_id = source_config.get("listener_id")
        if listener_id is None:
            if self.settings.require_listener:
                raise ApiError(
                    400,
                    "'source_config.listener_id' is required: this workspace deploys through a listener. "
                    "Set source_config.listener_id and source_config.listener_config.k8s_namespace.",
                )
            return
        listener = self.listeners.get(listener_id)
        if listener is None:
            raise ApiError(400, f"Listener ID {listener_id} not found.")
        namespace = (source_config.get("listener_config") or {}).get("k8s_namespace")
        namespaces = listener["compute_config"].get("k8s_namespaces") or []
        if namespace is not None and namespace not in namespaces:
            raise ApiError(
                400,
                f"Namespace '{namespace}' is not one of the namespaces of listener {listener_id}: "
                f"{namespaces}.",
            )

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as writes:
            if body["source"] != "external_docker":
                raise ApiError(
                    400,
                    f"Deploying from source '{body['source']}' is not available on this control plane: "
                    "a self-hosted/hybrid control plane deploys external_docker images only.",
                )
            image_uri = body["source_revision_config"].get("image_uri")
            if not image_uri:
                raise ApiError(
                    400, "'source_revision_config.image_uri' is required for source 'external_docker'."
                )
            if not body["name"]:
                raise ApiError(400, "'name' must not be empty.")
            if any(d["name"] == body["name"] for d in self.deployments.values()):
                raise ApiError(400, f"Deployment with name '{body['name']}' already exists.")
            source_config = {k: v for k, v in body["source_config"].items() if v is not None}
            self._check_placement(source_config)
            source_config["resource_spec"] = materialize_resource_spec(source_config.get("resource_spec"))
            now = _now()
            dep = {
                "id": str(uuid.uuid4()),
                "tenant_id": self.tenant_id,
                "name": body["name"],
                "source": body["source"],
                "source_config": source_config,
                "source_revision_config": {},
                "secrets": body.get("secrets") or [],
                "secret_references": body.get("secret_references"),
                "created_at": now,
                "updated_at": now,
                "status": "AWAITING_DATABASE",
                "latest_revision_id": None,
                "active_revision_id": None,
                "image_version": None,
                "_seq": self._next_seq(),
            }
            self.deployments[dep["id"]] = dep
            self._new_revision(dep, {**body["source_revision_config"]}, writes)
            writes.append(("deployment", dep["id"], dep))
            return self.view_deployment(dep)

    def _new_revision(
        self, dep: dict[str, Any], source_revision_config: dict[str, Any], writes: list[Any]
    ) -> dict[str, Any]:
        """A new latest revision. Older revisions still in progress are superseded (SKIPPED)."""
        now = _now()
        for old in self.revisions.values():
            if old["_deployment_id"] == dep["id"] and old["status"] not in _TERMINAL:
                old["status"], old["updated_at"] = "SKIPPED", now
                writes.append(("revision", old["id"], old))
        src = {
            "repo_ref": None,
            "langgraph_config_path": None,
            "image_uri": None,
            "source_tarball_path": None,
        }
        src.update({k: v for k, v in source_revision_config.items() if k in src})
        src["repo_commit_sha"] = None
        rev = {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            # External images have no build step: the revision waits for the data plane to deploy it.
            "status": "AWAITING_DEPLOY",
            "source": dep["source"],
            "source_revision_config": src,
            "_deployment_id": dep["id"],
            "_seq": self._next_seq(),
            "_reason": None,
            # What the revision runs, so that a redeploy of it restores exactly this.
            "_snapshot": {
                "secrets": dep["secrets"],
                "secret_references": dep.get("secret_references"),
                "resource_spec": dep["source_config"].get("resource_spec"),
            },
        }
        self.revisions[rev["id"]] = rev
        dep["source_revision_config"] = dict(src)
        dep["latest_revision_id"] = rev["id"]
        dep["updated_at"] = now
        writes.append(("revision", rev["id"], rev))
        return rev

    def patch_deployment(self, deployment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as writes:
            dep = self._deployment(deployment_id)
            if body.get("revision_source") is not None and body["revision_source"] != dep["source"]:
                raise ApiError(
                    400,
                    f"'revision_source' {body['revision_source']!r} is not valid for a deployment "
                    "with source "
                    f"{dep['source']!r}.",
                )
            patch_sc = {k: v for k, v in (body.get("source_config") or {}).items() if v is not None}
            changed = immutable_changes(dep["source_config"], patch_sc)
            if changed:
                raise ApiError(
                    400,
                    "These source_config fields cannot be changed after create (delete and re-create the "
                    f"deployment instead): {', '.join(changed)}.",
                )
            new_revision = patch_creates_revision(body)
            source_config = merge_non_null(dep["source_config"], patch_sc)
            if patch_sc.get("resource_spec") is not None:
                # A PATCHed resource_spec replaces the whole spec (then gets defaults), it is not merged.
                source_config["resource_spec"] = materialize_resource_spec(patch_sc["resource_spec"])
            dep["source_config"] = source_config
            if body.get("secrets"):
                dep["secrets"] = body["secrets"]
            if body.get("secret_references") is not None:
                dep["secret_references"] = body["secret_references"]
            dep["updated_at"] = _now()
            if new_revision:
                src = merge_non_null(dep["source_revision_config"], body.get("source_revision_config") or {})
                self._new_revision(dep, src, writes)
            writes.append(("deployment", dep["id"], dep))
            return self.view_deployment(dep)

    def delete_deployment(self, deployment_id: str) -> None:
        with self._tx() as writes:
            self._deployment(deployment_id)
            self._delete(deployment_id, writes)

    def _delete(self, deployment_id: str, writes: list[Any]) -> None:
        del self.deployments[deployment_id]
        writes.append(("deployment", deployment_id, None))
        for rid in [r["id"] for r in self.revisions.values() if r["_deployment_id"] == deployment_id]:
            del self.revisions[rid]
            writes.append(("revision", rid, None))

    def delete_deployments(self, deployment_ids: list[str]) -> tuple[list[str], list[str]]:
        """Bulk delete: (deleted, not found)."""
        with self._tx() as writes:
            deleted, missing = [], []
            for did in dict.fromkeys(deployment_ids):
                if did in self.deployments:
                    self._delete(did, writes)
                    deleted.append(did)
                else:
                    missing.append(did)
            return deleted, missing

    def list_revisions(self, deployment_id: str, statuses: set[str] | None) -> list[dict[str, Any]]:
        with self._lock:
            self._deployment(deployment_id)
            revs = [
                r
                for r in self.revisions.values()
                if r["_deployment_id"] == deployment_id and (statuses is None or r["status"] in statuses)
            ]
            return [_public(r) for r in sorted(revs, key=lambda r: r["_seq"], reverse=True)]

    def get_revision(self, deployment_id: str, revision_id: str) -> dict[str, Any]:
        with self._lock:
            return _public(self._revision(deployment_id, revision_id))

    def redeploy(self, deployment_id: str, revision_id: str) -> dict[str, Any]:
        """A new latest revision running exactly what `revision_id` ran (image, secrets, resource_spec)."""
        with self._tx() as writes:
            dep = self._deployment(deployment_id)
            old = self._revision(deployment_id, revision_id)
            snap = old["_snapshot"]
            dep["secrets"] = snap["secrets"]
            dep["secret_references"] = snap["secret_references"]
            if snap["resource_spec"] is not None:
                dep["source_config"]["resource_spec"] = snap["resource_spec"]
            self._new_revision(dep, old["source_revision_config"], writes)
            writes.append(("deployment", dep["id"], dep))
            return self.view_deployment(dep)

    # --- test seam (emulator only) ---

    def corrupt_deployment(self, deployment_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) to the stored record *without* validating it, so that
        the lists and GETs serve a record the real service might send and a client cannot read (a
        sidecar without an image, a label that is not a string, an `id` that is not a UUID). The
        record stays stored under its original id; `_`-prefixed (internal) keys cannot be patched."""
        if any(key.startswith("_") for key in patch):
            raise ApiError(422, "internal ('_'-prefixed) keys cannot be patched")
        with self._tx() as writes:
            rec = self._deployment(deployment_id)
            _merge_patch(rec, patch)
            writes.append(("deployment", deployment_id, rec))
            return _public(rec)

    # --- data-plane status channel (emulator only) ---

    def report_status(
        self, deployment_id: str, revision_id: str, status: str, reason: str | None
    ) -> dict[str, Any]:
        """Apply a data plane's report. Same status again is a no-op (reports are retried); a terminal
        revision
        cannot move elsewhere (409); DEPLOYED makes the revision active and the deployment READY."""
        if status not in _DATAPLANE_STATUSES:
            raise ApiError(400, f"status must be one of {sorted(_DATAPLANE_STATUSES)}, got {status!r}")
        with self._tx() as writes:
            dep = self._deployment(deployment_id)
            rev = self._revision(deployment_id, revision_id)
            if rev["status"] != status:
                if rev["status"] in _TERMINAL:
                    raise ApiError(
                        409,
                        f"Revision ID {revision_id} is {rev['status']}, which is final; "
                        f"cannot report {status}.",
                    )
                rev["status"], rev["_reason"], rev["updated_at"] = status, reason, _now()
                writes.append(("revision", revision_id, rev))
                if status == "DEPLOYED":
                    dep["active_revision_id"] = revision_id
                    dep["status"] = "READY"
                    dep["updated_at"] = rev["updated_at"]
                    writes.append(("deployment", deployment_id, dep))
            return {
                "deployment_id": deployment_id,
                "revision_id": revision_id,
                "status": rev["status"],
                "reason": rev["_reason"],
            }
