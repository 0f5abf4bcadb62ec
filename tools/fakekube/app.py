"""The HTTP shell: authentication, authorisation, Kubernetes REST paths, discovery, subresources.

A request goes through the API server's filter chain in the API server's order: authentication
(bearer token, else 401), authorisation (RBAC on the request attributes, else 403 with the real
message), then the handler (404 for unserved kinds, the store's pipeline for everything else).
``/_fake/...`` admin routes let a trial drive the fake with curl.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import yaml
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tools.fakekube import auth, errors, ssa
from tools.fakekube.auth import Attributes, Authorizer, Tokens, UserInfo
from tools.fakekube.controller import FakeController
from tools.fakekube.kinds import Kind
from tools.fakekube.kubelet import PodState
from tools.fakekube.observe import DROP, Fault, Faults, RequestLog, RequestRecord, Verb
from tools.fakekube.schema import KUBE_VERSION
from tools.fakekube.selectors import (
    FieldRequirement,
    Requirement,
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from tools.fakekube.store import PatchType, Store, WatchEvent, WriteOptions, WriteResult, gr

VERSION_INFO = {
    "major": "1",
    "minor": KUBE_VERSION.split(".")[1],
    "gitVersion": f"v{KUBE_VERSION}",
    "gitCommit": "fakekube",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}
_APPLY = ("application/apply-patch+yaml", "application/apply-patch+json")
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


@dataclass
class Context:
    store: Store
    log: RequestLog
    faults: Faults
    controller: FakeController
    tokens: Tokens
    authorizer: Authorizer
    max_watch_seconds: float


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


class ConnectionDropped(Exception):
    """Raised mid-response on purpose: uvicorn then closes the socket without finishing the body."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> Response:
    # Exactly "application/json": lightkube only turns error bodies into ApiError for that content type.
    raw = body if isinstance(body, bytes) else _ENCODER.encode(body)
    resp = Response(raw, status_code=status, media_type="application/json")
    for w in warnings or ():
        resp.headers.append("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def status_response(err: errors.ApiStatusError, retry_after: int | None = None) -> Response:
    resp = json_response(err.status(), err.code)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def parse_target(ctx: Context, attrs: Attributes) -> Target:
    """The served kind of a resource request, or 404 (after authorisation, like the API server)."""
    kind = ctx.store.registry.by_url(attrs.api_group, attrs.api_version, attrs.resource)
    if kind is None:
        raise errors.unknown_resource()
    parts = [p for p in attrs.path.split("/") if p]
    # Reject trailing garbage: /namespaces/x/pods/name/sub/extra.
    base = 3 if parts[0] == "apis" else 2
    expected = (
        base
        + (2 if attrs.namespace and kind.namespaced else 0)
        + 1
        + (1 if attrs.name else 0)
        + (1 if attrs.subresource else 0)
    )
    if len(parts) != expected:
        raise errors.unknown_resource()
    if kind.namespaced and not attrs.namespace and attrs.name:
        raise errors.unknown_resource()
    if not kind.namespaced and kind.plural != "namespaces" and attrs.namespace:
        raise errors.unknown_resource()
    namespace = attrs.namespace if kind.namespaced else None
    if kind.plural == "namespaces" and not kind.group:
        namespace = None
    return Target(kind, namespace or None, attrs.name or None, attrs.subresource or None)


def classify(method: str, target: Target | None, query: MutableMapping[str, str], content_type: str) -> Verb:
    if target is None:
        return "other"
    if method == "GET":
        if target.name is not None:
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    if method == "POST" and (target.name is None or target.subresource == "token"):
        return "create"
    if method == "PUT" and target.name is not None:
        return "update"
    if method == "PATCH" and target.name is not None:
        return "apply" if content_type.startswith(_APPLY) else "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    return "other"


async def read_body(request: Request, content_type: str) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.bad_request("the request body is empty")
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        if content_type.startswith("application/apply-patch+yaml"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise errors.bad_request(f"error decoding YAML: {e}") from e
        raise errors.bad_request("the request body is not valid JSON") from None


def _typed_body(body: Any) -> dict[str, Any]:
    """What the version/kind sniffer accepts for a POST/PUT: an object (``null`` decodes as empty)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else "string" if isinstance(body, str) else "number"
        if isinstance(body, bool):
            kind = "bool"
        raise errors.bad_request(
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind} into Go value of type "
            'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'
        )
    return body


def _selectors(
    kind: Kind, query: MutableMapping[str, str]
) -> tuple[tuple[Requirement, ...], tuple[FieldRequirement, ...]]:
    try:
        return (
            parse_label_selector(query.get("labelSelector")),
            parse_field_selector(query.get("fieldSelector"), kind.field_selectors),
        )
    except SelectorError as e:
        raise errors.bad_request(str(e)) from e


def _list_options(ctx: Context, query: MutableMapping[str, str], *, watch: bool) -> int | None:
    """ListOptions as the API server checks them; returns the requested resourceVersion (None: any).

    Conversion (a parameter that does not parse is a 400), then ValidateListOptions /
    validateWatchOptions (apimachinery/pkg/apis/meta/internalversion/validation/validation.go, a 422),
    then the watch cache: a resourceVersion newer than the store's is "Too large resource version"
    (504 with a ResourceVersionTooLarge cause, storage/errors.go NewTooLargeResourceVersionError) once
    the cache gave up waiting for it — the fake never gets there, so it answers at once.
    """
    for param in ("limit", "timeoutSeconds"):
        value = query.get(param)
        if value not in (None, ""):
            try:
                int(value)
            except ValueError:
                raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
    rv_text = query.get("resourceVersion") or ""
    try:
        rv = int(rv_text) if rv_text else None
        if rv is not None and rv < 0:
            raise ValueError(rv_text)
    except ValueError:
        raise errors.bad_request(
            f'invalid resource version: strconv.ParseUint: parsing "{rv_text}": invalid syntax'
        ) from None
    match = query.get("resourceVersionMatch") or ""
    initial = query.get("sendInitialEvents")
    errs: list[errors.FieldError] = []
    if watch:
        if initial not in (None, "") and match != "NotOlderThan":
            errs.append(
                errors.field_forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if match:
            if initial in (None, ""):
                errs.append(
                    errors.field_forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    )
                )
            if match != "NotOlderThan":
                errs.append(errors.field_not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
            if query.get("continue"):
                errs.append(
                    errors.field_forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                    )
                )
    else:
        if match:
            if not rv_text:
                errs.append(
                    errors.field_forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )
                )
            if query.get("continue"):
                errs.append(
                    errors.field_forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                    )
                )
            if match not in ("Exact", "NotOlderThan"):
                errs.append(
                    errors.field_not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan", ""])
                )
            if match == "Exact" and rv_text == "0":
                errs.append(
                    errors.field_forbidden(
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                )
        if initial not in (None, ""):
            errs.append(
                errors.field_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")
            )
    if errs:
        raise errors.invalid_options("ListOptions", errs)
    current = ctx.store.current_rv
    if rv is not None and rv > current:
        raise errors.ApiStatusError(
            504,
            "Timeout",
            f"Too large resource version: {rv}, current: {current}",
            causes=[{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            retry_after=1,
        )
    if not watch and match == "Exact" and rv is not None and rv != current:
        # The fake keeps no snapshots: an exact list at an older revision is answered as if that
        # revision were compacted (a real 410 a client must handle), never with newer data.
        raise errors.ApiStatusError(410, "Expired", "The resourceVersion for the provided list is too old.")
    return None if rv in (None, 0) else rv


_MEDIA_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_NOT_ACCEPTABLE = errors.ApiStatusError(
    406, "NotAcceptable", "only the following media types are accepted: " + ", ".join(_MEDIA_TYPES)
)


def negotiate(accept: str | None, verb: str) -> bool:
    """The answer's form from the Accept header, as the apiserver's negotiation decides it: False
    for the whole objects, True for a list of `PartialObjectMetadata` (metadata only, what a
    metadata informer asks for with ``application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1``).

    The first media range the server can produce wins; none producible is a 406. Stricter than a
    real server where that does not matter to the listener: only JSON is produced (no YAML or
    protobuf), `as=` is honoured only for a list and only as PartialObjectMetadataList in
    meta.k8s.io/v1 (no Table, no v1beta1, no PartialObjectMetadata for one object or a watch)."""
    if not accept:
        return False
    for media in accept.split(","):
        kind, *params = (part.strip() for part in media.split(";"))
        values = dict(p.partition("=")[::2] for p in params)
        values.pop("q", None)
        if kind.lower() not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in values:
            return False
        if (
            verb == "list"
            and values.get("as") == "PartialObjectMetadataList"
            and values.get("g") == "meta.k8s.io"
            and values.get("v") == "v1"
        ):
            return True
    raise _NOT_ACCEPTABLE


def _list(
    ctx: Context, target: Target, query: MutableMapping[str, str], *, metadata_only: bool = False
) -> Response:
    kind = target.kind
    labels, fields = _selectors(kind, query)
    _list_options(ctx, query, watch=False)
    items, rv = ctx.store.list_stored(kind, target.namespace, labels, fields)
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    start = 0
    if query.get("continue"):
        try:
            token = msgspec.json.decode(base64.urlsafe_b64decode(query["continue"]))
            start, rv = int(token["offset"]), int(token["rv"])
        except (ValueError, KeyError, TypeError, msgspec.DecodeError) as e:
            raise errors.bad_request("invalid continue token") from e
        meta["resourceVersion"] = str(rv)
    limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else None
    if limit is not None:
        end = start + limit
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(_ENCODER.encode({"offset": end, "rv": rv})).decode()
            meta["remainingItemCount"] = len(items) - end
        items = items[start:end]
    else:
        items = items[start:]
    if metadata_only:
        head = _ENCODER.encode(
            {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        )
        return json_response(head[:-1] + b',"items":[' + b",".join(s.metadata_json() for s in items) + b"]}")
    head = _ENCODER.encode({"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta})
    body = head[:-1] + b',"items":[' + b",".join(s.json() for s in items) + b"]}"
    return json_response(body)


def _watch(ctx: Context, target: Target, query: MutableMapping[str, str]) -> Response:
    kind, ns = target.kind, target.namespace
    labels, fields = _selectors(kind, query)
    since = _list_options(ctx, query, watch=True)
    timeout = min(float(query.get("timeoutSeconds") or ctx.max_watch_seconds), ctx.max_watch_seconds)
    initial_events = query.get("sendInitialEvents")
    bookmarks = query.get("allowWatchBookmarks", "").lower() not in ("", "false", "0")
    if initial_events not in (None, ""):
        # WatchList (KEP-3157): the current state as ADDED events ("not older than" the resourceVersion),
        # or nothing, then only changes; the end of the initial events is a bookmark with
        # metav1.InitialEventsAnnotationKey when the client allows bookmarks.
        since = None if initial_events.lower() not in ("false", "0") else (since or ctx.store.current_rv)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
    key = gr(kind)

    def deliver(event: WatchEvent | None) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is already gone
            loop.call_soon_threadsafe(queue.put_nowait, event)

    try:
        replay, unsubscribe = ctx.store.subscribe(kind, ns, since, deliver)
    except errors.ApiStatusError as e:
        # Like the API server: an expired resourceVersion is a 200 stream carrying one ERROR event.
        line = _ENCODER.encode({"type": "ERROR", "object": e.status()}) + b"\n"
        return StreamingResponse(iter([line]), media_type="application/json")

    def render(event: WatchEvent) -> bytes | None:
        if event.gr != key or (ns is not None and event.namespace != ns):
            return None
        body = event.stored.body
        now_ = labels_match(labels, body["metadata"].get("labels")) and fields_match(fields, body)
        before = event.old is not None and (
            labels_match(labels, event.old["metadata"].get("labels")) and fields_match(fields, event.old)
        )
        type_: str = event.type
        if event.type == "MODIFIED" and now_ != before:
            type_ = "ADDED" if now_ else "DELETED"
        elif not now_ and not (event.type == "DELETED" and before):
            return None
        return b'{"type":"' + type_.encode() + b'","object":' + event.stored.json() + b"}\n"

    def bookmark(annotations: dict[str, str] | None = None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(ctx.store.current_rv)}
        if annotations:
            meta["annotations"] = annotations
        obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}
        return _ENCODER.encode({"type": "BOOKMARK", "object": obj}) + b"\n"

    async def stream() -> AsyncIterator[bytes]:
        try:
            for event in replay:
                if (line := render(event)) is not None:
                    yield line
            if (
                bookmarks
                and initial_events not in (None, "")
                and initial_events.lower() not in ("false", "0")
            ):
                yield bookmark({"k8s.io/initial-events-end": "true"})
            elif bookmarks:
                # A real watch cache sends bookmarks on its own schedule (about every minute and just
                # before the timeout); one at the start makes every client that asks for them handle them.
                yield bookmark()
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:
                    break
                if (line := render(event)) is not None:
                    yield line
        finally:
            unsubscribe()

    return StreamingResponse(stream(), media_type="application/json")


def _write_options(
    request: Request, query: MutableMapping[str, str], user: UserInfo, target: Target, verb: str
) -> WriteOptions:
    dry_run = query.get("dryRun")
    if dry_run not in (None, "", "All"):
        raise errors.ApiStatusError(
            422, "Invalid", f'Unsupported value: "{dry_run}": supported values: "All"'
        )
    validation = query.get("fieldValidation") or "Warn"
    if validation not in ("Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{validation}": supported values: "Ignore", "Strict", "Warn"'
        )
    if verb == "patch" and "force" in query:
        err = errors.field_forbidden("force", "may not be specified for non-apply patch")
        raise errors.ApiStatusError(
            422,
            "Invalid",
            f'PatchOptions.meta.k8s.io "" is invalid: {err}',
            causes=[{"reason": err.type, "message": err.body, "field": err.field}],
        )
    given = query.get("fieldManager") or ""
    # ValidateFieldManager (apimachinery/pkg/apis/meta/v1/validation/validation.go), run by
    # ValidateCreateOptions/ValidateUpdateOptions/ValidatePatchOptions: at most 128 bytes, printable.
    errs = []
    if len(given.encode()) > 128:
        errs.append(errors.field_too_long("fieldManager", 128))
    errs += [
        errors.field_invalid("fieldManager", given, f"invalid character U+{ord(ch):04X} (at position {i})")
        for i, ch in enumerate(given)
        if not ch.isprintable()
    ]
    if errs and verb in ("create", "update", "patch", "apply"):
        what = {"create": "CreateOptions", "update": "UpdateOptions"}.get(verb, "PatchOptions")
        raise errors.invalid_options(what, errs)
    agent = request.headers.get("user-agent", "unknown").split("/")[0]
    manager = query.get("fieldManager") if verb == "apply" else (query.get("fieldManager") or agent)
    return WriteOptions(
        manager=manager or "",
        user=user,
        dry_run=dry_run == "All",
        field_validation=validation,  # type: ignore[arg-type]
        subresource=target.subresource,
        force=query.get("force") in ("true", "1"),
    )


def _object_response(result: WriteResult, status: int, opts: WriteOptions) -> Response:
    return json_response(result.stored.json(), status, opts.warnings)


async def _dispatch(ctx: Context, request: Request, target: Target, verb: str, query: MutableMapping[str, str],
                    content_type: str, attrs: Attributes) -> Response:  # fmt: skip
    store, kind, ns, name, sub = ctx.store, target.kind, target.namespace, target.name, target.subresource
    if sub is not None and not (
        (sub == "status" and kind.status)
        or (sub == "scale" and kind.scale)
        or (sub == "token" and kind.kind == "ServiceAccount" and not kind.group)
    ):
        raise errors.unknown_resource()
    if kind.virtual:
        if verb != "create":
            raise errors.ApiStatusError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        return _review(ctx, kind, await read_body(request, content_type), attrs.user)
    if sub == "scale":
        return await _scale(ctx, request, target, verb, query, content_type, attrs)
    if sub == "token":
        return await _token_request(ctx, request, target)
    if (
        verb in ("create", "update", "patch", "apply", "delete", "deletecollection")
        and kind.verbs
        and verb.replace("apply", "patch") not in kind.verbs
    ):
        raise errors.ApiStatusError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )
    if verb in ("get", "list", "watch"):
        as_metadata = negotiate(request.headers.get("accept"), verb)
    if verb == "get":
        found = store.stored(kind, ns, name or "")
        if found is None:
            raise errors.not_found(kind, name or "")
        return json_response(found.json())
    if verb == "list":
        return _list(ctx, target, query, metadata_only=as_metadata)
    if verb == "watch":
        return _watch(ctx, target, query)
    opts = _write_options(request, query, attrs.user, target, verb)
    if verb == "create":
        body = _typed_body(await read_body(request, content_type))
        return _object_response(store.create(kind, ns, body, opts), 201, opts)
    if verb == "update":
        body = _typed_body(await read_body(request, content_type))
        return _object_response(store.replace(kind, ns, name or "", body, opts), 200, opts)
    if verb == "apply":
        body = await read_body(request, content_type)
        if not isinstance(body, dict):
            raise errors.bad_request("error decoding YAML: the applied configuration must be an object")

        def authorize_create() -> None:
            # patch.go: an apply that creates the object is also authorised as "create".
            create_attrs = Attributes(
                attrs.user,
                "create",
                True,
                attrs.path,
                attrs.api_group,
                attrs.api_version,
                attrs.resource,
                attrs.subresource,
                attrs.namespace,
                attrs.name,
            )
            allowed, reason = ctx.authorizer.authorize(create_attrs)
            if not allowed:
                raise errors.forbidden(kind, name, reason)

        opts.authorize_create = authorize_create
        result = store.apply(kind, ns, name or "", body, opts)
        return _object_response(result, 201 if result.created else 200, opts)
    if verb == "patch":
        patch_type = _PATCH_TYPES.get(content_type.split(";")[0].strip())
        if patch_type is None:
            return status_response(
                errors.ApiStatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
                    "application/strategic-merge-patch+json",
                )
            )
        if patch_type == "strategic" and kind.is_custom:
            return status_response(
                errors.ApiStatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            )
        body = await read_body(request, content_type)
        return _object_response(store.patch(kind, ns, name or "", body, patch_type, opts), 200, opts)
    if verb in ("delete", "deletecollection"):
        options = _delete_options(await request.body(), query)
        propagation = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        opts.dry_run = options.get("dryRun") == ["All"]
        grace = options.get("gracePeriodSeconds")
        if verb == "deletecollection":
            labels, fields = _selectors(kind, query)
            items = store.delete_collection(kind, ns, labels, fields, propagation=propagation, opts=opts)
            head = _ENCODER.encode(
                {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": {}}
            )
            return json_response(head[:-1] + b',"items":[' + b",".join(s.json() for s in items) + b"]}")
        pre = options.get("preconditions") or {}
        result = store.delete(
            kind,
            ns,
            name or "",
            propagation=propagation,
            precondition_rv=pre.get("resourceVersion"),
            precondition_uid=pre.get("uid"),
            grace_period=int(grace) if grace not in (None, "") else None,
            opts=opts,
        )
        if result.deleted and kind.kind != "Pod":
            meta = result.stored.body["metadata"]
            return json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": meta["name"],
                        **({"group": kind.group} if kind.group else {}),
                        "kind": kind.plural,
                        "uid": meta["uid"],
                    },
                }
            )
        return json_response(result.stored.json())
    raise errors.ApiStatusError(
        405, "MethodNotAllowed", f"{request.method} is not supported on {request.url.path}"
    )


_DELETE_OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "gracePeriodSeconds": int,
    "propagationPolicy": str,
    "orphanDependents": bool,
    "dryRun": list,
    "preconditions": dict,
    "ignoreStoreReadErrorWithClusterBreakingPotential": bool,
}


def _delete_options(raw: bytes, query: MutableMapping[str, str]) -> dict[str, Any]:
    """DeleteOptions as handlers/delete.go reads them: from the body when there is one (the query is
    then ignored; a body that does not decode is the handler's bare 500), else from the query (a
    parameter that does not convert is a 400); then ValidateDeleteOptions
    (apimachinery/pkg/apis/meta/v1/validation/validation.go) makes a 422."""
    options: dict[str, Any] = {}
    if raw:
        try:
            options = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            raise errors.internal(f"couldn't get version/kind; json parse error: {e}") from e
        if not isinstance(options, dict):
            raise errors.internal(
                "couldn't get version/kind; json parse error: DeleteOptions must be an object"
            )
        for key, want in _DELETE_OPTION_TYPES.items():
            value = options.get(key)
            if value is not None and (
                not isinstance(value, want) or (want is int and isinstance(value, bool))
            ):
                raise errors.internal(
                    f"json: cannot unmarshal {type(value).__name__} into Go struct field DeleteOptions.{key}"
                )
    else:
        if query.get("gracePeriodSeconds") not in (None, ""):
            try:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request(
                    f'strconv.ParseInt: parsing "{query["gracePeriodSeconds"]}": invalid syntax'
                ) from None
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("orphanDependents") not in (None, ""):
            # runtime.Convert_Slice_string_To_bool: only "false"/"0" are false.
            options["orphanDependents"] = query["orphanDependents"].lower() not in ("false", "0")
        if query.get("dryRun") not in (None, ""):
            options["dryRun"] = [query["dryRun"]]
    errs = []
    if options.get("orphanDependents") is not None and options.get("propagationPolicy") is not None:
        errs.append(
            errors.field_invalid(
                "propagationPolicy",
                options["propagationPolicy"],
                "orphanDependents and deletionPropagation cannot be both set",
            )
        )
    if options.get("propagationPolicy") not in (None, "Foreground", "Background", "Orphan"):
        errs.append(
            errors.field_not_supported(
                "propagationPolicy",
                options["propagationPolicy"],
                ["Foreground", "Background", "Orphan", "nil"],
            )
        )
    for value in options.get("dryRun") or []:
        if value != "All":
            errs.append(errors.field_not_supported("dryRun", value, ["All"]))
    if errs:
        raise errors.invalid_options("DeleteOptions", errs)
    return options


def _scale_object(kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    spec_path, status_path, selector_path = kind.scale_paths or (".spec.replicas", ".status.replicas", None)

    def lookup(path: str | None) -> Any:
        node: Any = body
        for part in (path or "").strip(".").split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    if kind.scale_paths is None:
        selector = (body.get("spec") or {}).get("selector") or {}
        selector_text = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
    else:
        selector_text = lookup(selector_path) if selector_path else None
    status: dict[str, Any] = {"replicas": lookup(status_path) or 0}
    if selector_text:
        status["selector"] = selector_text
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": lookup(spec_path) or 0},
        "status": status,
    }


async def _scale(ctx: Context, request: Request, target: Target, verb: str, query: MutableMapping[str, str],
                 content_type: str, attrs: Attributes) -> Response:  # fmt: skip
    store, kind, ns, name = ctx.store, target.kind, target.namespace, target.name or ""
    current = store.stored(kind, ns, name)
    if current is None:
        raise errors.not_found(kind, name)
    scale = _scale_object(kind, current.body)
    if verb == "get":
        return json_response(scale)
    opts = _write_options(request, query, attrs.user, target, verb)
    body = await read_body(request, content_type)
    if verb == "update":
        new_scale = body
    elif verb in ("patch", "apply"):
        patch_type = (
            "merge" if verb == "apply" else _PATCH_TYPES.get(content_type.split(";")[0].strip(), "merge")
        )
        new_scale = ssa.json_patch(scale, body) if patch_type == "json" else ssa.json_merge_patch(scale, body)
    else:
        raise errors.ApiStatusError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )
    if not isinstance(new_scale, dict):
        raise errors.bad_request("the Scale must be an object")
    want_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
    if verb == "update" and want_rv and want_rv != current.body["metadata"]["resourceVersion"]:
        raise errors.stale(kind, name)
    replicas = (new_scale.get("spec") or {}).get("replicas")
    if isinstance(replicas, bool | str | float) or (
        isinstance(replicas, int) and not 0 - 2**31 <= replicas < 2**31
    ):
        # autoscaling/v1 ScaleSpec.Replicas is an int32, decoded by encoding/json (literalStore).
        shown = (
            f"number {replicas!r}"
            if isinstance(replicas, int | float) and not isinstance(replicas, bool)
            else ("bool" if isinstance(replicas, bool) else "string")
        )
        raise errors.bad_request(
            'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
            f"{shown} into Go struct field ScaleSpec.spec.replicas of type int32"
        )
    if not isinstance(replicas, int) or replicas < 0:
        err = errors.field_invalid("spec.replicas", replicas, "must be greater than or equal to 0")
        raise errors.ApiStatusError(
            422,
            "Invalid",
            f'Scale.autoscaling "{name}" is invalid: {err}',
            causes=[{"reason": err.type, "message": err.body, "field": err.field}],
        )
    spec_path = (kind.scale_paths or (".spec.replicas",))[0].strip(".").split(".")
    new = msgspec.json.decode(current.json())
    new["metadata"].pop("managedFields", None)
    node = new
    for part in spec_path[:-1]:
        node = node.setdefault(part, {})
    node[spec_path[-1]] = replicas
    opts.subresource = "scale"
    result = store.replace(kind, ns, name, new, opts)
    return json_response(_scale_object(kind, result.stored.body), 200, opts.warnings)


async def _token_request(ctx: Context, request: Request, target: Target) -> Response:
    """TokenRequest: a token for an existing ServiceAccount (serviceaccounts/token)."""
    ns, name = target.namespace or "", target.name or ""
    sa = ctx.store.find(target.kind, ns, name)
    if sa is None:
        raise errors.not_found(target.kind, name)
    raw = await request.body()
    body = msgspec.json.decode(raw) if raw else {}
    spec = (body or {}).get("spec") or {}
    seconds = int(spec.get("expirationSeconds") or 3600)
    if seconds < 600:
        err = errors.field_invalid(
            "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
        )
        raise errors.ApiStatusError(
            422, "Invalid", f'TokenRequest.authentication.k8s.io "{name}" is invalid: {err}'
        )
    token = ctx.tokens.add_service_account(ns, name, sa["metadata"]["uid"])
    expires = (datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return json_response(
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
            "spec": {
                "audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"],
                "expirationSeconds": seconds,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": expires},
        },
        201,
    )


def _review(ctx: Context, kind: Kind, body: Any, requester: UserInfo) -> Response:
    """SelfSubjectAccessReview / SubjectAccessReview: ask the same authorizer."""
    spec = (body or {}).get("spec") or {}
    if kind.plural == "subjectaccessreviews":
        user = UserInfo(spec.get("user") or "", tuple(spec.get("groups") or ()))
    else:
        user = requester
    res = spec.get("resourceAttributes")
    if res is not None:
        attrs = Attributes(
            user,
            res.get("verb", ""),
            True,
            "",
            res.get("group", ""),
            res.get("version", ""),
            res.get("resource", ""),
            res.get("subresource", ""),
            res.get("namespace", ""),
            res.get("name", ""),
        )
    else:
        non = spec.get("nonResourceAttributes") or {}
        attrs = Attributes(user, non.get("verb", ""), False, non.get("path", ""))
    allowed, reason = ctx.authorizer.authorize(attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return json_response(
        {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        },
        201,
    )


class _Drop:
    """An ASGI response that starts a body it never finishes."""

    status_code = None

    async def __call__(self, _scope: Any, _receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"kind":', "more_body": True})
        raise ConnectionDropped("fault injected: connection dropped")


def _fault_response(fault: Fault) -> Response | _Drop:
    if fault.response == DROP:
        return _Drop()
    code = int(fault.response)
    reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(
        code, "InternalError"
    )
    err = errors.ApiStatusError(code, reason, f"fault injected ({code})")
    return status_response(err, fault.retry_after)


def _discovery(ctx: Context, path: str) -> Response | None:
    registry = ctx.store.registry
    segs = [s for s in path.split("/") if s]
    if segs in (["version"],):
        return json_response(VERSION_INFO)
    if segs in (["healthz"], ["livez"], ["readyz"]):
        return Response(b"ok", media_type="text/plain")
    if segs == ["api"]:
        return json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            }
        )
    groups = registry.group_versions()
    if segs == ["apis"]:
        return json_response(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group(g, vs) for g, vs in groups.items() if g],
            }
        )
    if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
        return json_response(_group(segs[1], groups[segs[1]]))
    if segs == ["api", "v1"] or (len(segs) == 3 and segs[0] == "apis"):
        group, version = ("", "v1") if segs[0] == "api" else (segs[1], segs[2])
        kinds = registry.in_group_version(group, version)
        if not kinds:
            return None
        resources: list[dict[str, Any]] = []
        for k in kinds:
            entry: dict[str, Any] = {
                "name": k.plural,
                "singularName": k.singular,
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": list(k.verbs),
            }
            if k.short_names:
                entry["shortNames"] = list(k.short_names)
            resources.append(entry)
            if k.status:
                resources.append(
                    {
                        "name": f"{k.plural}/status",
                        "singularName": "",
                        "namespaced": k.namespaced,
                        "kind": k.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if k.scale:
                resources.append(
                    {
                        "name": f"{k.plural}/scale",
                        "singularName": "",
                        "namespaced": k.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if k.kind == "ServiceAccount" and not k.group:
                resources.append(
                    {
                        "name": "serviceaccounts/token",
                        "singularName": "",
                        "namespaced": True,
                        "group": "authentication.k8s.io",
                        "version": "v1",
                        "kind": "TokenRequest",
                        "verbs": ["create"],
                    }
                )
        return json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        )
    return None


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": entries,
        "preferredVersion": entries[0],
    }


_UNAUTHORIZED = errors.ApiStatusError(401, "Unauthorized", "Unauthorized")


def _forbidden(attrs: Attributes, reason: str) -> errors.ApiStatusError:
    """responsewriters.Forbidden: NewForbidden over the request's group/resource, served or not."""
    why = auth.forbidden_reason(attrs, reason)
    if not attrs.resource_request:
        return errors.ApiStatusError(403, "Forbidden", f"forbidden: {why}")
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    name = attrs.authz_name  # requestInfo.Name: also set for a list by metadata.name
    message = f'{qualified} "{name}" is forbidden: {why}' if name else f"{qualified} is forbidden: {why}"
    err = errors.ApiStatusError(403, "Forbidden", message, name=name or None)
    err.group_resource = (attrs.api_group, attrs.resource)
    return err


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def authenticate(ctx: Context, header: str | None) -> UserInfo:
    """Bearer tokens; no credentials is ``system:anonymous`` (--anonymous-auth defaults to true),
    an unknown or revoked token is 401 Unauthorized."""
    if not header:
        return ANONYMOUS
    if not header.lower().startswith("bearer "):
        raise _UNAUTHORIZED
    token = header[7:].strip()
    static, sa = ctx.tokens.lookup(token)
    if static is not None:
        return static
    if sa is not None:
        ns, name, uid = sa
        found = ctx.store.find(ctx.store.registry.by_kind("v1", "ServiceAccount"), ns, name)
        if found is not None and found["metadata"]["uid"] == uid:
            return auth.service_account_user(ns, name)
    raise _UNAUTHORIZED


def build_app(ctx: Context) -> ASGIApp:
    async def kube(request: Request) -> Response | _Drop:
        scope = request.scope
        method, path = scope["method"], scope["path"]
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        content_type = request.headers.get("content-type", "")
        ctx.controller.settle()
        target: Target | None = None
        verb: Verb = "other"
        response: Response | _Drop
        fault: Fault | None = None
        user: UserInfo | None = None
        attrs: Attributes | None = None
        try:
            with contextlib.suppress(errors.ApiStatusError):
                user = authenticate(ctx, request.headers.get("authorization"))
            attrs = auth.request_attributes(method, path, query, user or UserInfo("system:anonymous"))
            if attrs.resource_request:
                with contextlib.suppress(errors.ApiStatusError):
                    target = parse_target(ctx, attrs)
            verb = classify(method, target, query, content_type)
            fault = ctx.faults.take(method, path, verb)
            if fault is not None:
                response = _fault_response(fault)
            else:
                if user is None:
                    raise _UNAUTHORIZED
                allowed, reason = ctx.authorizer.authorize(attrs)
                if not allowed:
                    raise _forbidden(attrs, reason)
                if not attrs.resource_request:
                    found = _discovery(ctx, path) if method == "GET" else None
                    response = found or status_response(errors.unknown_resource())
                else:
                    target = parse_target(ctx, attrs)
                    response = await _dispatch(ctx, request, target, verb, query, content_type, attrs)
        except errors.ApiStatusError as e:
            response = status_response(e)
        status = response.status_code if isinstance(response, Response) else None
        ctx.log.add(
            RequestRecord(
                method=method,
                path=path,
                query=query,
                verb=verb,
                kind=target.kind.kind if target else None,
                namespace=target.namespace if target else None,
                name=target.name if target else None,
                subresource=target.subresource if target else None,
                field_manager=query.get("fieldManager"),
                content_type=content_type or None,
                status=status,
                fault=str(fault.response) if fault else None,
                user=user.name if user else None,
                warnings=tuple(_warnings(response)),
            )
        )
        succeeded = status is not None and status < 400
        if (
            succeeded
            and verb in ("create", "update", "patch", "apply", "delete", "deletecollection")
            and isinstance(response, Response)
        ):
            # The controllers react after the response is on its way (and before any later request).
            response.background = BackgroundTask(_settle, ctx.controller)
        return response

    admin = Starlette(routes=admin_routes(ctx))
    methods = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The API itself skips the router (a dozen regex matches per request); ``/_fake`` goes through it.
        if scope["type"] != "http" or scope["path"].startswith("/_fake/"):
            await admin(scope, receive, send)
            return
        if scope["method"] not in methods:
            await PlainTextResponse("Method Not Allowed", status_code=405)(scope, receive, send)
            return
        response = await kube(Request(scope, receive))
        await response(scope, receive, send)

    return app


async def _settle(controller: FakeController) -> None:
    # An async task runs on the server's own loop, after the response is sent (a sync one would run
    # in a worker thread, racing the next request).
    controller.settle()


def _warnings(response: Response | _Drop) -> list[str]:
    if not isinstance(response, Response):
        return []
    return [v for k, v in response.raw_headers if k == b"warning" for v in [v.decode()]]


def admin_routes(ctx: Context) -> list[Route]:
    """``/_fake/...``: the same controls the Python API offers, for trials with kubectl or curl."""

    async def requests_(request: Request) -> Response:
        if request.method == "DELETE":
            ctx.log.clear()
            return json_response({})
        return json_response([r.to_dict() for r in ctx.log.records()])

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            ctx.faults.clear()
            return json_response({})
        body = await request.json()
        ctx.faults.inject(
            body["path"],
            body.get("response", 503),
            times=int(body.get("times", 1)),
            method=body.get("method"),
            verb=body.get("verb"),
            retry_after=body.get("retryAfter"),
        )
        return json_response({"pending": ctx.faults.pending}, 201)

    async def controller(request: Request) -> Response:
        body = await request.json()
        if "auto" in body:
            ctx.controller.auto = bool(body["auto"])
        return json_response({"auto": ctx.controller.auto})

    async def step(_request: Request) -> Response:
        return json_response({"changed": ctx.controller.step()})

    async def stable(_request: Request) -> Response:
        return json_response({"passes": ctx.controller.run_until_stable()})

    async def behaviour(request: Request) -> Response:
        if request.method == "DELETE":
            ctx.controller.clear_pod_behaviours()
            return json_response({})
        body = await request.json()
        ctx.controller.set_pod_behaviour(
            PodState(body["state"]),
            image=body.get("image"),
            namespace=body.get("namespace"),
            workload=body.get("workload"),
            message=body.get("message"),
        )
        return json_response({}, 201)

    async def image_user(request: Request) -> Response:
        body = await request.json()
        ctx.controller.set_image_user(body["image"], body["user"])
        return json_response({}, 201)

    async def deadline(request: Request) -> Response:
        p = request.path_params
        ctx.controller.mark_progress_deadline_exceeded(p["namespace"], p["name"])
        return json_response({})

    async def hold(request: Request) -> Response:
        p = request.path_params
        body = await request.json()
        ctx.controller.hold_rollout(p["namespace"], p["name"], ready=body.get("ready"))
        return json_response({})

    async def end_watches(_request: Request) -> Response:
        ctx.store.end_watches()
        return json_response({})

    return [
        Route("/_fake/requests", requests_, methods=["GET", "DELETE"]),
        Route("/_fake/faults", faults, methods=["POST", "DELETE"]),
        Route("/_fake/controller", controller, methods=["POST"]),
        Route("/_fake/controller/step", step, methods=["POST"]),
        Route("/_fake/controller/run-until-stable", stable, methods=["POST"]),
        Route("/_fake/pod-behaviour", behaviour, methods=["POST", "DELETE"]),
        Route("/_fake/image-user", image_user, methods=["POST"]),
        Route("/_fake/deployments/{namespace}/{name}/progress-deadline-exceeded", deadline, methods=["POST"]),
        Route("/_fake/deployments/{namespace}/{name}/hold", hold, methods=["POST"]),
        Route("/_fake/end-watches", end_watches, methods=["POST"]),
    ]


__all__ = ["Context", "build_app"]
