"""OpenAPI schema checks: what the API server's decoder and structured-merge-diff reject or drop.

Built-in kinds are checked against the strict (``additionalProperties: false``) JSON schemas that
kubernetes-validate ships for Kubernetes 1.37 (the pinned dev dependency), compiled once per kind with
jsonschema_rs. Custom resources are checked against their CRD's structural ``openAPIV3Schema``,
converted to JSON schema by :func:`crd_json_schema`.

What the findings mean depends on the verb, exactly as in the API server
(staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{create,update,patch}.go):

* create/update/patch: unknown fields are dropped, each with a ``Warning: 299 - "unknown field ..."``
  header (``fieldValidation=Warn``, the server default), or rejected with ``fieldValidation=Strict``;
  a wrong type is a decode error (400 for create/update, 422 on the ``patch`` field for patches);
* server-side apply: the applied configuration is converted to a typed object first, so an unknown
  field or a wrong type fails the request (500, "failed to create typed patch object ... field not
  declared in schema"), whatever ``fieldValidation`` says.

Required fields and, for custom resources, every other schema keyword (enum, pattern, maximum, ...)
become 422 field errors.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema_rs
import kubernetes_validate.utils as kvu
import msgspec

from tools.fakekube import errors
from tools.fakekube.errors import FieldError
from tools.fakekube.jsonutil import clone
from tools.fakekube.kinds import Kind

KUBE_VERSION = "1.37.0"
_FOLDER = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"

FindingType = Literal["unknown", "type", "required", "enum", "other"]
PathElem = str | int


@dataclass(frozen=True)
class Finding:
    type: FindingType
    path: tuple[
        PathElem, ...
    ]  # the instance path of the offending value (or its parent for unknown/required)
    name: str | None  # the unknown or missing property
    message: str
    value: Any = None
    options: tuple[Any, ...] = ()

    @property
    def field_path(self) -> tuple[PathElem, ...]:
        return (*self.path, self.name) if self.name is not None else self.path


@functools.cache
def _registry() -> jsonschema_rs.Registry:
    defs = kvu.schema_contents(f"{_FOLDER}/_definitions.json", KUBE_VERSION)
    return jsonschema_rs.Registry([(defs["$id"], defs)])


@functools.cache
def _builtin_validator(api_version: str, kind: str) -> Any:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kvu.schema_contents(f"{_FOLDER}/{kind.lower()}-{api}.json", KUBE_VERSION)
    return jsonschema_rs.validator_for(schema, registry=_registry())


_CRD_VALIDATORS: dict[int, Any] = {}


def _validator(kind: Kind) -> Any:
    if kind.crd_schema is None:
        return _builtin_validator(kind.api_version, kind.kind)
    key = id(kind.crd_schema)
    found = _CRD_VALIDATORS.get(key)
    if found is None:
        found = _CRD_VALIDATORS[key] = (
            jsonschema_rs.validator_for(kind.crd_schema, validate_formats=False),
            kind.crd_schema,  # keep the schema alive so its id is never reused
        )
    return found[0]


def findings(
    kind: Kind, obj: Mapping[str, Any], *, typed: bool = True, numbers: bool = True
) -> list[Finding]:
    """Everything the schema says about ``obj``; empty (and fast) when the object is valid.

    ``typed``: the body is decoded straight into the Go struct (create/update/patch), so an integer
    field refuses ``2.0`` and numbers outside its int32/int64 range (see :func:`_go_integer_findings`);
    a server-side apply goes through the unstructured converter instead, which accepts integral floats.
    """
    validator = _validator(kind)
    ints = _go_integer_findings(kind, obj) if numbers and kind.crd_schema is None else []
    if not typed:
        # runtime/converter.go fromUnstructured: an integral float converts to the integer field.
        ints = [f for f in ints if not _convert_integral(obj, f)]
    if not ints and validator.is_valid(obj):
        return []
    found = [*ints, *_classify(validator.iter_errors(obj))]
    order = _document_order(obj)
    # Report in document order, as a streaming decoder meets the fields.
    return sorted(
        found, key=lambda f: (order.get(f.field_path, order.get(f.path, len(order))), f.field_path != f.path)
    )


_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _go_integer_findings(kind: Kind, obj: Mapping[str, Any]) -> list[Finding]:
    """What JSON schema's ``integer`` lets through and the API server's typed decoder does not.

    sigs.k8s.io/json decodes a number into an ``int32``/``int64`` struct field with strconv.ParseInt
    (encoding/json decode.go literalStore), so ``2.0`` or ``1e3`` is "json: cannot unmarshal number
    2.0 into Go struct field ... of type int32", and so is a value that overflows the field
    (``v.OverflowInt``). JSON schema calls 2.0 an integer and kubernetes-validate's ``format: int32`` is
    not checked, so both would otherwise be accepted. Quantities (``number``) accept floats.
    """
    if not _suspect_numbers(obj):  # almost every body: no float, no large integer
        return []
    candidates: list[tuple[tuple[PathElem, ...], Any]] = []
    stack: list[tuple[tuple[PathElem, ...], Any]] = [((), obj)]
    while stack:
        path, node = stack.pop()
        t = type(node)
        if t is dict:
            stack.extend(((*path, k), v) for k, v in node.items())
        elif t is list:
            stack.extend(((*path, i), v) for i, v in enumerate(node))
        elif (t is float) or (t is int and not -(2**31) <= node < 2**31):
            candidates.append((path, node))
    if not candidates:
        return []
    out = []
    for path, value in candidates:
        fmt = _integer_format(_schema_at(kind, path))
        if fmt is None:
            continue
        low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
        if type(value) is float or not low <= value <= high:
            out.append(Finding("type", path, None, f'{value!r} is not of type "{fmt}"', value))
    return out


def _suspect_numbers(obj: Any) -> bool:
    stack = [obj]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is dict:
            stack.extend(node.values())
        elif t is list:
            stack.extend(node)
        elif t is float or (t is int and not -(2**31) <= node < 2**31):
            return True
    return False


def _convert_integral(obj: Mapping[str, Any], finding: Finding) -> bool:
    """Store an integral float in an integer field as the integer (True), as the converter does."""
    value = finding.value
    if type(value) is not float or not value.is_integer():
        return False
    fmt = _expected(finding.message)
    low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
    if not low <= int(value) <= high:
        return False
    node: Any = obj
    for part in finding.path[:-1]:
        node = node[part]
    node[finding.path[-1]] = int(value)
    return True


def _deref(node: Any) -> Any:
    defs = _registry_defs()
    while isinstance(node, dict) and "$ref" in node:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node


@functools.cache
def _registry_defs() -> dict[str, Any]:
    defs: dict[str, Any] = kvu.schema_contents(f"{_FOLDER}/_definitions.json", KUBE_VERSION)["$defs"]
    return defs


def _schema_at(kind: Kind, path: tuple[PathElem, ...]) -> Any:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", kind.api_version)
    node: Any = kvu.schema_contents(f"{_FOLDER}/{kind.kind.lower()}-{api}.json", KUBE_VERSION)
    for part in path:
        node = _deref(node)
        if not isinstance(node, dict):
            return None
        if isinstance(part, int):
            node = node.get("items")
        else:
            props = node.get("properties") or {}
            node = props[part] if part in props else node.get("additionalProperties")
    return _deref(node)


def _integer_format(node: Any) -> str | None:
    """``int32``/``int64`` when the schema node is a Go integer (or int-or-string), else None."""
    if not isinstance(node, dict):
        return None
    types = node.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "integer" in types and "number" not in types:
        return str(node.get("format") or "int64")
    alternatives = [_deref(alt) for alt in node.get("oneOf") or node.get("anyOf") or []]
    alt_types = {t for alt in alternatives if isinstance(alt, dict) for t in _types(alt)}
    if "integer" in alt_types and "number" not in alt_types:
        return "int32"  # intstr.IntOrString: IntVal is an int32
    return None


def _types(node: Mapping[str, Any]) -> list[str]:
    t = node.get("type")
    return [t] if isinstance(t, str) else list(t or [])


def _document_order(obj: Any) -> dict[tuple[PathElem, ...], int]:
    order: dict[tuple[PathElem, ...], int] = {}

    def walk(node: Any, path: tuple[PathElem, ...]) -> None:
        order[path] = len(order)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(obj, ())
    return order


def _classify(errs: Iterator[Any]) -> Iterator[Finding]:
    for e in errs:
        kind_name = type(e.kind).__name__
        path = tuple(e.instance_path)
        if kind_name == "AdditionalProperties":
            for name in e.kind.unexpected:
                yield Finding("unknown", path, name, "field not declared in schema")
        elif kind_name == "Required":
            yield Finding("required", path, e.kind.property, "Required value")
        elif kind_name in ("Type", "OneOfNotValid", "AnyOf"):
            yield Finding("type", path, None, e.message, e.instance)
        elif kind_name == "Enum":
            yield Finding("enum", path, None, e.message, e.instance, tuple(e.kind.options))
        else:
            yield Finding("other", path, None, e.message, e.instance)


# ---------------------------------------------------------------- path renderings


def decoder_path(path: tuple[PathElem, ...]) -> str:
    """``spec.template.spec.containers[0].foo``: how the strict JSON decoder names a field."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def smd_path(obj: Any, path: tuple[PathElem, ...]) -> str:
    """``.spec.template.spec.containers[name="app"].foo``: how structured-merge-diff names a field."""
    from tools.fakekube import ssa  # the keyed-list table lives with the SSA code

    out = ""
    node = obj
    parent_field: str | None = None
    for p in path:
        if isinstance(p, int) and isinstance(node, list):
            keys = ssa.list_keys(parent_field, node)
            item = node[p] if p < len(node) else {}
            if keys and isinstance(item, dict):
                key = ssa.item_key(item, keys)
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
            else:
                out += f"[{p}]"
            node = item
        else:
            out += f".{p}"
            parent_field = str(p)
            node = node.get(p) if isinstance(node, dict) else None
    return out


def field_path(path: tuple[PathElem, ...]) -> str:
    return decoder_path(path)


# ---------------------------------------------------------------- verb-specific outcomes


def prune_unknown(obj: dict[str, Any], found: list[Finding]) -> list[str]:
    """Drop unknown fields in place; returns the warnings the API server sends for them."""
    warnings = []
    for f in found:
        if f.type != "unknown":
            continue
        node: Any = obj
        for p in f.path:
            node = node[p]
        if isinstance(node, dict) and f.name in node:
            del node[f.name]
            warnings.append(f'unknown field "{decoder_path(f.field_path)}"')
    return warnings


def decode_error(kind: Kind, found: list[Finding]) -> errors.ApiStatusError | None:
    """A JSON decode failure of a create/update body (400), like the API server's codec."""
    for f in found:
        if f.type == "type":
            return errors.bad_request(
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                f"json: cannot unmarshal {_go_value(f)} into Go struct field "
                f"{decoder_path(f.path)} of type {_expected(f.message)}"
            )
    return None


def strict_error(found: list[Finding]) -> errors.ApiStatusError | None:
    unknown = [f for f in found if f.type == "unknown"]
    if not unknown:
        return None
    text = ", ".join(f'unknown field "{decoder_path(f.field_path)}"' for f in unknown)
    return errors.bad_request(f"strict decoding error: {text}")


def patch_decode_error(found: list[Finding], patched: Any) -> errors.ApiStatusError | None:
    """A patched object that no longer decodes: 422 on the ``patch`` field (patch.go)."""
    for f in found:
        if f.type == "type":
            detail = (
                f"json: cannot unmarshal {_go_value(f)} into Go struct field "
                f"{decoder_path(f.path)} of type {_expected(f.message)}"
            )
            err = errors.field_invalid("patch", json.dumps(patched, separators=(",", ":")), detail)
            return errors.ApiStatusError(
                422,
                "Invalid",
                f' "" is invalid: {err}',
                causes=[{"reason": err.type, "message": err.body, "field": err.field}],
            )
    return None


def apply_error(
    kind: Kind, namespace: str | None, name: str, applied: Any, found: list[Finding]
) -> errors.ApiStatusError | None:
    """structured-merge-diff refuses an applied configuration with unknown fields or wrong types."""
    lines = []
    for f in found:
        if f.type == "unknown":
            lines.append(f"{smd_path(applied, f.field_path)}: field not declared in schema")
        elif f.type == "type":
            lines.append(
                f"{smd_path(applied, f.path)}: expected {_expected(f.message)}, got {_json_type(f.value)}"
            )
    if not lines:
        return None
    where = f"{namespace}/{name}" if namespace else f"/{name}"
    gvk = f"{kind.api_version}, Kind={kind.kind}" if kind.group else f"/{kind.version}, Kind={kind.kind}"
    text = lines[0] if len(lines) == 1 else "errors:\n  " + "\n  ".join(lines)
    return errors.internal(f"failed to create typed patch object ({where}; {gvk}): {text}")


def field_errors(found: list[Finding]) -> list[FieldError]:
    """Schema findings that are validation errors (422), worded like the API server's."""
    out = []
    for f in found:
        path = field_path(f.field_path)
        if f.type == "required":
            out.append(errors.field_required(path))
        elif f.type == "enum":
            out.append(errors.field_not_supported(path, f.value, [str(o) for o in f.options]))
        elif f.type == "other":
            out.append(errors.field_invalid(path, f.value, f"{path} in body {f.message}"))
        elif f.type == "type":
            out.append(
                errors.FieldError(
                    "FieldValueTypeInvalid",
                    path,
                    f"Invalid value: {json.dumps(f.value)}: {path} in body must be of type {_expected(f.message)}",
                )
            )
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _go_value(f: Finding) -> str:
    """How encoding/json's UnmarshalTypeError names a value: with its literal when a number does not
    parse as the integer field (literalStore), else just its JSON type."""
    if _expected(f.message) in _INT_RANGES:
        return f"number {f.value!r}"
    return _json_type(f.value)


def _expected(message: str) -> str:
    m = re.search(r"is not of types? (.*)$", message)
    if not m:
        return "the schema's type"
    types = [t.strip('" ') for t in m.group(1).split(",") if t.strip('" ') != "null"]
    return " or ".join(types) or "null"


# ---------------------------------------------------------------- CRD structural schemas


def crd_json_schema(structural: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD's ``openAPIV3Schema`` as a JSON schema that refuses what structural pruning would drop."""
    root = _convert(structural)
    props = root.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    # ObjectMeta is validated by the metadata rules, not by the CRD's schema.
    props["metadata"] = {"type": "object"}
    root["type"] = "object"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}


_PASSTHROUGH = (
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
    "default",  # an annotation for the validator; crd_defaults applies it
)


def _convert(s: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    if s.get("x-kubernetes-int-or-string"):
        types = ["integer", "string"]
    elif s.get("type"):
        types = [s["type"]]
    else:
        types = []
    if types and s.get("nullable"):
        types.append("null")
    if types:
        out["type"] = types if len(types) > 1 else types[0]
    for key in _PASSTHROUGH:
        if key in s:
            out[key] = clone(s[key])
    if "minimum" in s:
        out["exclusiveMinimum" if s.get("exclusiveMinimum") is True else "minimum"] = s["minimum"]
    if "maximum" in s:
        out["exclusiveMaximum" if s.get("exclusiveMaximum") is True else "maximum"] = s["maximum"]
    if "properties" in s:
        out["properties"] = {k: _convert(v) for k, v in s["properties"].items()}
    if "additionalProperties" in s:
        ap = s["additionalProperties"]
        out["additionalProperties"] = _convert(ap) if isinstance(ap, Mapping) else bool(ap)
    elif s.get("type") == "object" and not preserve and not s.get("x-kubernetes-embedded-resource"):
        # Structural pruning: fields the schema does not declare are dropped by the API server.
        out["additionalProperties"] = False
    if s.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "items" in s and isinstance(s["items"], Mapping):
        out["items"] = _convert(s["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            # Value validations only (structural schemas forbid types/properties here).
            out[key] = [_value_only(x) for x in s[key]]
    if "not" in s:
        out["not"] = _value_only(s["not"])
    return out


def _value_only(s: Mapping[str, Any]) -> dict[str, Any]:
    converted = _convert(s)
    converted.pop("additionalProperties", None)
    return converted


def crd_defaults(structural: Mapping[str, Any], obj: Any) -> Any:
    """Apply ``default`` values of a (converted) CRD schema (CustomResourceDefaulting, GA since 1.17)."""
    if not isinstance(obj, dict):
        return obj
    for name, sub in (structural.get("properties") or {}).items():
        if name not in obj and "default" in sub:
            obj[name] = clone(sub["default"])
        if name in obj:
            if isinstance(obj[name], dict):
                crd_defaults(sub, obj[name])
            elif isinstance(obj[name], list) and isinstance(sub.get("items"), Mapping):
                for item in obj[name]:
                    crd_defaults(sub["items"], item)
    ap = structural.get("additionalProperties")
    if isinstance(ap, Mapping):
        for value in obj.values():
            crd_defaults(ap, value)
    return obj


# ---------------------------------------------------------------- nulls, as the typed JSON decoder sees them
# encoding/json: null into a pointer, map or slice leaves it nil (omitted again on output); null into
# anything else leaves the zero value. So ``"default": null`` disappears, a null list item becomes the
# item type's zero value (``rules: [null]`` is one empty PolicyRule, which validation then refuses)
# and a null map value becomes the zero value (``hard: {pods: null}`` is ``"0"``). The schemas accept
# null everywhere, so without this pass every null would reach the validators.


@functools.cache
def _defs() -> dict[str, Any]:
    return kvu.schema_contents(f"{_FOLDER}/_definitions.json", KUBE_VERSION)["$defs"]  # type: ignore[no-any-return]


@functools.cache
def _kind_schema(api_version: str, kind: str) -> dict[str, Any]:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return kvu.schema_contents(f"{_FOLDER}/{kind.lower()}-{api}.json", KUBE_VERSION)  # type: ignore[no-any-return]


_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def _resolve(s: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    name = ""
    while "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[1]
        s = _defs().get(name, {})
    return s, name


def _zero(s: Mapping[str, Any]) -> Any:
    s, name = _resolve(s)
    if name == _QUANTITY:
        return "0"
    if name == _INT_OR_STRING:
        return 0
    types = s.get("type") or []
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    first = types[0] if types else ("object" if "properties" in s else None)
    return {"object": {}, "string": "", "integer": 0, "number": 0, "boolean": False}.get(first or "")


def _has_null(obj: Any) -> bool:
    return b"null" in _ENCODER.encode(obj)


_ENCODER = msgspec.json.Encoder()


def normalize_nulls(kind: Kind, obj: dict[str, Any]) -> None:
    """Apply the typed decoder's null semantics in place (custom resources: nulls are pruned, and
    malformed metadata fields dropped as the CRD handler's ``GetObjectMeta(dropMalformedFields)``)."""
    if kind.crd_schema is not None:
        _coerce_custom_metadata(obj)
        if _has_null(obj):
            _drop_nulls(obj)
        return
    if _has_null(obj):
        _walk_nulls(obj, _kind_schema(kind.api_version, kind.kind))


_META_STRINGS = (
    "name",
    "generateName",
    "namespace",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
)


def _coerce_custom_metadata(obj: dict[str, Any]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    for f in _META_STRINGS:
        if f in meta and not isinstance(meta[f], str):
            del meta[f]
    for f in ("labels", "annotations"):
        if f in meta and not (
            isinstance(meta[f], dict) and all(isinstance(v, str) for v in meta[f].values())
        ):
            del meta[f]
    if "finalizers" in meta and not (
        isinstance(meta["finalizers"], list) and all(isinstance(v, str) for v in meta["finalizers"])
    ):
        del meta["finalizers"]
    if "ownerReferences" in meta and not (
        isinstance(meta["ownerReferences"], list)
        and all(isinstance(r, dict) for r in meta["ownerReferences"])
    ):
        del meta["ownerReferences"]
    for f in ("generation", "deletionGracePeriodSeconds"):
        if f in meta and (isinstance(meta[f], bool) or not isinstance(meta[f], int)):
            del meta[f]


def _drop_nulls(node: Any) -> None:
    if isinstance(node, dict):
        for k in [k for k, v in node.items() if v is None]:
            del node[k]
        for v in node.values():
            _drop_nulls(v)
    elif isinstance(node, list):
        for v in node:
            _drop_nulls(v)


def _walk_nulls(node: Any, s: Mapping[str, Any]) -> None:
    s, _ = _resolve(s)
    if isinstance(node, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for k in list(node):
            v = node[k]
            if k in props:
                if v is None:
                    del node[k]
                else:
                    _walk_nulls(v, props[k])
            elif isinstance(extra, Mapping):
                if v is None:
                    zero = _zero(extra)
                    if zero is None:
                        del node[k]
                    else:
                        node[k] = zero
                else:
                    _walk_nulls(v, extra)
            elif v is None:
                del node[k]  # an unknown field: pruned anyway
    elif isinstance(node, list):
        items = s.get("items")
        if not isinstance(items, Mapping):
            return
        for i, v in enumerate(node):
            if v is None:
                zero = _zero(items)
                if zero is not None:
                    node[i] = zero
            else:
                _walk_nulls(v, items)
