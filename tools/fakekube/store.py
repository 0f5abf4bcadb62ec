"""The object store: resourceVersion, generation, uid, managedFields, and the watch event history.

Thread-safe (one re-entrant lock): the HTTP server runs in its own thread while tests drive the
controller from theirs. All methods take and return plain dicts, deep-copied at the boundary.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tools.fakekube import errors, ssa
from tools.fakekube.kinds import NAMESPACE, REGISTRY, Kind, KindRegistry
from tools.fakekube.selectors import FieldRequirement, Requirement, fields_match, labels_match
from tools.fakekube.validation import validate

PatchType = Literal["merge", "strategic", "json"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[Kind, str | None, str]
# (manager, operation, subresource): how the API server keys managedFields entries.
ManagerKey = tuple[str, str, str]

# Server-owned metadata: never part of a field set, never taken from a client body.
_SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Entry:
    fields: frozenset[ssa.Path]
    api_version: str
    time: str


@dataclass
class _Stored:
    body: dict[str, Any]
    managed: dict[ManagerKey, _Entry] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    kind: Kind
    namespace: str | None
    type: EventType
    obj: dict[str, Any]
    # The object before the change, so a label-selector watch can turn "stopped matching" into DELETED.
    old: dict[str, Any] | None


Subscriber = Callable[[WatchEvent | None], None]


def scope_view(kind: Kind, body: Mapping[str, Any], subresource: str | None) -> dict[str, Any]:
    """The part of an object a write to ``subresource`` may own/change, without server-owned fields."""
    if subresource == "status":
        return {"status": copy.deepcopy(body["status"])} if "status" in body else {}
    out = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("apiVersion", "kind")}
    if kind.status:
        out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for k in (*_SYSTEM_METADATA, "name", "namespace"):
            meta.pop(k, None)
        if not meta:
            del out["metadata"]
    return out


class Store:
    def __init__(
        self,
        namespaces: Iterable[str] = ("default",),
        *,
        registry: KindRegistry = REGISTRY,
        history: int = 10_000,
    ) -> None:
        self.registry = registry
        self.lock = threading.RLock()
        self._objects: dict[Key, _Stored] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._subscribers: list[Subscriber] = []
        self._names = itertools.count(1)
        for ns in namespaces:
            self.create(
                NAMESPACE,
                None,
                {
                    "metadata": {"name": ns},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
                manager="fakekube",
                internal=True,
            )

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            return self._render(self._require(kind, namespace, name))

    def find(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self.lock:
            stored = self._objects.get((kind, namespace, name))
            return None if stored is None else self._render(stored)

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
    ) -> tuple[list[dict[str, Any]], int]:
        """Matching objects ordered by namespace/name, and the list's resourceVersion."""
        with self.lock:
            items = [
                self._render(s)
                for (k, ns, _), s in sorted(self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
                if k == kind
                and (namespace is None or ns == namespace)
                and labels_match(labels, s.body["metadata"].get("labels"))
                and fields_match(fields, s.body)
            ]
            return items, self._rv

    def owned_by(self, kind: Kind, namespace: str, owner_uid: str) -> list[dict[str, Any]]:
        with self.lock:
            items, _ = self.list(kind, namespace)
            return [o for o in items if owner_uid in _owner_uids(o)]

    # ------------------------------------------------------------------ writes

    def create(
        self,
        kind: Kind,
        namespace: str | None,
        body: Mapping[str, Any],
        *,
        manager: str,
        internal: bool = False,
    ) -> dict[str, Any]:
        """POST. ``internal`` writes come from the fake controller: status is kept, nothing validated."""
        new = copy.deepcopy(dict(body))
        meta = new.setdefault("metadata", {})
        self._check_body(kind, namespace, new)
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                suffix = hashlib.sha256(str(next(self._names)).encode()).hexdigest()[:5]
                meta["name"] = meta["generateName"] + suffix
            name = meta.get("name")
            if not name:
                raise errors.invalid(
                    kind, "", [("metadata.name", "Required value: name or generateName is required")]
                )
            self._require_namespace(kind, namespace)
            if (kind, namespace, name) in self._objects:
                raise errors.already_exists(kind, name)
            if kind.status and not internal:
                new.pop("status", None)
            managed: dict[ManagerKey, _Entry] = {}
            self._take_over(kind, managed, (manager, "Update", ""), {}, new, None)
            return self._commit(kind, namespace, name, new, None, managed, validate_body=not internal)

    def replace(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        manager: str,
        subresource: str | None = None,
        internal: bool = False,
    ) -> dict[str, Any]:
        """PUT: a stale ``metadata.resourceVersion`` is a 409 Conflict; none means unconditional."""
        incoming = copy.deepcopy(dict(body))
        self._check_body(kind, namespace, incoming, name=name)
        with self.lock:
            cur = self._require(kind, namespace, name, subresource)
            _check_precondition(kind, name, incoming, cur.body)
            new = self._combine(kind, cur.body, incoming, subresource)
            managed = copy.deepcopy(cur.managed)
            self._take_over(kind, managed, (manager, "Update", subresource or ""), cur.body, new, subresource)
            return self._commit(kind, namespace, name, new, cur, managed, validate_body=not internal)

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: PatchType,
        *,
        manager: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            cur = self._require(kind, namespace, name, subresource)
            if isinstance(patch, dict):
                _check_precondition(kind, name, patch, cur.body)
            try:
                if patch_type == "json":
                    if not isinstance(patch, list):
                        raise errors.bad_request("a JSON patch must be a list of operations")
                    patched = ssa.json_patch(cur.body, patch)
                elif patch_type == "strategic":
                    patched = ssa.strategic_merge_patch(cur.body, patch)
                else:
                    patched = ssa.json_merge_patch(cur.body, patch)
            except ssa.JsonPatchError as e:
                raise errors.ApiStatusError(422, "Invalid", str(e), kind=kind, name=name) from e
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch must result in an object")
            self._check_body(kind, namespace, patched, name=name)
            new = self._combine(kind, cur.body, patched, subresource)
            managed = copy.deepcopy(cur.managed)
            self._take_over(kind, managed, (manager, "Update", subresource or ""), cur.body, new, subresource)
            return self._commit(kind, namespace, name, new, cur, managed, validate_body=True)

    def apply(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        manager: str,
        force: bool = False,
        subresource: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply. Returns (object, created)."""
        if not manager:
            raise errors.bad_request('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value')
        applied = copy.deepcopy(dict(body))
        if applied.get("apiVersion") != kind.api_version or applied.get("kind") != kind.kind:
            raise errors.bad_request(
                f"the applied object's apiVersion/kind ({applied.get('apiVersion')}, {applied.get('kind')})"
                f" does not match the request ({kind.api_version}, {kind.kind})"
            )
        applied.setdefault("metadata", {})
        self._check_body(kind, namespace, applied, name=name)
        with self.lock:
            cur = self._objects.get((kind, namespace, name))
            if cur is None:
                if subresource:
                    raise errors.not_found(kind, name)
                self._require_namespace(kind, namespace)
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
                managed = copy.deepcopy(cur.managed)
            me: ManagerKey = (manager, "Apply", subresource or "")
            view = scope_view(kind, applied, subresource)
            applied_flat = ssa.flatten(view)
            current_flat = ssa.flatten(scope_view(kind, base, subresource))
            others = {mk: e.fields for mk, e in managed.items() if mk != me}
            conflicts = ssa.find_conflicts(
                current_flat, applied_flat, {_mk_str(mk): f for mk, f in others.items()}
            )
            if conflicts and not force:
                raise _apply_conflict(kind, name, conflicts, applied["apiVersion"])
            if conflicts:
                lost = {p for _, p in conflicts}
                for mk in others:
                    managed[mk].fields = frozenset(managed[mk].fields - lost)
            new = ssa.merge(base, view)
            previous = managed[me].fields if me in managed else frozenset()
            still_owned = [p for mk, e in managed.items() if mk != me for p in e.fields]
            for path in ssa.prunable(previous, applied_flat, still_owned):
                ssa.remove_path(new, path)
            fields = frozenset(applied_flat)
            if me not in managed or managed[me].fields != fields:
                managed[me] = _Entry(fields, kind.api_version, now())
            _drop_empty(managed)
            return self._commit(kind, namespace, name, new, cur, managed, validate_body=True), cur is None

    def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
    ) -> dict[str, Any]:
        """Immediate deletion (no finalizers). Dependents (by ownerReferences) go too unless ``Orphan``."""
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        with self.lock:
            cur = self._require(kind, namespace, name)
            if precondition_rv and precondition_rv != cur.body["metadata"]["resourceVersion"]:
                raise errors.stale(kind, name)
            del self._objects[(kind, namespace, name)]
            uid = cur.body["metadata"]["uid"]
            gone = self._stamp_rv(copy.deepcopy(cur.body))
            rendered = self._render(_Stored(gone, cur.managed))
            self._publish(kind, namespace, "DELETED", rendered, self._render(cur))
            for (dkind, dns, dname), dep in list(self._objects.items()):
                if uid not in _owner_uids(dep.body) or (dkind, dns, dname) not in self._objects:
                    continue
                if propagation == "Orphan":
                    orphan = copy.deepcopy(dep.body)
                    refs = [r for r in orphan["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    orphan["metadata"]["ownerReferences"] = refs
                    self._commit(dkind, dns, dname, orphan, dep, dep.managed, validate_body=False)
                else:
                    self.delete(dkind, dns, dname, propagation=propagation)
            return rendered

    def delete_collection(
        self,
        kind: Kind,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
        *,
        propagation: str | None = None,
    ) -> list[dict[str, Any]]:
        with self.lock:
            items, _ = self.list(kind, namespace, labels, fields)
            return [
                self.delete(
                    kind, o["metadata"].get("namespace"), o["metadata"]["name"], propagation=propagation
                )
                for o in items
                if (kind, o["metadata"].get("namespace"), o["metadata"]["name"]) in self._objects
            ]

    # ------------------------------------------------------------------ watch plumbing

    def subscribe(
        self, kind: Kind, namespace: str | None, since: int | None, subscriber: Subscriber
    ) -> tuple[list[WatchEvent], Callable[[], None]]:
        """Atomically: the events to replay first, and a live subscription for everything after them.

        ``since=None`` replays the current objects as ADDED (a watch without resourceVersion); otherwise the
        history after ``since``. Raises 410 Gone when that history is no longer retained.
        """
        with self.lock:
            if since is None:
                items, _ = self.list(kind, namespace)
                replay = [
                    WatchEvent(int(o["metadata"]["resourceVersion"]), kind, namespace, "ADDED", o, None)
                    for o in items
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
                    if e.rv > since and e.kind == kind and (namespace is None or e.namespace == namespace)
                ]
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self.lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return replay, unsubscribe

    def end_watches(self) -> None:
        """End every open watch stream (clients see a normal end of stream and typically re-watch)."""
        with self.lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for s in subscribers:
            s(None)

    # ------------------------------------------------------------------ internals

    def _check_body(
        self, kind: Kind, namespace: str | None, body: dict[str, Any], name: str | None = None
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
        if name is not None:
            if meta.get("name") and meta["name"] != name:
                raise errors.bad_request("the name of the object does not match the name on the URL")
            meta["name"] = name
        body["apiVersion"], body["kind"] = kind.api_version, kind.kind

    def _require(
        self, kind: Kind, namespace: str | None, name: str, subresource: str | None = None
    ) -> _Stored:
        if subresource is not None and not (subresource == "status" and kind.status):
            raise errors.ApiStatusError(
                404, "NotFound", f"the server could not find the requested resource ({subresource})"
            )
        stored = self._objects.get((kind, namespace, name))
        if stored is None:
            raise errors.not_found(kind, name)
        return stored

    def _require_namespace(self, kind: Kind, namespace: str | None) -> None:
        if kind.namespaced and (NAMESPACE, None, namespace) not in self._objects:
            raise errors.not_found(NAMESPACE, str(namespace))

    @staticmethod
    def _combine(
        kind: Kind, current: dict[str, Any], incoming: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """The new object for a PUT/patch: main writes keep status, status writes change only status."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in incoming:
                new["status"] = copy.deepcopy(incoming["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(incoming)
        if kind.status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        return new

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
        for mk, entry in managed.items():
            if mk != me:
                entry.fields = frozenset(entry.fields - changed - removed)
        mine = (managed[me].fields if me in managed else frozenset()) | changed
        managed[me] = _Entry(frozenset(mine - removed), kind.api_version, now())
        _drop_empty(managed)

    def _commit(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        cur: _Stored | None,
        managed: dict[ManagerKey, _Entry],
        *,
        validate_body: bool,
    ) -> dict[str, Any]:
        meta = new.setdefault("metadata", {})
        for k in _SYSTEM_METADATA:
            meta.pop(k, None)
        if kind.kind == "Secret":
            _fold_string_data(new)
        if cur is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if kind.generation:
                meta["generation"] = 1
        else:
            old_meta = cur.body["metadata"]
            for k in ("uid", "creationTimestamp", "generation"):
                if k in old_meta:
                    meta[k] = old_meta[k]
            same_body = cur.body == {
                **new,
                "metadata": {**meta, "resourceVersion": old_meta["resourceVersion"]},
            }
            same_owners = {k: e.fields for k, e in cur.managed.items()} == {
                k: e.fields for k, e in managed.items()
            }
            if same_body and same_owners:
                # A write that changes nothing is not a write: no new resourceVersion, no watch event.
                return self._render(cur)
            if kind.generation and cur.body.get("spec") != new.get("spec"):
                meta["generation"] = old_meta.get("generation", 1) + 1
        if validate_body:
            problems = validate(kind, new)
            if problems:
                raise errors.invalid(kind, name, problems)
            if cur is not None:
                problems = _immutable(kind, cur.body, new)
                if problems:
                    raise errors.invalid(kind, name, problems)
        self._stamp_rv(new)
        stored = _Stored(new, managed)
        self._objects[(kind, namespace, name)] = stored
        rendered = self._render(stored)
        self._publish(
            kind,
            namespace,
            "ADDED" if cur is None else "MODIFIED",
            rendered,
            self._render(cur) if cur else None,
        )
        return rendered

    def _stamp_rv(self, body: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        body["metadata"]["resourceVersion"] = str(self._rv)
        return body

    def _publish(
        self,
        kind: Kind,
        namespace: str | None,
        type_: EventType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> None:
        event = WatchEvent(self._rv, kind, namespace, type_, obj, old)
        self._history.append(event)
        for s in list(self._subscribers):
            s(event)

    @staticmethod
    def _render(stored: _Stored) -> dict[str, Any]:
        out = copy.deepcopy(stored.body)
        if stored.managed:
            out["metadata"]["managedFields"] = [
                {
                    "manager": mgr,
                    "operation": op,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": ssa.fields_v1(e.fields),
                    **({"subresource": sub} if sub else {}),
                }
                for (mgr, op, sub), e in stored.managed.items()
            ]
        return out


def _owner_uids(body: Mapping[str, Any]) -> set[str]:
    return {r.get("uid") for r in body.get("metadata", {}).get("ownerReferences") or []}


def _drop_empty(managed: dict[ManagerKey, _Entry]) -> None:
    for mk in [mk for mk, e in managed.items() if not e.fields]:
        del managed[mk]


def _mk_str(mk: ManagerKey) -> str:
    return mk[0]


def _check_precondition(kind: Kind, name: str, body: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    want = (body.get("metadata") or {}).get("resourceVersion")
    if want and str(want) != current["metadata"]["resourceVersion"]:
        raise errors.stale(kind, name)


def _apply_conflict(
    kind: Kind, name: str, conflicts: list[tuple[str, ssa.Path]], api_version: str
) -> errors.ApiStatusError:
    causes = [
        {
            "type": "FieldManagerConflict",
            "message": f'conflict with "{mgr}" using {api_version}',
            "field": ssa.path_to_string(path),
        }
        for mgr, path in conflicts
    ]
    lines = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
    plural = "conflict" if len(conflicts) == 1 else "conflicts"
    return errors.ApiStatusError(
        409,
        "Conflict",
        f"Apply failed with {len(conflicts)} {plural}: {lines}",
        kind=kind,
        name=name,
        causes=causes,
    )


def _immutable(kind: Kind, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The immutability rules a listener can trip over (changing a workload's selector)."""
    workload = kind.kind in ("Deployment", "StatefulSet", "ReplicaSet")
    if workload and old.get("spec", {}).get("selector") != new.get("spec", {}).get("selector"):
        return [("spec.selector", "Invalid value: field is immutable")]
    return []


def _fold_string_data(secret: dict[str, Any]) -> None:
    """Like the real API server: `stringData` is write-only, merged into base64 `data` (it wins)."""
    string_data = secret.pop("stringData", None)
    if string_data:
        data = dict(secret.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
        secret["data"] = dict(sorted(data.items()))
