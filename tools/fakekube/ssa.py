"""Server-side apply and patch semantics as pure functions over plain JSON-like dicts.

A *field path* is a tuple of fieldsV1 keys: ``("f:spec", "f:template", ..., 'k:{"name":"app"}', "f:image")``.
Using the real fieldsV1 encoding means ``managedFields`` can be rendered exactly like the API server does.

Lists are *associative* (merged item by item, owned item by item) for the well-known keyed lists of the
built-in kinds (containers by name, ports by port+protocol, ...); every other list is atomic, which is
what the OpenAPI ``x-kubernetes-list-type`` says for most of the rest. Without the OpenAPI schema this
table is the one approximation of the real structured-merge-diff library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

from tools.fakekube.jsonutil import clone

Path = tuple[str, ...]
K = TypeVar("K")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
# The value recorded for "this keyed list item exists": two managers setting the same item never conflict.
ITEM: Final = ("<item>",)

# Field name -> merge keys; key fields absent from an item take the API server's default.
_LIST_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
_KEY_DEFAULTS: Final[dict[str, Any]] = {"protocol": "TCP"}


def list_keys(field: str | None, items: list[Any]) -> tuple[str, ...] | None:
    """The merge keys of the list stored under ``field``, or None when the list is atomic."""
    if field == "ports":
        if items and all(isinstance(i, dict) and "containerPort" in i for i in items):
            return ("containerPort", "protocol")
        if items and all(isinstance(i, dict) and "port" in i for i in items):
            return ("port", "protocol")
        return None
    keys = _LIST_KEYS.get(field or "")
    if keys is None or not items:
        return None
    required = [k for k in keys if k not in _KEY_DEFAULTS]
    if all(isinstance(i, dict) and all(k in i for k in required) for i in items):
        return keys
    return None


def item_key(item: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys}


def item_element(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps(item_key(item, keys), sort_keys=True, separators=(",", ":"))


def flatten(value: Mapping[str, Any]) -> dict[Path, Any]:
    """All owned leaf paths of an object (or of an applied configuration) with their values."""
    out: dict[Path, Any] = {}
    for k, v in value.items():
        _flatten(v, (f"f:{k}",), k, out)
    return out


def _flatten(value: Any, prefix: Path, field: str, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, (*prefix, f"f:{k}"), k, out)
        return
    if isinstance(value, list) and (keys := list_keys(field, value)):
        for item in value:
            item_path = (*prefix, item_element(item, keys))
            out[item_path] = ITEM
            for k, v in item.items():
                _flatten(v, (*item_path, f"f:{k}"), k, out)
        return
    out[prefix] = value


def merge(base: Any, applied: Any, field: str | None = None) -> Any:
    """Apply merge: maps merge recursively, keyed lists merge item by item, everything else is replaced.

    Returns a new document; neither argument is modified or shared with the result."""
    return _merge(clone(base), clone(applied), field)


def _merge(base: Any, applied: Any, field: str | None) -> Any:
    # Both arguments are private copies: merge in place, no further copying.
    if isinstance(base, dict) and isinstance(applied, dict):
        for k, v in applied.items():
            base[k] = _merge(base[k], v, k) if k in base else v
        return base
    if isinstance(base, list) and isinstance(applied, list):
        keys = list_keys(field, applied)
        if keys and list_keys(field, base) == keys:
            rest = list(base)
            out_list = []
            for item in applied:
                want = item_key(item, keys)
                match = next((b for b in rest if item_key(b, keys) == want), None)
                if match is None:
                    out_list.append(item)
                else:
                    rest.remove(match)
                    out_list.append(_merge(match, item, None))
            return out_list + rest
    return applied


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Remove the field or keyed list item at ``path``; maps emptied by the removal are removed too."""
    _remove(obj, path)


def _remove(node: Any, path: Path) -> bool:
    """Returns True when ``node`` became an empty map because of the removal."""
    head, rest = path[0], path[1:]
    if head.startswith("f:") and isinstance(node, dict):
        key = head[2:]
        if key not in node:
            return False
        if not rest or _remove(node[key], rest):
            del node[key]
        return not node
    if head.startswith("k:") and isinstance(node, list):
        want = json.loads(head[2:])
        for i, item in enumerate(node):
            if isinstance(item, dict) and item_key(item, tuple(want)) == want:
                if not rest:
                    del node[i]
                else:
                    _remove(item, rest)
                break
    return False


def find_conflicts(
    current: Mapping[Path, Any], applied: Mapping[Path, Any], others: Mapping[K, Iterable[Path]]
) -> list[tuple[K, Path]]:
    """(manager, path) pairs where another manager owns a field the applier sets to a different value."""
    out = []
    for manager, paths in others.items():
        for path in sorted(paths):
            if path in applied and current.get(path, MISSING) != applied[path]:
                out.append((manager, path))
    return out


def prunable(previous: Iterable[Path], now: Iterable[Path], others: Iterable[Path]) -> list[Path]:
    """Fields the applier owned before, no longer applies, and nobody else owns.

    A dropped keyed-list item is one path: its own fields go with it, so they are not listed.
    """
    now_set, other_list = set(now), list(others)
    candidates = {p for p in set(previous) - now_set if not any(o[: len(p)] == p for o in other_list)}
    return sorted(p for p in candidates if not any(p[:i] in candidates for i in range(1, len(p))))


def changed_paths(old: Mapping[Path, Any], new: Mapping[Path, Any]) -> tuple[set[Path], set[Path]]:
    """(set or changed, removed) leaf paths between two flattened objects: what an Update takes over."""
    changed = {p for p, v in new.items() if old.get(p, MISSING) != v}
    removed = set(old) - set(new)
    return changed, removed


def path_to_string(path: Path) -> str:
    """The API server's notation in conflict messages: ``.spec.containers[name="app"].image``."""
    out = ""
    for el in path:
        if el.startswith("f:"):
            out += "." + el[2:]
        else:
            key = json.loads(el[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
    return out


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for el in path:
            node = node.setdefault(el, {})
        if path[-1].startswith("k:"):
            node.setdefault(".", {})
    return root


# ---------------------------------------------------------------- patches (non-apply)


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target: Any, patch: Any, field: str | None = None) -> Any:
    """Strategic merge patch for the keyed lists this module knows, with ``$patch: delete`` on list items.

    Other directives (``$retainKeys``, ``$setElementOrder``, ``$deleteFromPrimitiveList``) are ignored.
    """
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: clone(v) for k, v in patch.items() if k != "$patch"}
        out = clone(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$"):
                continue
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge_patch(out.get(k), v, k)
        return out
    if isinstance(patch, list) and isinstance(target, list):
        keys = list_keys(field, patch)
        if keys and (not target or list_keys(field, target) == keys):
            out_list = clone(target)
            for item in patch:
                want = item_key(item, keys)
                idx = next((i for i, t in enumerate(out_list) if item_key(t, keys) == want), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        del out_list[idx]
                elif idx is None:
                    out_list.append(clone(item))
                else:
                    out_list[idx] = strategic_merge_patch(out_list[idx], item)
            return out_list
    return clone(patch)


class JsonPatchError(ValueError):
    pass


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    doc = clone(target)
    for op in operations:
        name = op.get("op")
        path = _pointer(op.get("path", ""))
        if name == "add":
            doc = _put(doc, path, clone(op["value"]), insert=True)
        elif name == "remove":
            doc, _ = _take(doc, path)
        elif name == "replace":
            _get(doc, path)
            doc = _put(doc, path, clone(op["value"]), insert=False)
        elif name == "move":
            doc, value = _take(doc, _pointer(op["from"]))
            doc = _put(doc, path, value, insert=True)
        elif name == "copy":
            doc = _put(doc, path, clone(_get(doc, _pointer(op["from"]))), insert=True)
        elif name == "test":
            if _get(doc, path) != op.get("value"):
                raise JsonPatchError(f"test failed at {op.get('path')}")
        else:
            raise JsonPatchError(f"unknown operation {name!r}")
    return doc


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _index(node: list[Any], part: str, *, insert: bool) -> int:
    if part == "-" and insert:
        return len(node)
    if not part.isdigit():
        raise JsonPatchError(f"invalid list index {part!r}")
    i = int(part)
    if i > len(node) or (i == len(node) and not insert):
        raise JsonPatchError(f"list index {i} out of range")
    return i


def _get(doc: Any, path: list[str]) -> Any:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, insert=False)]
        else:
            raise JsonPatchError(f"path /{'/'.join(path)} does not exist")
    return node


def _put(doc: Any, path: list[str], value: Any, *, insert: bool) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    part = path[-1]
    if isinstance(parent, dict):
        parent[part] = value
    elif isinstance(parent, list):
        i = _index(parent, part, insert=insert)
        if insert:
            parent.insert(i, value)
        else:
            parent[i] = value
    else:
        raise JsonPatchError(f"cannot add to a scalar at /{'/'.join(path)}")
    return doc


def _take(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise JsonPatchError("cannot remove the whole document")
    parent = _get(doc, path[:-1])
    part = path[-1]
    if isinstance(parent, dict) and part in parent:
        return doc, parent.pop(part)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, part, insert=False))
    raise JsonPatchError(f"path /{'/'.join(path)} does not exist")
