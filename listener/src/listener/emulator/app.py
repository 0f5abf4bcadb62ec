"""The emulator's HTTP shell: a Starlette app serving `/v2/listeners` and `/v2/deployments` like the control
plane, plus emulator-only routes under `/_emulator` (data-plane status channel, faults, request log,
settings).

Errors follow FastAPI's shapes (the real service is FastAPI): `{"detail": "..."}`, and for 422
`{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` with `loc` starting at `body`, `query` or `path`.
"""

# Every handler takes (request, body, ctx) so one wrapper serves them all; most use only some of the three.
# ruff: noqa: ARG001, ARG002, ARG005

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from listener.controlplane.models import (
    DeploymentCreateRequest,
    DeploymentPatchRequest,
    ListenerCreateRequest,
    ListenerPatchRequest,
    dump_request,
)
from listener.emulator.faults import PAGE_FAULTS, Fault, FaultRegistry
from listener.emulator.store import ApiError, Settings, Store

__all__ = ["DATAPLANE_PREFIX", "Emulator", "RequestRecord"]

DATAPLANE_PREFIX = "/_emulator/dataplane/v1"
_ADMIN_PREFIXES = (
    "/_emulator/faults",
    "/_emulator/requests",
    "/_emulator/settings",
    "/_emulator/deployments",
)


class _InjectedAbort(Exception):
    """Raised after a deliberately partial response: the server then closes the connection mid-response."""


class _HideInjectedAborts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _InjectedAbort))


logging.getLogger("uvicorn.error").addFilter(_HideInjectedAborts())


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    # No "input" key: it would echo request values back, secret values included.
    return [
        {"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _integral_floats_as_ints(raw: bytes) -> bytes:
    """`8.0` where the schema says integer: JSON Schema's `integer` admits it, and so does FastAPI (pydantic's
    lax JSON mode takes a float without a fractional part for an int). Strict validation would refuse it, so
    such numbers are written as integers first; float fields still take them (strict floats accept ints)."""
    try:
        data = json.loads(raw, parse_float=lambda text: _integral(float(text)))
    except ValueError:
        return raw  # not JSON: let validation report it as the service would
    return json.dumps(data).encode()


def _integral(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def _body(model: type[BaseModel], raw: bytes, *, reject_unknown: bool) -> dict[str, Any]:
    """Validate a JSON body like the service's FastAPI models: strict JSON types ("5" is not an integer, 1 is
    not a
    string). Unknown fields are ignored, as the OpenAPI schemas allow them (no additionalProperties: false),
    unless
    the `reject_unknown_fields` setting asks for 422s naming them."""
    if not raw.strip():
        raise _Invalid([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    raw = _integral_floats_as_ints(raw)
    try:
        return dump_request(model.model_validate_json(raw, strict=True))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        extras = [e["loc"] for e in errors if e["type"] == "extra_forbidden"]
        if reject_unknown or len(extras) != len(errors):
            raise _Invalid(_errors(exc, "body")) from None
    data = json.loads(raw)
    for loc in extras:
        parent = data
        for part in loc[:-1]:
            parent = parent[part]
        parent.pop(loc[-1], None)
    try:
        return dump_request(model.model_validate_json(json.dumps(data), strict=True))
    except ValidationError as exc:
        raise _Invalid(_errors(exc, "body")) from None


def _query(model: type[BaseModel], request: Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _Invalid(_errors(exc, "query")) from None


_UUID = TypeAdapter(UUID)


def _path_id(request: Request, name: str) -> str:
    try:
        return str(_UUID.validate_python(request.path_params[name]))
    except ValidationError as exc:
        raise _Invalid([{**e, "loc": ["path", name]} for e in _errors(exc, "path")]) from None


class _ListParams(BaseModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    offset: Annotated[int, Field(ge=0)] = 0


class _DeploymentListParams(_ListParams):
    name_contains: str | None = None
    status: str | None = None
    remote_reconciled: bool | None = None
    tag_value_ids: str | None = None
    image_version: str | None = None
    deployment_type: Literal["dev_free", "dev", "prod"] | None = None
    deployment_ids: str | None = None


class _RevisionListParams(_ListParams):
    status: str | None = None
    remote_reconciled: bool | None = None


class _DeleteParams(BaseModel):
    delete_tracing_project: bool = False


_BULK_IDS = TypeAdapter(Annotated[list[UUID], Field(min_length=1, max_length=100)])


class _StatusReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["DEPLOYING", "DEPLOYED", "DEPLOY_FAILED"]
    reason: str | None = None


class _SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listeners_allowed: bool | None = None
    deployments_enabled: bool | None = None
    require_tenant: bool | None = None
    require_listener: bool | None = None
    echo_listener_config: bool | None = None
    reject_unknown_fields: bool | None = None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str


@dataclass(frozen=True)
class _Ctx:
    page_fault: Fault | None = None


def _page(items: list[dict[str, Any]], params: Any, ctx: _Ctx) -> dict[str, Any]:
    offset = 0 if ctx.page_fault and ctx.page_fault.kind == "repeat_page" else params.offset
    page = items[offset : offset + params.limit]
    if ctx.page_fault and ctx.page_fault.kind == "short_page":
        page = page[: max(0, len(page) - ctx.page_fault.drop)]
    return {"resources": page, "offset": offset + len(page)}


class _PartialResponse(Response):
    """Sends the status line and `keep` of `body`, announcing the full length, then aborts the connection."""

    def __init__(self, status_code: int, body: bytes, keep: int) -> None:
        super().__init__(content=body, status_code=status_code, media_type="application/json")
        self._keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: self._keep], "more_body": True})
        raise _InjectedAbort("injected fault: connection closed mid-response")


Handler = Callable[[Request, bytes, _Ctx], Response | dict[str, Any] | tuple[int, Any]]


class Emulator:
    """An in-process LangSmith control plane. `emulator.app` (or the emulator itself) is the ASGI application.

    Python API for tests: `faults` (add/remove/clear), `settings`, `store`, `requests` (every request
    received, in
    order, including ones that then failed auth or hit a fault) and `request_count(...)`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        tenant_id: str | None = None,
        db_path: str | Path | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = Store(
            tenant_id="", db_path=Path(db_path) if db_path else None, settings=settings or Settings()
        )
        self.tenant_id = (
            str(UUID(tenant_id)) if tenant_id else self.store.meta("tenant_id", lambda: str(uuid.uuid4()))
        )
        self.store.tenant_id = self.tenant_id
        self.api_key = api_key or self.store.meta("api_key", lambda: "lsv2_emu_" + secrets.token_urlsafe(24))
        self.faults = FaultRegistry()
        self.requests: list[RequestRecord] = []
        self.app = Starlette(routes=_by_path(self._routes()))

    def __repr__(self) -> str:
        return f"Emulator(tenant_id={self.tenant_id!r}, db_path={self.store.db_path!r})"

    @property
    def settings(self) -> Settings:
        return self.store.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def request_count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(
            1
            for r in list(self.requests)
            if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        )

    def close(self) -> None:
        self.store.close()

    # --- plumbing ---

    def _deny(self, request: Request, admin: bool) -> Response | None:
        given = request.headers.get("x-api-key")
        if not given:
            return JSONResponse({"detail": "Not authenticated: the X-Api-Key header is required."}, 401)
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return JSONResponse({"detail": "Invalid API key."}, 401)
        if admin:
            return None
        settings = self.store.settings
        if not settings.deployments_enabled:
            return JSONResponse({"detail": "LangSmith Deployment is not enabled for this organization."}, 403)
        tenant = request.headers.get("x-tenant-id")
        if tenant is None and settings.require_tenant:
            return JSONResponse(
                {
                    "detail": "This API key is organization scoped and requires workspace specification: "
                    "set the X-Tenant-Id header to a workspace ID."
                },
                403,
            )
        if tenant is not None and tenant.strip().lower() != self.tenant_id:
            return JSONResponse({"detail": f"The API key has no access to workspace ID '{tenant}'."}, 403)
        return None

    def _endpoint(
        self, handler: Handler, *, is_list: bool = False, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not admin:
                self.requests.append(RequestRecord(request.method, request.url.path, request.url.query))
            denied = self._deny(request, admin)
            if denied is not None:
                return denied
            chosen = [] if admin else self.faults.take(request.method, request.url.path, is_list=is_list)
            for fault in chosen:
                if fault.kind == "latency":
                    await asyncio.sleep(fault.delay)
            main = next((f for f in chosen if f.kind != "latency"), None)
            early = _fault_response(main)
            if early is not None:
                return early
            raw = await request.body()
            try:
                result = handler(
                    request, raw, _Ctx(page_fault=main if main and main.kind in PAGE_FAULTS else None)
                )
                response = _to_response(result)
            except ApiError as exc:
                response = JSONResponse({"detail": exc.detail}, exc.status)
            except _Invalid as exc:
                response = JSONResponse({"detail": exc.errors}, 422)
            if main is not None and main.kind == "truncated_body":
                return _PartialResponse(response.status_code, bytes(response.body), len(response.body) // 2)
            return response

        return endpoint

    def _routes(self) -> list[Route]:
        s, ep = self.store, self._endpoint
        return [
            Route("/openapi.json", _openapi, methods=["GET"]),
            # Listeners
            Route(
                "/v2/listeners",
                ep(lambda r, b, c: _page(s.list_listeners(), _query(_ListParams, r), c), is_list=True),
                methods=["GET"],
            ),
            Route(
                "/v2/listeners",
                ep(lambda r, b, c: (201, s.create_listener(self._body(ListenerCreateRequest, b)))),
                methods=["POST"],
            ),
            Route(
                "/v2/listeners/{listener_id}",
                ep(lambda r, b, c: s.get_listener(_path_id(r, "listener_id"))),
                methods=["GET"],
            ),
            Route(
                "/v2/listeners/{listener_id}",
                ep(
                    lambda r, b, c: s.patch_listener(
                        _path_id(r, "listener_id"), self._body(ListenerPatchRequest, b)
                    )
                ),
                methods=["PATCH"],
            ),
            Route(
                "/v2/listeners/{listener_id}",
                ep(lambda r, b, c: (204, s.delete_listener(_path_id(r, "listener_id")))),
                methods=["DELETE"],
            ),
            # Deployments
            Route("/v2/deployments", ep(self._list_deployments, is_list=True), methods=["GET"]),
            Route(
                "/v2/deployments",
                ep(lambda r, b, c: (201, s.create_deployment(self._body(DeploymentCreateRequest, b)))),
                methods=["POST"],
            ),
            Route("/v2/deployments", ep(self._bulk_delete), methods=["DELETE"]),
            Route(
                "/v2/deployments/{deployment_id}",
                ep(lambda r, b, c: s.get_deployment(_path_id(r, "deployment_id"))),
                methods=["GET"],
            ),
            Route(
                "/v2/deployments/{deployment_id}",
                ep(
                    lambda r, b, c: s.patch_deployment(
                        _path_id(r, "deployment_id"), self._body(DeploymentPatchRequest, b)
                    )
                ),
                methods=["PATCH"],
            ),
            Route("/v2/deployments/{deployment_id}", ep(self._delete_deployment), methods=["DELETE"]),
            Route(
                "/v2/deployments/{deployment_id}/revisions",
                ep(self._list_revisions, is_list=True),
                methods=["GET"],
            ),
            Route(
                "/v2/deployments/{deployment_id}/revisions/{revision_id}",
                ep(lambda r, b, c: s.get_revision(_path_id(r, "deployment_id"), _path_id(r, "revision_id"))),
                methods=["GET"],
            ),
            Route(
                "/v2/deployments/{deployment_id}/revisions/{revision_id}/redeploy",
                ep(lambda r, b, c: s.redeploy(_path_id(r, "deployment_id"), _path_id(r, "revision_id"))),
                methods=["POST"],
            ),
            # Emulator only: the data-plane status channel (faults apply, like any data-plane call) ...
            Route(
                DATAPLANE_PREFIX + "/deployments/{deployment_id}/revisions/{revision_id}/status",
                ep(self._report_status),
                methods=["POST"],
            ),
            # ... and administration (no faults, not in the request log).
            Route(
                "/_emulator/faults",
                ep(lambda r, b, c: [f.model_dump() for f in self.faults.list()], admin=True),
            ),
            Route("/_emulator/faults", ep(self._add_fault, admin=True), methods=["POST"]),
            Route(
                "/_emulator/faults",
                ep(lambda r, b, c: (204, self.faults.clear()), admin=True),
                methods=["DELETE"],
            ),
            Route("/_emulator/faults/{fault_id}", ep(self._remove_fault, admin=True), methods=["DELETE"]),
            Route("/_emulator/requests", ep(lambda r, b, c: [asdict(x) for x in self.requests], admin=True)),
            Route(
                "/_emulator/requests",
                ep(lambda r, b, c: (204, self.requests.clear()), admin=True),
                methods=["DELETE"],
            ),
            Route(
                "/_emulator/settings", ep(lambda r, b, c: asdict(self.settings), admin=True), methods=["GET"]
            ),
            Route("/_emulator/settings", ep(self._patch_settings, admin=True), methods=["PATCH"]),
            Route(
                "/_emulator/deployments/{deployment_id}",
                ep(self._corrupt_deployment, admin=True),
                methods=["PATCH"],
            ),
        ]

    # --- handlers that need more than one line ---

    def _body(self, model: type[BaseModel], raw: bytes) -> dict[str, Any]:
        return _body(model, raw, reject_unknown=self.settings.reject_unknown_fields)

    def _list_deployments(self, request: Request, raw: bytes, ctx: _Ctx) -> dict[str, Any]:
        params = _query(_DeploymentListParams, request)
        return _page(self.store.list_deployments(params.model_dump()), params, ctx)

    def _list_revisions(self, request: Request, raw: bytes, ctx: _Ctx) -> dict[str, Any]:
        deployment_id = _path_id(request, "deployment_id")
        params = _query(_RevisionListParams, request)
        assert isinstance(params, _RevisionListParams)
        statuses = {s.strip() for s in params.status.split(",") if s.strip()} if params.status else None
        return _page(self.store.list_revisions(deployment_id, statuses), params, ctx)

    def _delete_deployment(self, request: Request, raw: bytes, ctx: _Ctx) -> tuple[int, None]:
        deployment_id = _path_id(request, "deployment_id")
        _query(_DeleteParams, request)  # validated; the emulator keeps no tracing projects
        self.store.delete_deployment(deployment_id)
        return 204, None

    def _bulk_delete(self, request: Request, raw: bytes, ctx: _Ctx) -> tuple[int, Any]:
        given = request.query_params.getlist("deployment_ids")
        if not given:
            raise _Invalid([{"loc": ["query", "deployment_ids"], "msg": "Field required", "type": "missing"}])
        try:
            ids = [str(i) for i in _BULK_IDS.validate_python(given)]
        except ValidationError as exc:
            raise _Invalid(_errors(exc, "query")) from None
        deleted, missing = self.store.delete_deployments(ids)
        if not deleted:
            raise ApiError(404, f"Deployment ID {missing[0]} not found.")
        # 207 Multi-Status when only some were deleted (the operation's description; not a documented
        # response).
        return (207 if missing else 200), {"deleted": deleted, "not_found": missing}

    def _report_status(self, request: Request, raw: bytes, ctx: _Ctx) -> dict[str, Any]:
        deployment_id = _path_id(request, "deployment_id")
        revision_id = _path_id(request, "revision_id")
        try:
            report = _StatusReport.model_validate_json(raw or b"null", strict=True)
        except ValidationError as exc:
            raise _Invalid(_errors(exc, "body")) from None
        return self.store.report_status(deployment_id, revision_id, report.status, report.reason)

    def _add_fault(self, request: Request, raw: bytes, ctx: _Ctx) -> tuple[int, Any]:
        try:
            fault = Fault.model_validate_json(raw or b"null")
        except ValidationError as exc:
            raise _Invalid(_errors(exc, "body")) from None
        return 201, self.faults.add(fault).model_dump()

    def _remove_fault(self, request: Request, raw: bytes, ctx: _Ctx) -> tuple[int, Any]:
        fault_id = request.path_params["fault_id"]
        if not self.faults.remove(fault_id):
            raise ApiError(404, f"Fault {fault_id} not found.")
        return 204, None

    def _corrupt_deployment(self, request: Request, raw: bytes, ctx: _Ctx) -> dict[str, Any]:
        try:
            patch = json.loads(raw or b"null")
        except ValueError:
            raise _Invalid([{"loc": ["body"], "msg": "not valid JSON", "type": "json_invalid"}]) from None
        if not isinstance(patch, dict):
            raise _Invalid([{"loc": ["body"], "msg": "a JSON merge patch object", "type": "dict_type"}])
        return self.store.corrupt_deployment(request.path_params["deployment_id"], patch)

    def _patch_settings(self, request: Request, raw: bytes, ctx: _Ctx) -> dict[str, Any]:
        try:
            patch = _SettingsPatch.model_validate_json(raw or b"{}", strict=True)
        except ValidationError as exc:
            raise _Invalid(_errors(exc, "body")) from None
        for f in fields(Settings):
            value = getattr(patch, f.name)
            if value is not None:
                setattr(self.settings, f.name, value)
        return asdict(self.settings)


def _by_path(routes: list[Route]) -> list[Route]:
    """One Route per path serving all its methods, so a 405 lists every allowed method in `Allow`."""
    table: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for route in routes:
        for method in route.methods or ():
            if method != "HEAD":
                table.setdefault(route.path, {})[method] = route.endpoint

    def dispatcher(handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> Any:
        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        return dispatch

    return [Route(path, dispatcher(handlers), methods=list(handlers)) for path, handlers in table.items()]


def _to_response(result: Response | dict[str, Any] | list[Any] | tuple[int, Any]) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        return Response(status_code=204) if status == 204 else JSONResponse(body, status)
    return JSONResponse(result)


def _fault_response(fault: Fault | None) -> Response | None:
    if fault is None:
        return None
    if fault.kind == "error":
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        return JSONResponse({"detail": fault.detail}, fault.status or 500, headers=headers)
    if fault.kind == "rate_limit":
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        return JSONResponse(
            {"detail": "Too many requests."}, fault.status or 429, headers={"Retry-After": f"{retry_after:g}"}
        )
    if fault.kind == "malformed_json":
        return Response(b'{"resources": [ this is not JSON', 200, media_type="application/json")
    if fault.kind == "drop_connection":
        return _PartialResponse(200, b'{"detail": "never sent"}', 0)
    return None


_OPENAPI: bytes | None = None


async def _openapi(request: Request) -> Response:
    """The control plane's own OpenAPI document (a verbatim copy), as the real service serves it."""
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = resources.files("listener.emulator").joinpath("openapi.json").read_bytes()
        json.loads(_OPENAPI)  # fail loudly on a damaged copy
    return Response(_OPENAPI, media_type="application/json")
