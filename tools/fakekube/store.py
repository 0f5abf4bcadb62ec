"""The object store: the write pipeline of the API server's generic registry, indexes and watch history.

Every write goes through the same steps a real API server takes (staging/src/k8s.io/apiserver/pkg/
endpoints/handlers and pkg/registry/generic/registry/store.go): decode and schema checks (unknown
fields dropped with a warning, or refused for server-side apply), defaulting, the kind's strategy
(status kept or reset, ``generation`` rules), validation (422), admission (namespace lifecycle,
ServiceAccounts, LimitRanges, quotas, Pod Security), and only then the commit: a new global
``resourceVersion``, ``managedFields``, a watch event. A write that changes nothing is not a write.

Deletion follows the real rules too: finalizers and ``deletionTimestamp``, orphan/foreground
finalizers for the propagation policies, graceful pod deletion; the garbage collector and the other
controllers that finish the job live in ``controller.py`` and run asynchronously.

Stored bodies are immutable once committed: reads return them without copying (callers must not
mutate them) and their JSON encoding is cached, which keeps GETs and lists cheap. Thread-safe
behind one re-entrant lock.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from tools.fakekube import defaults, errors, schema, ssa, validation
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.jsonutil import clone
from tools.fakekube.kinds import NAMESPACE, Kind, KindRegistry
from tools.fakekube.selectors import FieldRequirement, Requirement, fields_match, labels_match

PatchType = Literal["merge", "strategic", "json"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
GR = tuple[str, str]  # (group, plural): objects of a kind live under their group-resource
Key = tuple[GR, str | None, str]
# (manager, operation, subresource): how the API server keys managedFields entries.
ManagerKey = tuple[str, str, str]
FieldValidation = Literal["Ignore", "Warn", "Strict"]

# Server-owned metadata: never part of a field set, never taken from a client body.
SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)
_ENCODER = msgspec.json.Encoder()


_NOW: tuple[int, str] = (0, "")


def now() -> str:
    """RFC 3339 at second precision, formatted once per second."""
    global _NOW
    second = int(time.time())
    if _NOW[0] != second:
        _NOW = (
            second,
            datetime.datetime.fromtimestamp(second, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    return _NOW[1]


def gr(kind: Kind) -> GR:
    return (kind.group, kind.plural)


@dataclass
class _Entry:
    fields: frozenset[ssa.Path]
    api_version: str
    time: str


_PATHS: dict[ssa.Path, ssa.Path] = {}
_SETS: dict[frozenset[ssa.Path], frozenset[ssa.Path]] = {}


def _intern(paths: Iterable[ssa.Path]) -> frozenset[ssa.Path]:
    """Share identical paths and field sets between objects: thousands of Deployments rendered by one
    program own the same set of fields, so memory grows with shapes, not with objects."""
    fs = frozenset(_PATHS.setdefault(p, p) for p in paths)
    if len(_SETS) > 100_000:
        _SETS.clear()
    return _SETS.setdefault(fs, fs)


class Stored:
    """One committed version of an object. ``body`` is never mutated after commit."""

    __slots__ = ("_flat", "_json", "_metadata_json", "body", "managed")

    def __init__(self, body: dict[str, Any], managed: dict[ManagerKey, _Entry]) -> None:
        self.body = body
        self.managed = managed
        self._json: bytes | None = None
        self._metadata_json: bytes | None = None
        self._flat: dict[ssa.Path, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        return self.body["metadata"]

    def render(self) -> dict[str, Any]:
        """The object as the API returns it (with managedFields); a new top-level dict."""
        if not self.managed:
            return self.body
        meta = dict(self.body["metadata"])
        meta["managedFields"] = [
            {
                "manager": mgr,
                "operation": op,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": ssa.fields_v1(e.fields),
                **({"subresource": sub} if sub else {}),
            }
            for (mgr, op, sub), e in self.managed.items()
        ]
        return {**self.body, "metadata": meta}

    def json(self) -> bytes:
        if self._json is None:
            self._json = _ENCODER.encode(self.render())
        return self._json

    def metadata_json(self) -> bytes:
        """This version as a `PartialObjectMetadata` list item (what a metadata-only list returns)."""
        if self._metadata_json is None:
            self._metadata_json = _ENCODER.encode(
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": self.render()["metadata"],
                }
            )
        return self._metadata_json

    def flat(self, kind: Kind) -> dict[ssa.Path, Any]:
        """The owned-field view of the main resource, flattened once per version."""
        if self._flat is None:
            self._flat = ssa.flatten(scope_view(kind, self.body, None))
        return self._flat


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    gr: GR
    namespace: str | None
    type: EventType
    stored: Stored
    # The object before the change, so a label-selector watch can turn "stopped matching" into DELETED.
    old: dict[str, Any] | None


Subscriber = Callable[[WatchEvent | None], None]
CommitHook = Callable[[Kind, dict[str, Any] | None, dict[str, Any] | None], None]


@dataclass
class WriteOptions:
    manager: str = "unknown"
    user: Any = None  # auth.UserInfo of the requester; None for the fake's own controllers
    dry_run: bool = False
    field_validation: FieldValidation = "Warn"
    internal: bool = False  # written by the fake's controllers: no schema checks, no admission
    subresource: str | None = None
    force: bool = False
    # Called before an apply (or a PUT) creates an object: patch.go's "create" authorization.
    authorize_create: Callable[[], None] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class WriteResult:
    stored: Stored
    created: bool = False
    deleted: bool = False  # for deletes: gone now (True) or pending finalizers/grace (False)


class Admission:
    """The admission chain hook; ``admission.py`` provides the real one."""

    def mutate(
        self,
        store: Store,  # noqa: ARG002 -- the interface; this default admits everything unchanged
        kind: Kind,  # noqa: ARG002
        obj: dict[str, Any],  # noqa: ARG002
        old: dict[str, Any] | None,  # noqa: ARG002
        opts: WriteOptions,  # noqa: ARG002
    ) -> None:
        return None

    def validate(
        self,
        store: Store,  # noqa: ARG002 -- the interface; this default admits everything
        kind: Kind,  # noqa: ARG002
        obj: dict[str, Any],  # noqa: ARG002
        old: dict[str, Any] | None,  # noqa: ARG002
        opts: WriteOptions,  # noqa: ARG002
    ) -> None:
        return None


def scope_view(kind: Kind, body: Mapping[str, Any], subresource: str | None) -> dict[str, Any]:
    """The part of an object a write to ``subresource`` may own/change, without server-owned fields."""
    if subresource == "status":
        return {"status": clone(body["status"])} if "status" in body else {}
    if subresource == "scale":
        spec = body.get("spec") or {}
        return {"spec": {"replicas": spec["replicas"]}} if "replicas" in spec else {}
    out = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
    if kind.status:
        out.pop("status", None)
    meta = {
        k: v
        for k, v in (body.get("metadata") or {}).items()
        if k not in (*SYSTEM_METADATA, "name", "namespace")
    }
    if meta:
        out["metadata"] = meta
    return clone(out)


class Store:
    def __init__(self, registry: KindRegistry, *, history: int = 10_000) -> None:
        self.registry = registry
        self.lock = threading.RLock()
        self._objects: dict[Key, Stored] = {}
        self._by_kind_ns: dict[tuple[GR, str | None], dict[str, Stored]] = {}
        self._by_uid: dict[str, Key] = {}
        self._by_owner: dict[str, set[Key]] = {}
        # (group/resource, namespace, label key, label value) -> names: equality selectors start here.
        self._by_label: dict[tuple[GR, str | None, str, str], set[str]] = {}
        self._rv = 0
        self._rbac_rev = 0
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._subscribers: list[Subscriber] = []
        self._names = itertools.count(1)
        self._ips = itertools.count(10)
        self._node_ports = itertools.count(30000)
        self.hooks: list[CommitHook] = []
        self.admission: Admission = Admission()
        # Called before a test reads the global resourceVersion: settles the automatic controllers,
        # so "nothing was written since" is deterministic even while they run after responses.
        self.read_hook: Callable[[], None] | None = None

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> int:
        if self.read_hook is not None:
            self.read_hook()
        with self.lock:
            return self._rv

    @property
    def current_rv(self) -> int:
        """The global resourceVersion without settling (for the controllers themselves)."""
        return self._rv

    def kind_of(self, group: str, plural: str) -> Kind | None:
        return self.registry.by_group_resource(group, plural)

    def stored(self, kind: Kind, namespace: str | None, name: str) -> Stored | None:
        return self._objects.get((gr(kind), namespace, name))

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored body (read-only!) or 404."""
        found = self._objects.get((gr(kind), namespace, name))
        if found is None:
            raise errors.not_found(kind, name)
        return found.body

    def find(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = self._objects.get((gr(kind), namespace, name))
        return None if found is None else found.body

    def rendered(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """A deep copy with managedFields: what a client reads over the API."""
        found = self._objects.get((gr(kind), namespace, name))
        if found is None:
            raise errors.not_found(kind, name)
        return msgspec.json.decode(found.json())

    def list_stored(
        self,
        kind: Kind,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
    ) -> tuple[list[Stored], int]:
        """Matching objects ordered by namespace/name, and the list's resourceVersion."""
        with self.lock:
            key = gr(kind)
            if not kind.namespaced:
                buckets = [self._by_kind_ns.get((key, None)) or {}]
            elif namespace is not None:
                buckets = [self._by_kind_ns.get((key, namespace)) or {}]
            else:
                buckets = [
                    objs
                    for (g, _), objs in sorted(
                        ((k, v) for k, v in self._by_kind_ns.items() if k[0] == key),
                        key=lambda kv: kv[0][1] or "",
                    )
                ]
            equal = [r for r in labels if r.op == "=" or (r.op == "in" and len(r.values) == 1)]
            out = []
            for objs in buckets:
                names: Iterable[str] = objs
                if equal and objs:
                    # The label index narrows the candidates; the full selector still decides below.
                    ns = next(iter(objs.values())).body["metadata"].get("namespace")
                    sets = [self._by_label.get((key, ns, r.key, r.values[0]), set()) for r in equal]
                    names = set.intersection(*sets) if len(sets) > 1 else sets[0]
                for name in sorted(names):
                    s = objs[name]
                    if labels and not labels_match(labels, s.body["metadata"].get("labels")):
                        continue
                    if fields and not fields_match(fields, s.body):
                        continue
                    out.append(s)
            return out, self._rv

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
    ) -> tuple[list[dict[str, Any]], int]:
        items, rv = self.list_stored(kind, namespace, labels, fields)
        return [s.body for s in items], rv

    def by_uid(self, uid: str) -> Stored | None:
        key = self._by_uid.get(uid)
        return None if key is None else self._objects.get(key)

    def dependents(self, owner_uid: str) -> list[tuple[Kind, Stored]]:
        out = []
        for key in sorted(self._by_owner.get(owner_uid, ()), key=lambda k: (k[0], k[1] or "", k[2])):
            s = self._objects.get(key)
            kind = self.kind_of(*key[0])
            if s is not None and kind is not None:
                out.append((kind, s))
        return out

    def owned_by(self, kind: Kind, namespace: str | None, owner_uid: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                s.body
                for k, s in self.dependents(owner_uid)
                if (k is kind or gr(k) == gr(kind))
                and (namespace is None or s.body["metadata"].get("namespace") == namespace)
            ]

    # ------------------------------------------------------------------ RBAC source (auth.RbacSource)

    def cluster_role_bindings(self) -> Iterable[Mapping[str, Any]]:
        return [
            s.body
            for s in (
                self._by_kind_ns.get((("rbac.authorization.k8s.io", "clusterrolebindings"), None)) or {}
            ).values()
        ]

    def role_bindings(self, namespace: str) -> Iterable[Mapping[str, Any]]:
        return [
            s.body
            for s in (
                self._by_kind_ns.get((("rbac.authorization.k8s.io", "rolebindings"), namespace)) or {}
            ).values()
        ]

    def cluster_role(self, name: str) -> Mapping[str, Any] | None:
        s = self._objects.get((("rbac.authorization.k8s.io", "clusterroles"), None, name))
        return None if s is None else s.body

    def role(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        s = self._objects.get((("rbac.authorization.k8s.io", "roles"), namespace, name))
        return None if s is None else s.body

    def rbac_revision(self) -> int:
        return self._rbac_rev

    # ------------------------------------------------------------------ writes

    def create(
        self, kind: Kind, namespace: str | None, body: Mapping[str, Any], opts: WriteOptions
    ) -> WriteResult:
        """POST."""
        new = clone(dict(body))
        self._decode(kind, new, opts, verb="create")
        self._check_identity(kind, namespace, new)
        with self.lock:
            meta = new["metadata"]
            rv = str(meta.get("resourceVersion") or "")
            rv_set = rv.isdigit() and int(rv) != 0  # etcd3 store: ObjectResourceVersion parses as uint
            if not meta.get("name") and meta.get("generateName"):
                suffix = hashlib.sha256(str(next(self._names)).encode()).hexdigest()[:5]
                # storage/names SimpleNameGenerator: the base is cut to 63 - 5 characters first.
                meta["name"] = str(meta["generateName"])[:58] + suffix
            name = meta.get("name") or ""
            self._prepare_create(kind, new, opts)
            self._validate(kind, new, None, opts)
            self.admission.validate(self, kind, new, None, opts)
            if not name:
                raise errors.invalid(
                    kind, "", [errors.field_required("metadata.name", "name or generateName is required")]
                )
            if rv_set and not opts.internal:
                # etcd3 store.Create: ErrResourceVersionSetOnCreate, returned as an internal error.
                raise errors.internal("resourceVersion should not be set on objects to be created")
            if (gr(kind), namespace, name) in self._objects:
                raise errors.already_exists(kind, name)
            managed: dict[ManagerKey, _Entry] = {}
            self._take_over(kind, managed, (opts.manager, "Update", ""), {}, new, None)
            return WriteResult(self._commit(kind, namespace, name, new, None, managed, opts), created=True)

    def replace(
        self, kind: Kind, namespace: str | None, name: str, body: Mapping[str, Any], opts: WriteOptions
    ) -> WriteResult:
        """PUT: a stale ``metadata.resourceVersion`` is a 409 Conflict; none means unconditional."""
        incoming = clone(dict(body))
        if not opts.internal:
            self._decode(kind, incoming, opts, verb="update")
        self._check_identity(kind, namespace, incoming, name=name, require_name=True)
        with self.lock:
            cur = self._require(kind, namespace, name, opts.subresource)
            _check_precondition(kind, name, incoming, cur.body)
            new = self._combine(kind, cur.body, incoming, opts.subresource)
            return self._update(kind, namespace, name, new, cur, opts)

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: PatchType,
        opts: WriteOptions,
    ) -> WriteResult:
        with self.lock:
            cur = self._require(kind, namespace, name, opts.subresource)
            if isinstance(patch, dict):
                _check_precondition(kind, name, patch, cur.body)
            base = cur.render()
            try:
                if patch_type == "json":
                    if not isinstance(patch, list):
                        raise errors.bad_request(
                            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                        )
                    patched = ssa.json_patch(base, patch)
                elif patch_type == "strategic":
                    if not isinstance(patch, dict):
                        raise errors.bad_request(
                            "json: cannot unmarshal array into Go value of type map[string]interface {}"
                        )
                    patched = ssa.strategic_merge_patch(base, patch)
                else:
                    patched = ssa.json_merge_patch(base, patch)
            except ssa.JsonPatchError as e:
                raise ApiStatusError(422, "", str(e)) from e
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch must result in an object")
            schema.normalize_nulls(kind, patched)
            found = schema.findings(kind, patched)
            if found:
                # A patched object that no longer decodes (e.g. metadata patched to a number): 422 "patch".
                bad = schema.patch_decode_error(found, patched)
                if bad is not None:
                    raise bad
                self._unknown_fields(found, patched, opts)
            if not isinstance(patched.get("metadata"), dict):
                patched["metadata"] = {}
            patched["metadata"].pop("managedFields", None)
            self._decode_values(kind, patched)
            defaults.apply(kind, patched)
            self._check_identity(kind, namespace, patched, name=name)
            new = self._combine(kind, cur.body, patched, opts.subresource)
            return self._update(kind, namespace, name, new, cur, opts)

    def apply(
        self, kind: Kind, namespace: str | None, name: str, body: Mapping[str, Any], opts: WriteOptions
    ) -> WriteResult:
        """Server-side apply (``application/apply-patch+yaml``)."""
        if not opts.manager:
            raise errors.ApiStatusError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        applied = clone(dict(body))
        if not isinstance(applied.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        if applied.get("apiVersion") != kind.api_version or applied.get("kind") != kind.kind:
            raise errors.bad_request(
                f"the API version in the data ({applied.get('apiVersion')}) does not match the expected API version "
                f"({kind.api_version})"
                if applied.get("apiVersion") != kind.api_version
                else f"the kind in the data ({applied.get('kind')}) does not match the expected kind ({kind.kind})"
            )
        applied.setdefault("metadata", {})
        if applied["metadata"].get("managedFields") is not None and not opts.internal:
            # fieldmanager structuredmerge.go Apply: an applied configuration never carries
            # managedFields (an object read back from the server and applied as is fails here).
            raise errors.bad_request("metadata.managedFields must be nil")
        applied["metadata"].pop("managedFields", None)
        if not opts.internal:
            schema.normalize_nulls(kind, applied)
            found = schema.findings(kind, applied, typed=False)
            refused = schema.apply_error(kind, namespace, name, applied, found) if found else None
            if refused is not None:
                raise refused
            dup = _duplicate_keys(applied)
            if dup:
                where = f"{namespace}/{name}" if namespace else f"/{name}"
                gvk = (
                    f"{kind.api_version}, Kind={kind.kind}"
                    if kind.group
                    else f"/{kind.version}, Kind={kind.kind}"
                )
                raise errors.internal(f"failed to create typed patch object ({where}; {gvk}): {dup}")
        self._check_identity(kind, namespace, applied, name=name)
        with self.lock:
            cur = self._objects.get((gr(kind), namespace, name))
            if cur is None:
                if opts.subresource:
                    raise errors.not_found(kind, name)
                if opts.authorize_create is not None:
                    opts.authorize_create()
                base: dict[str, Any] = {
                    "apiVersion": kind.api_version,
                    "kind": kind.kind,
                    "metadata": {"name": name},
                }
                if namespace is not None:
                    base["metadata"]["namespace"] = namespace
                managed: dict[ManagerKey, _Entry] = {}
            else:
                _check_precondition(kind, name, applied, cur.body)
                base = cur.body
                managed = dict(cur.managed)
            me: ManagerKey = (opts.manager, "Apply", opts.subresource or "")
            view = scope_view(kind, applied, opts.subresource)
            applied_flat = ssa.flatten(view)
            current_flat = (
                cur.flat(kind)
                if cur is not None and opts.subresource is None
                else ssa.flatten(scope_view(kind, base, opts.subresource))
            )
            others = {mk: e.fields for mk, e in managed.items() if mk != me}
            conflicts = ssa.find_conflicts(current_flat, applied_flat, others)
            if conflicts and not opts.force:
                raise _apply_conflict(kind, name, conflicts, managed)
            if conflicts:
                lost = {p for _, p in conflicts}
                for mk in others:
                    old = managed[mk]
                    managed[mk] = _Entry(_intern(old.fields - lost), old.api_version, old.time)
            new = ssa.merge(base, view)
            previous = managed[me].fields if me in managed else frozenset()
            still_owned = [p for mk, e in managed.items() if mk != me for p in e.fields]
            for path in ssa.prunable(previous, applied_flat, still_owned):
                ssa.remove_path(new, path)
            fields = _intern(applied_flat)
            if me not in managed or managed[me].fields != fields:
                managed[me] = _Entry(fields, kind.api_version, now())
            _drop_empty(managed)
            new.setdefault("metadata", {})
            if not opts.internal:
                self._decode_values(kind, new)
            defaults.apply(kind, new)
            if cur is None:
                new = self._finish_create_body(namespace, name, new)
                self._prepare_create(kind, new, opts)
                self._validate(kind, new, None, opts)
                self.admission.validate(self, kind, new, None, opts)
                return WriteResult(
                    self._commit(kind, namespace, name, new, None, managed, opts), created=True
                )
            return self._update(kind, namespace, name, new, cur, opts, managed=managed)

    @staticmethod
    def _finish_create_body(namespace: str | None, name: str, new: dict[str, Any]) -> dict[str, Any]:
        meta = new.setdefault("metadata", {})
        meta["name"] = name
        if namespace is not None:
            meta["namespace"] = namespace
        return new

    def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
        grace_period: int | None = None,
        opts: WriteOptions | None = None,
    ) -> WriteResult:
        """DELETE: immediate, or pending (``deletionTimestamp``) while finalizers or a grace period remain."""
        opts = opts or WriteOptions()
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        with self.lock:
            cur = self._require(kind, namespace, name)
            meta = cur.body["metadata"]
            if precondition_uid and precondition_uid != meta["uid"]:
                raise errors.conflict(
                    kind,
                    name,
                    f"Precondition failed: UID in precondition: {precondition_uid}, UID in object meta: {meta['uid']}",
                )
            if precondition_rv and precondition_rv != meta["resourceVersion"]:
                raise errors.conflict(
                    kind,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {precondition_rv}, "
                    f"ResourceVersion in object meta: {meta['resourceVersion']}",
                )
            finalizers = list(meta.get("finalizers") or [])
            if propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            graceful = (
                kind.kind == "Pod"
                and (cur.body.get("spec") or {}).get("nodeName")
                and (
                    grace_period
                    if grace_period is not None
                    else (cur.body.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                )
            )
            namespace_spec_finalizers = kind is NAMESPACE
            if meta.get("deletionTimestamp"):
                if finalizers != list(meta.get("finalizers") or []) and not opts.dry_run:
                    new = clone(cur.body)
                    new["metadata"]["finalizers"] = finalizers
                    stored = self._commit(
                        kind, namespace, name, new, cur, cur.managed, WriteOptions(internal=True)
                    )
                    return WriteResult(stored)
                return WriteResult(cur)
            if finalizers or graceful or namespace_spec_finalizers:
                new = clone(cur.body)
                nmeta = new["metadata"]
                if nmeta.get("generation"):
                    nmeta["generation"] += 1
                nmeta["deletionTimestamp"] = now()
                nmeta["deletionGracePeriodSeconds"] = int(graceful) if graceful else 0
                if finalizers:
                    nmeta["finalizers"] = finalizers
                if namespace_spec_finalizers:
                    new.setdefault("status", {})["phase"] = "Terminating"
                if opts.dry_run:
                    return WriteResult(Stored(new, cur.managed))
                stored = self._commit(
                    kind, namespace, name, new, cur, cur.managed, WriteOptions(internal=True), keep_meta=True
                )
                return WriteResult(stored)
            if opts.dry_run:
                return WriteResult(cur, deleted=True)
            return WriteResult(self._remove(kind, namespace, name, cur), deleted=True)

    def delete_collection(
        self,
        kind: Kind,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
        *,
        propagation: str | None = None,
        opts: WriteOptions | None = None,
    ) -> list[Stored]:
        with self.lock:
            items, _ = self.list_stored(kind, namespace, labels, fields)
            out = []
            for s in items:
                m = s.body["metadata"]
                if (gr(kind), m.get("namespace"), m["name"]) in self._objects:
                    out.append(
                        self.delete(
                            kind, m.get("namespace"), m["name"], propagation=propagation, opts=opts
                        ).stored
                    )
            return out

    def finalize(self, kind: Kind, namespace: str | None, name: str) -> None:
        """Remove an object whose deletion is complete (no finalizers left, grace period over)."""
        with self.lock:
            cur = self._objects.get((gr(kind), namespace, name))
            if cur is not None:
                self._remove(kind, namespace, name, cur)

    # ------------------------------------------------------------------ internals: pipeline steps

    def _decode(self, kind: Kind, obj: dict[str, Any], opts: WriteOptions, *, verb: str) -> None:
        """What the decoder does with a create/update body: types, unknown fields, quantities."""
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        for field_name, expected in (("apiVersion", kind.api_version), ("kind", kind.kind)):
            got = obj.get(field_name)
            if got and got != expected:
                what = "API version" if field_name == "apiVersion" else "kind"
                raise errors.bad_request(
                    f"the {what} in the data ({got}) does not match the expected {what} ({expected})"
                )
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        obj.setdefault("metadata", {})
        obj["metadata"].pop("managedFields", None)
        if opts.internal:
            defaults.apply(kind, obj)
            return
        schema.normalize_nulls(kind, obj)
        found = schema.findings(kind, obj)
        if found:
            bad = schema.decode_error(kind, found)
            if bad is not None:
                raise bad
            self._unknown_fields(found, obj, opts)
        self._decode_values(kind, obj)
        defaults.apply(kind, obj)
        del verb

    def _decode_values(self, kind: Kind, obj: dict[str, Any]) -> None:
        if kind.kind == "Secret" and not kind.group:
            _fold_string_data(obj)
        defaults.decode(kind, obj)

    @staticmethod
    def _unknown_fields(found: list[schema.Finding], obj: dict[str, Any], opts: WriteOptions) -> None:
        if opts.field_validation == "Strict":
            strict = schema.strict_error(found)
            if strict is not None:
                raise strict
        warnings = schema.prune_unknown(obj, found)
        if opts.field_validation == "Warn":
            opts.warnings.extend(warnings)

    def _check_identity(
        self,
        kind: Kind,
        namespace: str | None,
        body: dict[str, Any],
        name: str | None = None,
        *,
        require_name: bool = False,
    ) -> None:
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        body_ns = meta.get("namespace")
        if kind.namespaced:
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            # handlers/rest.go checkName (update, every patch type). An update must carry the name;
            # a patch or an apply keeps the current one when it sends none.
            given = meta.get("name") or ""
            if (given or require_name) and given != name:
                raise errors.bad_request(
                    f"the name of the object ({given}) does not match the name on the URL ({name})"
                )
            meta["name"] = name
        body["apiVersion"], body["kind"] = kind.api_version, kind.kind

    def _prepare_create(self, kind: Kind, new: dict[str, Any], opts: WriteOptions) -> None:
        """The strategies' PrepareForCreate, then mutating admission."""
        meta = new["metadata"]
        for k in SYSTEM_METADATA:
            meta.pop(k, None)
        if kind.status and not opts.internal:
            new.pop("status", None)
        initial = _INITIAL_STATUS.get(kind.kind) if not kind.is_custom else None
        if initial is not None and "status" not in new:
            new["status"] = initial(new)
        if kind.kind == "Service" and not kind.group:
            self._allocate_service(new)
        if kind.kind == "Namespace" and not kind.group:
            defaults.namespace(new)
        self.admission.mutate(self, kind, new, None, opts)

    def _allocate_service(self, svc: dict[str, Any]) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        ip = spec.get("clusterIP")
        if not ip:
            n = next(self._ips)
            ip = f"10.96.{n // 250}.{n % 250 + 1}"
            spec["clusterIP"] = ip
        spec.setdefault("clusterIPs", [ip])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for p in spec.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    p["nodePort"] = next(self._node_ports)

    def _validate(
        self, kind: Kind, new: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions
    ) -> None:
        if opts.internal and kind.kind != "Pod":
            return
        name = new["metadata"].get("name") or ""
        if opts.subresource == "status" and old is not None:
            errs = validation.validate_status(kind, new, old)
        else:
            errs = validation.validate(kind, new, old)
        if not opts.internal:
            # The schema's own constraints on the final object (required fields; for custom
            # resources also enum, pattern, bounds: apiextensions' schema validation).
            errs = (
                schema.field_errors(
                    [
                        f
                        for f in schema.findings(kind, new, numbers=False)  # the decoder checked them
                        if f.type in ("required", "enum", "other")
                    ]
                )
                + errs
            )
        if errs:
            raise errors.invalid(kind, name, errs)

    @staticmethod
    def _combine(
        kind: Kind, current: dict[str, Any], incoming: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """The new object for a PUT/patch: main writes keep status, status writes change only status."""
        if subresource == "status":
            new = clone(current)
            if "status" in incoming:
                new["status"] = clone(incoming["status"])
            else:
                new.pop("status", None)
            return new
        new = incoming
        if kind.status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = clone(current["status"])
        return new

    def _update(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        cur: Stored,
        opts: WriteOptions,
        *,
        managed: dict[ManagerKey, _Entry] | None = None,
    ) -> WriteResult:
        old = cur.body
        meta = new.setdefault("metadata", {})
        for k in SYSTEM_METADATA:
            meta.pop(k, None)
        for k in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
        if kind.kind == "Namespace" and not kind.group:
            defaults.namespace(new)
        if kind.kind == "Service" and not kind.group:
            _keep_allocations(new, old)
        if managed is None:
            managed = dict(cur.managed)
            self._take_over(
                kind, managed, (opts.manager, "Update", opts.subresource or ""), old, new, opts.subresource
            )
        _bump_generation(kind, new, old)
        self._validate(kind, new, old, opts)
        if not opts.internal:
            self.admission.mutate(self, kind, new, old, opts)
            self.admission.validate(self, kind, new, old, opts)
        stored = self._commit(kind, namespace, name, new, cur, managed, opts)
        if (
            stored.body["metadata"].get("deletionTimestamp")
            and not stored.body["metadata"].get("finalizers")
            and not _pending_grace(kind, stored.body)
            and not opts.dry_run
        ):
            # The last finalizer is gone: the deletion completes (registry store.go).
            self._remove(kind, namespace, name, stored)
        return WriteResult(stored)

    @staticmethod
    def _take_over(
        kind: Kind,
        managed: dict[ManagerKey, _Entry],
        me: ManagerKey,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        subresource: str | None,
    ) -> None:
        """An Update (create/PUT/patch) owns what it changed and takes it from every other manager."""
        old_flat = ssa.flatten(scope_view(kind, old, subresource)) if old else {}
        new_flat = ssa.flatten(scope_view(kind, new, subresource))
        changed, removed = ssa.changed_paths(old_flat, new_flat)
        if not changed and not removed:
            return
        for mk, entry in list(managed.items()):
            if mk != me:
                managed[mk] = _Entry(_intern(entry.fields - changed - removed), entry.api_version, entry.time)
        mine = (managed[me].fields if me in managed else frozenset()) | changed
        managed[me] = _Entry(_intern(mine - removed), kind.api_version, now())
        _drop_empty(managed)

    def _commit(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        cur: Stored | None,
        managed: dict[ManagerKey, _Entry],
        opts: WriteOptions,
        *,
        keep_meta: bool = False,
    ) -> Stored:
        meta = new.setdefault("metadata", {})
        if cur is None:
            for k in SYSTEM_METADATA:
                meta.pop(k, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if kind.generation != "none":
                meta["generation"] = 1
            if kind.namespaced:
                meta["namespace"] = namespace
        elif not keep_meta:
            old_meta = cur.body["metadata"]
            for k in (
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if k in old_meta and k not in meta:
                    meta[k] = old_meta[k]
        if cur is not None:
            meta["resourceVersion"] = cur.body["metadata"]["resourceVersion"]
            same_owners = {k: e.fields for k, e in cur.managed.items()} == {
                k: e.fields for k, e in managed.items()
            }
            if same_owners and cur.body == new:
                # A write that changes nothing is not a write: no new resourceVersion, no watch event.
                return cur
        stored = Stored(new, managed)
        if opts.dry_run:
            if cur is None:
                meta.pop("resourceVersion", None)
            return stored
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (gr(kind), namespace, name)
        if cur is not None:
            self._unindex(key, cur)
        self._objects[key] = stored
        self._by_kind_ns.setdefault((key[0], namespace), {})[name] = stored
        self._index(key, stored)
        if kind.group == "rbac.authorization.k8s.io":
            self._rbac_rev += 1
        self._publish(
            kind, namespace, "ADDED" if cur is None else "MODIFIED", stored, cur.body if cur else None
        )
        for hook in self.hooks:
            hook(kind, cur.body if cur else None, stored.body)
        return stored

    def _remove(self, kind: Kind, namespace: str | None, name: str, cur: Stored) -> Stored:
        key = (gr(kind), namespace, name)
        del self._objects[key]
        bucket = self._by_kind_ns.get((key[0], namespace))
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self._by_kind_ns[(key[0], namespace)]
        self._unindex(key, cur)
        self._rv += 1
        final = copy.copy(cur.body)
        final["metadata"] = {**cur.body["metadata"], "resourceVersion": str(self._rv)}
        gone = Stored(final, cur.managed)
        if kind.group == "rbac.authorization.k8s.io":
            self._rbac_rev += 1
        self._publish(kind, namespace, "DELETED", gone, cur.body)
        for hook in self.hooks:
            hook(kind, cur.body, None)
        return gone

    def _index(self, key: Key, stored: Stored) -> None:
        meta = stored.body["metadata"]
        for k, v in (meta.get("labels") or {}).items():
            self._by_label.setdefault((key[0], key[1], k, v), set()).add(key[2])
        self._by_uid[meta["uid"]] = key
        for ref in meta.get("ownerReferences") or []:
            if ref.get("uid"):
                self._by_owner.setdefault(ref["uid"], set()).add(key)

    def _unindex(self, key: Key, stored: Stored) -> None:
        meta = stored.body["metadata"]
        for k, v in (meta.get("labels") or {}).items():
            names = self._by_label.get((key[0], key[1], k, v))
            if names is not None:
                names.discard(key[2])
                if not names:
                    del self._by_label[(key[0], key[1], k, v)]
        if self._by_uid.get(meta["uid"]) == key:
            del self._by_uid[meta["uid"]]
        for ref in meta.get("ownerReferences") or []:
            deps = self._by_owner.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._by_owner[ref["uid"]]

    def _require(
        self, kind: Kind, namespace: str | None, name: str, subresource: str | None = None
    ) -> Stored:
        if subresource is not None and not (
            (subresource == "status" and kind.status) or (subresource == "scale" and kind.scale)
        ):
            raise errors.unknown_resource()
        stored = self._objects.get((gr(kind), namespace, name))
        if stored is None:
            raise errors.not_found(kind, name)
        return stored

    def _publish(
        self, kind: Kind, namespace: str | None, type_: EventType, stored: Stored, old: dict[str, Any] | None
    ) -> None:
        event = WatchEvent(self._rv, gr(kind), namespace, type_, stored, old)
        self._history.append(event)
        for s in list(self._subscribers):
            s(event)

    # ------------------------------------------------------------------ watch plumbing

    def subscribe(
        self, kind: Kind, namespace: str | None, since: int | None, subscriber: Subscriber
    ) -> tuple[list[WatchEvent], Callable[[], None]]:
        """Atomically: the events to replay first, and a live subscription for everything after them.

        ``since=None`` replays the current objects as ADDED (a watch without resourceVersion); otherwise the
        history after ``since``. Raises 410 Gone when that history is no longer retained.
        """
        with self.lock:
            key = gr(kind)
            if since is None:
                items, _ = self.list_stored(kind, namespace)
                replay = [
                    WatchEvent(
                        int(s.body["metadata"]["resourceVersion"]),
                        key,
                        s.body["metadata"].get("namespace"),
                        "ADDED",
                        s,
                        None,
                    )
                    for s in items
                ]
            else:
                oldest = self._history[0].rv if self._history else self._rv + 1
                if since < oldest - 1 and since < self._rv:
                    raise errors.ApiStatusError(
                        410, "Expired", f"too old resource version: {since} ({oldest - 1})"
                    )
                replay = [
                    e
                    for e in self._history
                    if e.rv > since and e.gr == key and (namespace is None or e.namespace == namespace)
                ]
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self.lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return replay, unsubscribe

    def compact(self) -> None:
        """Forget the watch history, as etcd's compaction does: a watch resuming from a resourceVersion
        older than the current one now gets 410 Gone and must list again."""
        with self.lock:
            self._history.clear()

    def end_watches(self) -> None:
        """End every open watch stream (clients see a normal end of stream and typically re-watch)."""
        with self.lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for s in subscribers:
            s(None)


# ---------------------------------------------------------------- helpers


def _pod_status(pod: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "Pending", "qosClass": qos_class(pod)}


def qos_class(pod: Mapping[str, Any]) -> str:
    """pkg/apis/core/helper/qos: Guaranteed, Burstable or BestEffort."""
    containers = (pod.get("spec") or {}).get("containers") or []
    requests_any = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_INITIAL_STATUS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "Pod": _pod_status,
    "Namespace": lambda _: {"phase": "Active"},
    "PersistentVolumeClaim": lambda _: {"phase": "Pending"},
    "PersistentVolume": lambda _: {"phase": "Pending"},
    "Service": lambda _: {"loadBalancer": {}},
    "Deployment": lambda _: {},
    "StatefulSet": lambda _: {"replicas": 0, "availableReplicas": 0},
    "ReplicaSet": lambda _: {"replicas": 0},
    "HorizontalPodAutoscaler": lambda _: {"currentReplicas": 0, "desiredReplicas": 0},
    "PodDisruptionBudget": lambda _: {
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "disruptionsAllowed": 0,
        "expectedPods": 0,
    },
    "Ingress": lambda _: {"loadBalancer": {}},
    "ResourceQuota": lambda _: {},
    "CustomResourceDefinition": lambda _: {},
}


def _bump_generation(kind: Kind, new: dict[str, Any], old: dict[str, Any]) -> None:
    """The registry strategies' PrepareForUpdate generation rules."""
    meta = new["metadata"]
    gen = old["metadata"].get("generation")
    if gen is None or kind.generation == "none":
        return
    if kind.generation == "custom":
        # Custom resources: any change outside metadata (and status, with a status subresource).
        skip = ("metadata", "status") if kind.status else ("metadata",)
        changed = {k: v for k, v in new.items() if k not in skip} != {
            k: v for k, v in old.items() if k not in skip
        }
    else:
        changed = new.get("spec") != old.get("spec")
        if kind.generation == "spec+annotations":
            changed = changed or (meta.get("annotations") or {}) != (old["metadata"].get("annotations") or {})
    if changed:
        meta["generation"] = gen + 1


def _pending_grace(kind: Kind, body: Mapping[str, Any]) -> bool:
    return kind.kind == "Pod" and bool((body["metadata"].get("deletionGracePeriodSeconds") or 0) > 0)


def _keep_allocations(new: dict[str, Any], old: dict[str, Any]) -> None:
    """patchAllocatedValues: an update that omits the allocated cluster IP / node ports keeps them."""
    new_spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if new_spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
        return
    for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if not new_spec.get(f) and old_spec.get(f):
            new_spec[f] = clone(old_spec[f])
    # normalizeClusterIPs, case 2: the singular field changed and the plural did not -> sync them
    # (and let validation refuse the change).
    if (
        new_spec.get("clusterIP") != old_spec.get("clusterIP")
        and new_spec.get("clusterIPs") == old_spec.get("clusterIPs")
        and new_spec.get("clusterIPs")
    ):
        new_spec["clusterIPs"] = [new_spec["clusterIP"], *new_spec["clusterIPs"][1:]]
    old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_spec.get("ports") or []}
    for p in new_spec.get("ports") or []:
        if (
            isinstance(p, dict)
            and not p.get("nodePort")
            and old_ports.get((p.get("port"), p.get("protocol")))
        ):
            p["nodePort"] = old_ports[(p.get("port"), p.get("protocol"))]


def _drop_empty(managed: dict[ManagerKey, _Entry]) -> None:
    for mk in [mk for mk, e in managed.items() if not e.fields]:
        del managed[mk]


def _check_precondition(kind: Kind, name: str, body: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    meta = body.get("metadata")
    want = meta.get("resourceVersion") if isinstance(meta, Mapping) else None  # else a decode error later
    if want and str(want) != current["metadata"]["resourceVersion"]:
        raise errors.stale(kind, name)


def _print_manager(mk: ManagerKey, entry: _Entry | None) -> str:
    """fieldmanager's printManager: Update managers also show their API version and time."""
    manager, operation, subresource = mk
    out = f'"{manager}"'
    if subresource:
        out += f' with subresource "{subresource}"'
    if operation == "Update" and entry is not None:
        out += f" using {entry.api_version} at {entry.time}"
    return out


def _apply_conflict(
    kind: Kind, name: str, conflicts: list[tuple[ManagerKey, ssa.Path]], managed: Mapping[ManagerKey, _Entry]
) -> errors.ApiStatusError:
    """NewConflictError / getConflictMessage of k8s.io/apimachinery/pkg/util/managedfields."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_print_manager(mk, managed.get(mk))}",
            "field": ssa.path_to_string(path),
        }
        for mk, path in conflicts
    ]
    if len(conflicts) == 1:
        mk, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(mk, managed.get(mk))}: {ssa.path_to_string(path)}"
    else:
        lines = []
        for mk in sorted({mk for mk, _ in conflicts}):
            lines.append(f"conflicts with {_print_manager(mk, managed.get(mk))}:")
            lines += [f"- {ssa.path_to_string(p)}" for m, p in conflicts if m == mk]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.ApiStatusError(409, "Conflict", message, kind=kind, name=name, causes=causes)


def _duplicate_keys(applied: Any, path: str = "", field_name: str | None = None) -> str | None:
    """structured-merge-diff refuses an applied list map with two items under the same key."""
    if isinstance(applied, dict):
        for k, v in applied.items():
            found = _duplicate_keys(v, f"{path}.{k}", k)
            if found:
                return found
    elif isinstance(applied, list):
        keys = ssa.list_keys(field_name, applied)
        if keys:
            seen = set()
            for item in applied:
                key = ssa.item_element(item, keys)
                if key in seen:
                    shown = ",".join(
                        f"{k}={v!r}".replace("'", '"') for k, v in ssa.item_key(item, keys).items()
                    )
                    return f"{path}: duplicate entries for key [{shown}]"
                seen.add(key)
            for item in applied:
                sub = ",".join(f"{k}={v!r}".replace("'", '"') for k, v in ssa.item_key(item, keys).items())
                found = _duplicate_keys(item, f"{path}[{sub}]")
                if found:
                    return found
    return None


def _fold_string_data(secret: dict[str, Any]) -> None:
    """Like the real API server: `stringData` is write-only, merged into base64 `data` (it wins)."""
    string_data = secret.pop("stringData", None)
    if string_data:
        data = dict(secret.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
        secret["data"] = dict(sorted(data.items()))
