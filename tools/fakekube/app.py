"""The HTTP shell: Kubernetes REST paths and discovery over the store, plus ``/_fake/...`` admin routes.

Everything interesting lives in the store, the ssa/selectors modules and the controller; this module
parses requests, authorises them like a namespace-scoped Role, logs them, and renders results.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tools.fakekube import errors
from tools.fakekube.controller import FakeController, PodState
from tools.fakekube.kinds import NAMESPACE, Kind
from tools.fakekube.observe import DROP, Fault, Faults, RequestLog, RequestRecord, Verb
from tools.fakekube.selectors import (
    FieldRequirement,
    Requirement,
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from tools.fakekube.store import PatchType, Store, WatchEvent

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-fakekube", "platform": "linux/amd64"}
_PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}
_RBAC_VERB = {"apply": "patch"}


@dataclass
class Context:
    store: Store
    log: RequestLog
    faults: Faults
    controller: FakeController
    # None = unrestricted (cluster-admin); otherwise the namespaces a namespace-scoped Role grants.
    namespaces: frozenset[str] | None
    user: str
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


def json_response(body: Any, status: int = 200) -> Response:
    # Exactly "application/json": lightkube only turns error bodies into ApiError for that content type.
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def status_response(err: errors.ApiStatusError, retry_after: int | None = None) -> Response:
    resp = json_response(err.status(), err.code)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def parse_target(ctx: Context, path: str) -> Target | None:
    """Resource URL -> Target; None for non-resource paths (discovery). Unknown resources raise 404."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 3 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    registry = ctx.store.registry
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = registry.by_url(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    kind = registry.by_url(group, version, rest[0])
    if kind is None or len(rest) > 3:
        raise errors.ApiStatusError(404, "NotFound", "the server could not find the requested resource")
    return Target(kind, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


def classify(method: str, target: Target | None, query: MutableMapping[str, str], content_type: str) -> Verb:
    if target is None:
        return "other"
    if method == "GET":
        if target.name is not None:
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    if method == "POST" and target.name is None:
        return "create"
    if method == "PUT" and target.name is not None:
        return "update"
    if method == "PATCH" and target.name is not None:
        return "apply" if content_type.startswith("application/apply-patch") else "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    return "other"


def authorize(ctx: Context, target: Target, verb: str) -> None:
    allowed = ctx.namespaces
    if allowed is None:
        return
    kind, ns = target.kind, target.namespace
    rbac_verb = _RBAC_VERB.get(verb, verb)
    if kind.namespaced and ns in allowed:
        return
    # A Role in namespace X may grant get on the Namespace object X itself.
    if kind is NAMESPACE and verb == "get" and target.name in allowed:
        return
    subject = f'{kind.resource} "{target.name}"' if target.name else kind.resource
    scope = f'in the namespace "{ns}"' if kind.namespaced and ns else "at the cluster scope"
    raise errors.ApiStatusError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{ctx.user}" cannot {rbac_verb} resource "{kind.plural}" '
        f'in API group "{kind.group}" {scope}',
        kind=kind,
        name=target.name,
    )


async def read_body(request: Request, content_type: str) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.bad_request("the request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        if content_type.startswith("application/apply-patch+yaml"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise errors.bad_request(f"invalid YAML: {e}") from e
        raise errors.bad_request("the request body is not valid JSON") from None


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


def _list(ctx: Context, target: Target, query: MutableMapping[str, str]) -> Response:
    kind = target.kind
    labels, fields = _selectors(kind, query)
    items, rv = ctx.store.list(kind, target.namespace, labels, fields)
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    start = 0
    if query.get("continue"):
        try:
            token = json.loads(base64.urlsafe_b64decode(query["continue"]))
            start, rv = int(token["offset"]), int(token["rv"])
        except (ValueError, KeyError) as e:
            raise errors.bad_request("invalid continue token") from e
        meta["resourceVersion"] = str(rv)
    limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else None
    if limit is not None:
        end = start + limit
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"offset": end, "rv": rv}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - end
        items = items[start:end]
    else:
        items = items[start:]
    return json_response(
        {"apiVersion": kind.api_version, "kind": f"{kind.kind}List", "metadata": meta, "items": items}
    )


def _watch(ctx: Context, target: Target, query: MutableMapping[str, str]) -> Response:
    kind, ns = target.kind, target.namespace
    labels, fields = _selectors(kind, query)
    rv_param = query.get("resourceVersion")
    try:
        since = None if rv_param in (None, "", "0") else int(rv_param)
        timeout = min(float(query.get("timeoutSeconds") or ctx.max_watch_seconds), ctx.max_watch_seconds)
    except ValueError as e:
        raise errors.bad_request(str(e)) from e
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

    def deliver(event: WatchEvent | None) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is already gone
            loop.call_soon_threadsafe(queue.put_nowait, event)

    try:
        replay, unsubscribe = ctx.store.subscribe(kind, ns, since, deliver)
    except errors.ApiStatusError as e:
        # Like the API server: an expired resourceVersion is a 200 stream carrying one ERROR event.
        line = json.dumps({"type": "ERROR", "object": e.status()}) + "\n"
        return StreamingResponse(iter([line]), media_type="application/json")

    def render(event: WatchEvent) -> str | None:
        if event.kind != kind or (ns is not None and event.namespace != ns):
            return None
        now_ = labels_match(labels, event.obj["metadata"].get("labels")) and fields_match(fields, event.obj)
        before = event.old is not None and (
            labels_match(labels, event.old["metadata"].get("labels")) and fields_match(fields, event.old)
        )
        type_: str = event.type
        if event.type == "MODIFIED" and now_ != before:
            type_ = "ADDED" if now_ else "DELETED"
        elif not now_:
            return None
        return json.dumps({"type": type_, "object": event.obj}) + "\n"

    async def stream() -> AsyncIterator[str]:
        try:
            for event in replay:
                if (line := render(event)) is not None:
                    yield line
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


async def _dispatch(
    ctx: Context,
    request: Request,
    target: Target,
    verb: str,
    query: MutableMapping[str, str],
    content_type: str,
) -> Response:
    store, kind, ns, name, sub = ctx.store, target.kind, target.namespace, target.name, target.subresource
    manager = query.get("fieldManager") or request.headers.get("user-agent", "unknown").split("/")[0]
    if query.get("dryRun"):
        raise errors.bad_request("fakekube does not implement dryRun")
    if verb == "get":
        obj = store.get(kind, ns, name or "")
        if sub is not None and not (sub == "status" and kind.status):
            raise errors.ApiStatusError(404, "NotFound", "the server could not find the requested resource")
        return json_response(obj)
    if verb == "list":
        return _list(ctx, target, query)
    if verb == "watch":
        return _watch(ctx, target, query)
    if verb == "create":
        return json_response(
            store.create(kind, ns, await read_body(request, content_type), manager=manager), 201
        )
    if verb == "update":
        body = await read_body(request, content_type)
        return json_response(store.replace(kind, ns, name or "", body, manager=manager, subresource=sub))
    if verb == "apply":
        body = await read_body(request, content_type)
        force = query.get("force") in ("true", "1")
        obj, created = store.apply(
            kind, ns, name or "", body, manager=query.get("fieldManager", ""), force=force, subresource=sub
        )
        return json_response(obj, 201 if created else 200)
    if verb == "patch":
        patch_type = _PATCH_TYPES.get(content_type.split(";")[0].strip())
        if patch_type is None:
            return json_response(
                errors.ApiStatusError(
                    415, "UnsupportedMediaType", f"the media type {content_type!r} is not supported"
                ).status(),
                415,
            )
        body = await read_body(request, content_type)
        return json_response(
            store.patch(kind, ns, name or "", body, patch_type, manager=manager, subresource=sub)
        )
    if verb in ("delete", "deletecollection"):
        raw = await request.body()
        options = json.loads(raw) if raw else {}
        propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
        if verb == "deletecollection":
            labels, fields = _selectors(kind, query)
            items = store.delete_collection(kind, ns, labels, fields, propagation=propagation)
            return json_response(
                {"apiVersion": kind.api_version, "kind": f"{kind.kind}List", "metadata": {}, "items": items}
            )
        precondition = (options.get("preconditions") or {}).get("resourceVersion")
        return json_response(
            store.delete(kind, ns, name or "", propagation=propagation, precondition_rv=precondition)
        )
    raise errors.ApiStatusError(
        405, "MethodNotAllowed", f"{request.method} is not supported on {request.url.path}"
    )


class _Drop:
    """An ASGI response that starts a body it never finishes."""

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
    if segs == ["version"]:
        return json_response(KUBE_VERSION)
    if segs == ["api"]:
        return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
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
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        resources: list[dict[str, Any]] = []
        for k in kinds:
            resources.append(
                {
                    "name": k.plural,
                    "singularName": k.singular,
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": verbs,
                }
            )
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
        group_version = f"{group}/{version}" if group else version
        return json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
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


def build_app(ctx: Context) -> Starlette:
    async def kube(request: Request) -> Response | _Drop:
        method, path = request.method, request.url.path
        query = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        target: Target | None = None
        verb: Verb = "other"
        response: Response | _Drop
        fault: Fault | None = None
        try:
            target = parse_target(ctx, path)
            verb = classify(method, target, query, content_type)
            fault = ctx.faults.take(method, path, verb)
            if fault is not None:
                response = _fault_response(fault)
            elif target is None:
                found = _discovery(ctx, path) if method == "GET" else None
                response = found or status_response(
                    errors.ApiStatusError(404, "NotFound", "the server could not find the requested resource")
                )
            else:
                authorize(ctx, target, verb)
                response = await _dispatch(ctx, request, target, verb, query, content_type)
        except errors.ApiStatusError as e:
            response = status_response(e)
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
                status=response.status_code if isinstance(response, Response) else None,
                fault=str(fault.response) if fault else None,
            )
        )
        succeeded = isinstance(response, Response) and response.status_code < 400
        if succeeded and verb in ("create", "update", "patch", "apply", "delete", "deletecollection"):
            ctx.controller.after_api_write()
        return response

    return Starlette(
        routes=[
            *admin_routes(ctx),
            Route("/{path:path}", kube, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )


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
        Route("/_fake/pod-behaviour", behaviour, methods=["POST", "DELETE"]),
        Route("/_fake/deployments/{namespace}/{name}/progress-deadline-exceeded", deadline, methods=["POST"]),
        Route("/_fake/deployments/{namespace}/{name}/hold", hold, methods=["POST"]),
        Route("/_fake/end-watches", end_watches, methods=["POST"]),
    ]
