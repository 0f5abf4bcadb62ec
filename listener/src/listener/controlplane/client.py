"""Synchronous client of the LangSmith Deployment Control Plane API.

Sync, deliberately: the listener's loop polls every 15-30 s and then does Kubernetes work; one thread with a
blocking
`httpx.Client` is the simplest correct shape (no event loop to share with lightkube, no cancellation
subtleties), and
the request rate is far too low for concurrency to matter. Use one client per thread.

Every call: sends `X-Api-Key` (and `X-Tenant-Id` when configured), retries transient failures under
`RetryPolicy`
(see `retry.py` for which), maps error responses to the typed errors in `errors.py`, and validates the body
into the
pydantic models in `models.py`.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ValidationError

from listener.controlplane import errors as e
from listener.controlplane.config import ControlPlaneConfig
from listener.controlplane.listing import (
    DeploymentListing,
    UnreadableDeployment,
    UnreadableId,
    describe_errors,
    read_item,
)
from listener.controlplane.models import (
    Deployment,
    DeploymentCreateRequest,
    DeploymentPatchRequest,
    DeploymentsList,
    Listener,
    ListenerCreateRequest,
    ListenerPatchRequest,
    ListenersList,
    Revision,
    RevisionsList,
    dump_request,
)
from listener.controlplane.pagination import PAGE_SIZE, collect_pages
from listener.controlplane.retry import backoff_delay, parse_retry_after, retryable_status

__all__ = ["UNSET", "ControlPlaneClient", "as_uuid"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
USER_AGENT: Final = "langsmith-dataplane-listener/0.1.0"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks a PATCH argument as "leave unchanged" (None is a value the API accepts)."""

# Errors raised before the request reached the server: safe to retry for any method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def as_uuid(value: UUID | str, field: str) -> UUID:
    """`value` as a UUID, or a ValueError naming the field and the value (the API answers 422 for non-UUID
    IDs)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise ValueError(f"{field} must be a UUID, got {value!r}") from None


def _ignore(method: str, code: str) -> None:  # noqa: ARG001 - the default `observe`
    return


class ControlPlaneClient:
    """Typed access to `/v2/listeners` and `/v2/deployments`. Close it (or use `with`) to release
    connections."""

    def __init__(
        self,
        config: ControlPlaneConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        """`observe(method, code)` is called after every HTTP attempt (retries included): code is the
        status code, or 'error' when no response arrived. The listener counts them as metrics."""
        self.config = config
        self._sleep = sleep
        self._random = random
        self._observe = observe or _ignore
        self._deployments: dict[Any, tuple[Any, Any]] = {}
        """The last complete deployments list: id → (raw JSON, what was read); see `read_deployments`."""
        headers = {
            "X-Api-Key": config.api_key.get_secret_value(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if config.tenant_id is not None:
            headers["X-Tenant-Id"] = str(config.tenant_id)
        self._http = httpx.Client(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ControlPlaneClient(base_url={self.config.base_url!r}, tenant_id={self.config.tenant_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- Listeners ---

    def list_listeners(self) -> list[Listener]:
        return self._all_pages("/v2/listeners", {}, ListenersList, "listener")

    def get_listener(self, listener_id: UUID | str) -> Listener:
        lid = as_uuid(listener_id, "listener_id")
        return self._call("GET", f"/v2/listeners/{lid}", Listener)

    def create_listener(
        self, compute_id: str, namespaces: Sequence[str], *, version: str | None = None
    ) -> Listener:
        if isinstance(namespaces, str):
            raise ValueError(f"namespaces must be a list of namespace names, got the string {namespaces!r}")
        body = ListenerCreateRequest.model_validate(
            {
                "compute_type": "k8s",
                "compute_id": compute_id,
                "compute_config": {"k8s_namespaces": list(namespaces)},
                "version": version,
            }
        )
        return self._call("POST", "/v2/listeners", Listener, json=dump_request(body))

    def patch_listener(
        self,
        listener_id: UUID | str,
        *,
        version: str | _Unset | None = UNSET,
        namespaces: Sequence[str] | _Unset = UNSET,
    ) -> Listener:
        """Update the listener's `version` (the data plane's heartbeat) and/or its namespaces."""
        lid = as_uuid(listener_id, "listener_id")
        fields: dict[str, Any] = {}
        if not isinstance(version, _Unset):
            fields["version"] = version
        if not isinstance(namespaces, _Unset):
            if isinstance(namespaces, str):
                raise ValueError(
                    f"namespaces must be a list of namespace names, got the string {namespaces!r}"
                )
            fields["compute_config"] = {"k8s_namespaces": list(namespaces)}
        if not fields:
            raise ValueError("patch_listener needs version= and/or namespaces=; nothing to change")
        body = ListenerPatchRequest.model_validate(fields)
        # Setting fields to given values is idempotent, so transient failures may be retried.
        return self._call("PATCH", f"/v2/listeners/{lid}", Listener, json=dump_request(body), idempotent=True)

    def delete_listener(self, listener_id: UUID | str) -> None:
        lid = as_uuid(listener_id, "listener_id")
        self.request("DELETE", f"/v2/listeners/{lid}")

    # --- Deployments ---

    def list_deployments(
        self,
        *,
        name_contains: str | None = None,
        status: str | None = None,
        deployment_type: str | None = None,
        deployment_ids: Iterable[UUID | str] | None = None,
    ) -> list[Deployment]:
        """Every deployment (all pages) matching the filters. There is no listener filter in the API: filter
        on `source_config.listener_id` yourself. All or nothing: a failure on any page, or any item that
        does not validate, raises (`read_deployments` keeps the items it cannot validate apart)."""
        listing = self.read_deployments(
            name_contains=name_contains,
            status=status,
            deployment_type=deployment_type,
            deployment_ids=deployment_ids,
        )
        if listing.unreadable:
            problems = "; ".join(f"deployment {u.id}: {u.problems}" for u in listing.unreadable)
            raise e.InvalidResponseError(
                f"GET /v2/deployments returned deployments the client cannot use: {problems}",
                method="GET",
                path="/v2/deployments",
                status_code=200,
            )
        return list(listing.deployments)

    def read_deployments(
        self,
        *,
        name_contains: str | None = None,
        status: str | None = None,
        deployment_type: str | None = None,
        deployment_ids: Iterable[UUID | str] | None = None,
    ) -> DeploymentListing:
        """Every deployment (all pages), each item validated on its own: one that does not validate but
        has a readable id is returned apart (`DeploymentListing.unreadable`), so one deployment the
        client cannot read (anyone's, in the workspace) does not hide all the others. A failed page, a
        malformed envelope or an item without a readable id still raises: all or nothing."""
        params: dict[str, Any] = {}
        if name_contains is not None:
            params["name_contains"] = name_contains
        if status is not None:
            params["status"] = status
        if deployment_type is not None:
            params["deployment_type"] = deployment_type
        if deployment_ids is not None:
            params["deployment_ids"] = ",".join(str(as_uuid(d, "deployment_ids")) for d in deployment_ids)
        path = "/v2/deployments"
        cache = self._deployments
        fresh: dict[Any, tuple[Any, Any]] = {}

        def fetch(limit: int, offset: int) -> list[Deployment | UnreadableDeployment]:
            response = self.request("GET", path, params={**params, "limit": limit, "offset": offset})
            body = self._json_body(response, "GET", path)
            items = body.get("resources") if isinstance(body, dict) else None
            if not isinstance(items, list):
                self._parse(response, DeploymentsList, "GET", path)  # raises, naming what is wrong
                raise AssertionError("unreachable: resources is not a list")  # pragma: no cover
            # The envelope without its items (they are validated one by one, below).
            self._validate({**body, "resources": []}, DeploymentsList, response, "GET", path)
            out: list[Deployment | UnreadableDeployment] = []
            for index, item in enumerate(items):
                # An item whose JSON equals the one read last time is not validated again: the same
                # object is returned, so a poll of an unchanged workspace costs a dict comparison per
                # item, not a pydantic validation (an unreadable item is remembered the same way).
                key = item.get("id") if isinstance(item, dict) else None
                known = cache.get(key) if isinstance(key, str) else None
                if known is not None and known[0] == item:
                    read = known[1]
                else:
                    try:
                        read = read_item(item, f"resources.{index}")
                    except UnreadableId as unreadable:
                        raise e.InvalidResponseError(
                            f"GET {path} returned a DeploymentsList the client cannot use: {unreadable}",
                            method="GET",
                            path=path,
                            status_code=response.status_code,
                        ) from None
                if isinstance(key, str):
                    fresh[key] = (item, read)
                out.append(read)
            return out

        collected = collect_pages(fetch, lambda r: r.id, page_size=PAGE_SIZE, what="deployment")
        cache.clear()  # only what the last complete list held: deleted deployments do not linger
        cache.update(fresh)
        return DeploymentListing(
            tuple(d for d in collected if isinstance(d, Deployment)),
            tuple(d for d in collected if isinstance(d, UnreadableDeployment)),
        )

    def get_deployment(self, deployment_id: UUID | str) -> Deployment:
        did = as_uuid(deployment_id, "deployment_id")
        return self._call("GET", f"/v2/deployments/{did}", Deployment)

    def create_deployment(self, request: DeploymentCreateRequest) -> Deployment:
        return self._call("POST", "/v2/deployments", Deployment, json=dump_request(request))

    def patch_deployment(self, deployment_id: UUID | str, request: DeploymentPatchRequest) -> Deployment:
        """PATCH a deployment; a non-null image_uri, secrets or resource_spec makes the service create a
        revision."""
        did = as_uuid(deployment_id, "deployment_id")
        return self._call("PATCH", f"/v2/deployments/{did}", Deployment, json=dump_request(request))

    def delete_deployment(self, deployment_id: UUID | str, *, delete_tracing_project: bool = False) -> None:
        did = as_uuid(deployment_id, "deployment_id")
        params = {"delete_tracing_project": "true"} if delete_tracing_project else None
        self.request("DELETE", f"/v2/deployments/{did}", params=params)

    def list_revisions(
        self, deployment_id: UUID | str, *, status: Iterable[str] | None = None
    ) -> list[Revision]:
        """Every revision of the deployment, newest first."""
        did = as_uuid(deployment_id, "deployment_id")
        params = {"status": ",".join(status)} if status is not None else {}
        return self._all_pages(f"/v2/deployments/{did}/revisions", params, RevisionsList, "revision")

    def get_revision(self, deployment_id: UUID | str, revision_id: UUID | str) -> Revision:
        did = as_uuid(deployment_id, "deployment_id")
        rid = as_uuid(revision_id, "revision_id")
        return self._call("GET", f"/v2/deployments/{did}/revisions/{rid}", Revision)

    def redeploy(self, deployment_id: UUID | str, revision_id: UUID | str) -> Deployment:
        did = as_uuid(deployment_id, "deployment_id")
        rid = as_uuid(revision_id, "revision_id")
        return self._call("POST", f"/v2/deployments/{did}/revisions/{rid}/redeploy", Deployment)

    # --- Transport ---

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """One logical call: attempts under the retry policy; a 2xx/3xx response or a typed error.

        `idempotent` overrides the method's default (GET/PUT/DELETE yes, POST/PATCH no) for retrying 5xx and
        connections that failed after the request was sent.
        """
        policy = self.config.retry
        method = method.upper()
        for attempt in range(policy.max_attempts):
            last = attempt + 1 >= policy.max_attempts
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TransportError as exc:
                self._observe(method, "error")
                retry_ok = isinstance(exc, _NOT_SENT) or (
                    idempotent
                    if idempotent is not None
                    else method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
                )
                reason = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
                if last or not retry_ok:
                    tried = (
                        f"after {attempt + 1} attempt(s)"
                        if retry_ok
                        else "(not retried: may have been processed)"
                    )
                    raise e.TransportError(
                        f"{method} {path} to {self.config.base_url} failed {tried}: {reason}",
                        method=method,
                        path=path,
                    ) from None
                self._wait(self._backoff(attempt), method, path, attempt, reason)
                continue
            self._observe(method, str(response.status_code))
            log.debug("%s %s -> %s (attempt %d)", method, path, response.status_code, attempt + 1)
            if response.status_code < 400:
                return response
            if not last and retryable_status(response.status_code, method, idempotent=idempotent):
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"))
                    if response.status_code in (429, 503)
                    else None
                )
                if retry_after is not None and retry_after > policy.max_retry_after:
                    raise self._error(response, method, path, attempts=attempt + 1)
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                self._wait(delay, method, path, attempt, f"HTTP {response.status_code}")
                continue
            raise self._error(response, method, path, attempts=attempt + 1)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.config.retry, self._random)

    def _wait(self, delay: float, method: str, path: str, attempt: int, reason: str) -> None:
        log.warning(
            "%s %s failed (%s); retrying in %.2fs (attempt %d of %d)",
            method,
            path,
            reason,
            delay,
            attempt + 2,
            self.config.retry.max_attempts,
        )
        self._sleep(delay)

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        return self._parse(self.request(method, path, **kwargs), model, method, path)

    def _all_pages(
        self, path: str, params: Mapping[str, Any], envelope: type[BaseModel], what: str
    ) -> list[Any]:
        def fetch(limit: int, offset: int) -> list[Any]:
            page = self._call("GET", path, envelope, params={**params, "limit": limit, "offset": offset})
            return list(page.resources)  # type: ignore[attr-defined]

        return collect_pages(fetch, lambda r: r.id, page_size=PAGE_SIZE, what=what)

    def _parse(self, response: httpx.Response, model: type[M], method: str, path: str) -> M:
        return self._validate(self._json_body(response, method, path), model, response, method, path)

    def _validate(self, body: Any, model: type[M], response: httpx.Response, method: str, path: str) -> M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            # Formatted by hand: pydantic's own message quotes input values, which may be secret values.
            problems = describe_errors(exc)
            raise e.InvalidResponseError(
                f"{method} {path} returned a {model.__name__} the client cannot use: {problems}",
                method=method,
                path=path,
                status_code=response.status_code,
            ) from None

    def _json_body(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise e.InvalidResponseError(
                f"{method} {path} returned HTTP {response.status_code} with a body that is not valid JSON "
                f"({len(response.content)} bytes, content-type {response.headers.get('content-type')!r})",
                method=method,
                path=path,
                status_code=response.status_code,
            ) from None

    def _scrub(self, text: str) -> str:
        key = self.config.api_key.get_secret_value()
        return text.replace(key, "**********") if key else text

    def _error(
        self, response: httpx.Response, method: str, path: str, *, attempts: int
    ) -> e.ControlPlaneError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        raw = body.get("detail") if isinstance(body, dict) else None
        detail: Any = self._scrub(raw) if isinstance(raw, str) else raw
        said = f" Server said: {detail}" if isinstance(detail, str) else ""
        where = f"{method} {path}"
        kw: dict[str, Any] = {"method": method, "path": path, "status_code": status, "detail": detail}
        if status == 400:
            return e.BadRequestError(f"The control plane refused {where} (400 Bad Request).{said}", **kw)
        if status == 401:
            return e.AuthenticationError(
                f"The control plane at {self.config.base_url} rejected the API key (401 Unauthorized) "
                f"on {where}. "
                "Check that it is a valid LangSmith API key for this region or host.",
                **kw,
            )
        if status == 403:
            return _forbidden(where, path, detail, said, kw)
        if status == 404:
            return e.NotFoundError(f"Not found (404) on {where}.{said}", **kw)
        if status == 409:
            return e.ConflictError(f"Conflict (409) on {where}: the resource already exists.{said}", **kw)
        if status == 422:
            fields = _field_errors(detail)
            listed = "; ".join(str(f) for f in fields) or "no field details given"
            return e.RequestValidationError(
                f"The control plane rejected {where} as invalid (422): {listed}", errors=fields, **kw
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429 or (status == 503 and retry_after is not None):
            hint = f" It asked to retry after {retry_after:g}s." if retry_after is not None else ""
            return e.RateLimitedError(
                f"The control plane is rate limiting {where} (HTTP {status}) "
                f"after {attempts} attempt(s).{hint}{said}",
                retry_after=retry_after,
                **kw,
            )
        if status >= 500:
            return e.ServerError(
                f"The control plane failed {where} with HTTP {status} after {attempts} attempt(s).{said}",
                **kw,
            )
        return e.ControlPlaneError(f"Unexpected HTTP {status} on {where}.{said}", **kw)


def _forbidden(where: str, path: str, detail: Any, said: str, kw: dict[str, Any]) -> e.PermissionDeniedError:
    text = detail.lower() if isinstance(detail, str) else ""
    if "requires workspace specification" in text:
        return e.WorkspaceRequiredError(
            f"The API key is organization-scoped and {where} needs a workspace: set the workspace ID "
            f"(tenant_id, sent as X-Tenant-Id) (403).{said}",
            **kw,
        )
    if "not enabled" in text:
        return e.DeploymentNotEnabledError(
            f"LangSmith Deployment is not enabled for this organization (403 on {where}).{said}", **kw
        )
    if path.startswith("/v2/listeners"):
        return e.ListenersNotAllowedError(
            f"Listeners are not available to this workspace (403 on {where}): they need a self-hosted "
            f"enterprise plan that LangChain has enabled.{said}",
            **kw,
        )
    return e.PermissionDeniedError(f"Permission denied (403) on {where}.{said}", **kw)


def _field_errors(detail: Any) -> list[e.FieldError]:
    if not isinstance(detail, list):
        return [e.FieldError((), str(detail))] if detail else []
    out: list[e.FieldError] = []
    for item in detail:
        if isinstance(item, dict):
            loc = item.get("loc")
            out.append(
                e.FieldError(
                    tuple(loc) if isinstance(loc, list) else (),
                    str(item.get("msg", "invalid")),
                    str(item.get("type", "")),
                )
            )
    return out
