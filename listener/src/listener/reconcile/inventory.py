"""Inventory: a metadata-only cache of the objects in the watched namespaces, and drift detection on it.

One table per (namespace, kind), filled by one list of that kind in that namespace (no label
selector: a *foreign* object with one of our names must be seen too, so `apply.survey`'s rule —
never write what is not ours — holds without a GET per object). A row keeps only what the listener
decides on (`Seen`): is it ours, its spec-hash annotation, a hash of the fields the listener's
server-side apply owns, and its status-record annotation. Whole objects are never kept.

Freshness: a table is good for one cycle (`begin_cycle` marks every table stale; the first lookup
in a cycle lists again), so a foreign object created a moment ago is seen at the next cycle at the
latest, and a steady cycle that looks nothing up makes no request at all. The listener's own
writes update the row at once (`note`).

Drift (`drift`), per rendered object, with no write:

* missing → re-apply (someone deleted it);
* not ours any more → refuse (never write it);
* its spec-hash annotation differs from what is rendered → re-apply;
* the fields the listener's apply owns changed since the listener last applied it (another field
  manager took some over: `kubectl edit`, `kubectl apply`, a controller) → re-apply. After a
  restart there is no "last applied": the first look is taken as the baseline.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from listener import naming, ownership
from listener.kube import FIELD_MANAGER, Cluster
from listener.reconcile.apply import is_create_only
from listener.reconcile.prune import is_data

Key = tuple[str, str]
"""(kind, name) within one namespace, as `apply.key_of`."""


@dataclass(frozen=True, slots=True)
class Seen:
    """What the listener needs to know about one live object (never its data)."""

    owned: bool
    spec_hash: str | None
    fields: str | None
    """A hash of `fieldsV1` of the listener's own `Apply` entry in managedFields (None: none)."""
    resource_version: str
    deployment: str | None = None
    """The deployment-id label's value (which deployment's object it is, when it is ours)."""
    data: bool = False
    """A volume or a password (`prune.is_data`): never pruned as a stray."""


def fields_hash(obj: Mapping[str, Any]) -> str | None:
    """A hash of the fields the listener's server-side apply owns on `obj` (None when it owns none)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            isinstance(entry, Mapping)
            and entry.get("manager") == FIELD_MANAGER
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            fields = entry.get("fieldsV1") or {}
            if isinstance(fields, msgspec.Raw):  # from a metadata list (`Cluster.list_metadata`)
                fields = msgspec.json.decode(fields)
            encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"))
            return hashlib.sha256(encoded.encode()).hexdigest()[:32]
    return None


def seen_of(obj: Mapping[str, Any], listener_id: str) -> Seen:
    meta = obj.get("metadata") or {}
    return Seen(
        owned=ownership.owned(obj, listener_id),
        spec_hash=(meta.get("annotations") or {}).get(naming.ANNOTATION_SPEC_HASH),
        fields=fields_hash(obj),
        resource_version=str(meta.get("resourceVersion", "")),
        deployment=(meta.get("labels") or {}).get(naming.LABEL_DEPLOYMENT_ID),
        data=is_data(str(obj.get("kind", "")), obj),
    )


class _Table:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._rows: dict[str, Seen] = {}
        self._owned: dict[str, list[str]] | None = None
        """Names of the listener's own rows by deployment label (built on first use after a change)."""
        self.cycle = -1
        """The cycle the rows were listed in (-1: never)."""
        self.watched = False
        """A watch keeps the rows current (`Watcher`): no list per cycle while this holds."""

    @property
    def rows(self) -> dict[str, Seen]:
        return self._rows

    @rows.setter
    def rows(self, rows: dict[str, Seen]) -> None:
        self._rows, self._owned = rows, None

    def put(self, name: str, seen: Seen) -> None:
        self._rows[name] = seen
        self._owned = None

    def drop(self, name: str) -> None:
        self._rows.pop(name, None)
        self._owned = None

    def owned_by(self, label: str) -> list[str]:
        """The names of the listener's own rows of one deployment: a resync asks this once per
        deployment and kind, so it is an index, not a scan of every row of the namespace."""
        if self._owned is None:
            owned: dict[str, list[str]] = {}
            for name, seen in self._rows.items():
                if seen.owned and seen.deployment is not None:
                    owned.setdefault(seen.deployment, []).append(name)
            self._owned = owned
        return self._owned.get(label, [])


class Inventory:
    """Per (namespace, apiVersion, kind) tables of `Seen`, shared by the queue's workers."""

    def __init__(self, cluster: Cluster, listener_id: str):
        self._cluster = cluster
        self._listener_id = listener_id
        self._tables: dict[tuple[str, str, str], _Table] = {}
        self._lock = threading.Lock()
        self._cycle = 0
        self.lists = 0
        """Lists made so far (tests and the benchmark read it)."""

    def begin_cycle(self) -> None:
        """Every table is stale from now on: the next lookup in each lists again."""
        with self._lock:
            self._cycle += 1

    def _table(self, namespace: str, api_version: str, kind: str) -> _Table:
        with self._lock:
            table = self._tables.get((namespace, api_version, kind))
            if table is None:
                table = self._tables[(namespace, api_version, kind)] = _Table()
            return table

    def lookup(self, namespace: str, api_version: str, kind: str, name: str) -> Seen | None:
        """The object as of this cycle (listing its kind in its namespace first if needed); None
        when no object of that name exists. Raises `ClusterError` when the list fails."""
        table = self._table(namespace, api_version, kind)
        with table.lock:  # one list per table and cycle, however many workers ask at once
            cycle = self._cycle
            if table.cycle != cycle and not table.watched:
                listed = self._cluster.list_metadata(api_version, kind, namespace)
                self.lists += 1
                table.rows = self._rows(kind, listed, table.rows)
                table.cycle = cycle
            return table.rows.get(name)

    def strays(
        self,
        namespace: str,
        deployment_id: str,
        keep: set[Key],
        kinds: Iterable[tuple[str, str]],
    ) -> list[Key]:
        """The deployment's own objects of `kinds` in `namespace` that are not in `keep` and are not
        data: what `prune.prune_stale` would delete (it decides; this only says whether to ask)."""
        label = naming.label_value(deployment_id)
        found = []
        for api_version, kind in kinds:
            self.lookup(namespace, api_version, kind, "")  # lists the table when it is stale
            table = self._table(namespace, api_version, kind)
            with table.lock:
                found += [
                    (kind, name)
                    for name in table.owned_by(label)
                    if not table.rows[name].data and (kind, name) not in keep
                ]
        return found

    def replace(
        self, namespace: str, api_version: str, kind: str, objects: Iterable[Mapping[str, Any]]
    ) -> None:
        """A fresh list of the table (the watcher's relist): the rows become exactly these."""
        table = self._table(namespace, api_version, kind)
        with table.lock:
            table.rows = self._rows(kind, objects, table.rows)
            table.watched = True

    def _rows(self, kind: str, objects: Iterable[Mapping[str, Any]], old: dict[str, Seen]) -> dict[str, Seen]:
        """A table's rows from a list; a row whose object has the same resourceVersion as before is
        kept as it is (an unchanged object is not hashed again: most of a relist at N = 1,000)."""
        rows = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            name = meta["name"]
            before = old.get(name)
            version = str(meta.get("resourceVersion", ""))
            if before is not None and version and before.resource_version == version:
                rows[name] = before
            else:
                rows[name] = seen_of({**obj, "kind": kind}, self._listener_id)
        return rows

    def event(self, namespace: str, api_version: str, kind: str, change: str, obj: Mapping[str, Any]) -> None:
        """One watch event: ADDED/MODIFIED replace the row, DELETED (or a deletion starting) drops it."""
        table = self._table(namespace, api_version, kind)
        name = obj["metadata"]["name"]
        with table.lock:
            if change == "DELETED" or obj["metadata"].get("deletionTimestamp"):
                table.drop(name)
            elif change in ("ADDED", "MODIFIED"):
                table.put(name, seen_of({**obj, "kind": kind}, self._listener_id))

    def unwatched(self, namespace: str, api_version: str, kind: str) -> None:
        """The table's watch broke: list it per cycle again until the watch is back."""
        table = self._table(namespace, api_version, kind)
        with table.lock:
            table.watched = False

    def watched(self, namespace: str, api_version: str, kind: str) -> bool:
        return self._table(namespace, api_version, kind).watched

    def note(self, obj: Mapping[str, Any]) -> Seen:
        """Record an object the listener just wrote (the API server's answer to the write)."""
        meta = obj["metadata"]
        seen = seen_of(obj, self._listener_id)
        table = self._table(meta["namespace"], obj["apiVersion"], obj["kind"])
        with table.lock:
            table.put(meta["name"], seen)
        return seen


@dataclass(frozen=True)
class Drift:
    """What a look at the inventory found for one deployment's rendered objects."""

    changed: list[dict[str, Any]]
    """Objects to re-apply, in rendered order."""
    why: dict[Key, str]
    foreign: list[str]
    """Objects that exist but are not the listener's: never written."""


def drift(
    inventory: Inventory, objects: Iterable[Mapping[str, Any]], baseline: dict[Key, str | None]
) -> Drift:
    """Compare what is rendered with what the inventory sees; `baseline` maps each object to the
    fields hash the listener's last apply left (missing keys are filled in from this look)."""
    changed: list[dict[str, Any]] = []
    why: dict[Key, str] = {}
    foreign: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta["name"])
        seen = inventory.lookup(meta["namespace"], obj["apiVersion"], obj["kind"], meta["name"])
        reason = None
        if seen is None:
            reason = "deleted"
        elif not seen.owned:
            foreign.append(f"{obj['kind']} {meta['namespace']}/{meta['name']}")
            continue
        elif is_create_only(obj):
            continue  # generated credentials: created once, never applied over; only a deletion counts
        elif seen.spec_hash != (meta.get("annotations") or {}).get(naming.ANNOTATION_SPEC_HASH):
            reason = "spec-hash annotation differs"
        elif key not in baseline:
            baseline[key] = seen.fields
        elif seen.fields != baseline[key]:
            reason = "fields it applies were changed by another field manager"
        if reason is not None:
            changed.append(dict(obj))
            why[key] = reason
    return Drift(changed, why, foreign)
