"""The listener's only door to Kubernetes: plain dicts in and out, over lightkube.

Everything above this module works with manifest dicts (what `render` produces), so the
reconciler can be read without knowing lightkube, and every write goes through one place that
uses server-side apply with one fixed field manager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import msgspec
from lightkube import ApiError, Client
from lightkube.codecs import from_dict, resource_registry
from lightkube.core import decoders
from lightkube.core.resource import api_info
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import CascadeType, PatchType

from listener import metrics, naming
from listener.controlplane.retry import parse_retry_after

FIELD_MANAGER = "langsmith-dataplane-listener"
STATUS_FIELD_MANAGER = "langsmith-dataplane-listener-status"
"""Status annotations are written by a second manager so they never fight the spec's fields."""
HANDOVER_FIELD_MANAGER = "langsmith-dataplane-listener-handover"
"""Co-owns `spec.replicas` while an autoscaler takes it over (server-side apply's documented
ownership transfer), so dropping the field from our apply does not reset it to 1."""
RESTART_FIELD_MANAGER = "langsmith-dataplane-listener-restart"
"""Owns only the restart annotation on pod templates, so the spec's applies never remove it."""
RESTART_ANNOTATION = "langsmith-dataplane/restarted-at"

# lightkube 1.x speaks httpx2; a dropped or refused connection is one of these, never an ApiError.
_UNREACHABLE = (OSError, httpx2.TransportError)

# Custom resources the renderer may emit; registered once so lightkube can (de)serialise them.
create_namespaced_resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")


@dataclass(frozen=True)
class AccessRule:
    """One RBAC rule, in the shape of a Role's `rules[]` entry."""

    api_group: str  # "" is the core group
    resources: tuple[str, ...]  # plural resource names, e.g. "deployments"
    verbs: tuple[str, ...]

    def allows(self, api_group: str, resource: str, verb: str) -> bool:
        return api_group == self.api_group and resource in self.resources and verb in self.verbs


_WORKLOAD_VERBS = ("get", "list", "watch", "create", "patch", "delete")
"""Server-side apply is a PATCH, and a PATCH that creates the object also needs `create`; `list`
and `watch` keep the inventory of what exists (`listener.reconcile.inventory`, `.watch`)."""

WATCHED_NAMESPACE_RULES: tuple[AccessRule, ...] = (
    AccessRule("", ("secrets", "services"), _WORKLOAD_VERBS),
    AccessRule("", ("persistentvolumeclaims",), ("get", "list", "delete")),
    AccessRule("", ("pods",), ("get", "list")),
    AccessRule("", ("events",), ("create",)),
    AccessRule("apps", ("deployments", "statefulsets"), _WORKLOAD_VERBS),
    AccessRule("autoscaling", ("horizontalpodautoscalers",), _WORKLOAD_VERBS),
    AccessRule("policy", ("poddisruptionbudgets",), _WORKLOAD_VERBS),
    AccessRule("networking.k8s.io", ("ingresses", "networkpolicies"), _WORKLOAD_VERBS),
    AccessRule("gateway.networking.k8s.io", ("httproutes",), _WORKLOAD_VERBS),
    AccessRule("keda.sh", ("scaledobjects",), _WORKLOAD_VERBS),
)
"""Everything the listener may do in a namespace it watches: the single source of truth.

`Cluster` refuses any call outside it (so a new call without a rule fails every test that makes
it), and the Pulumi program renders each watched namespace's Role from it. Discovery
(`Cluster.served`) needs no rule: every authenticated identity may read it (system:discovery)."""

OWN_NAMESPACE_RULES: tuple[AccessRule, ...] = (
    # Leader election (listener.leader): read the Lease, create it once, renew and release it with
    # optimistic-concurrency PUTs. Nothing else in the listener's own namespace.
    AccessRule("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)
"""What the listener may do in its own namespace: leader election's Lease."""


class UndeclaredAccess(Exception):
    """The code made a Kubernetes call that no `AccessRule` declares: a bug, not a cluster fault."""


class ClusterError(Exception):
    """A Kubernetes API call that failed; `status` is the HTTP code (0 when the server was unreachable)."""

    def __init__(
        self, action: str, target: str, status: int, message: str, *, retry_after: float | None = None
    ):
        self.status = status
        self.retry_after = retry_after
        """Seconds from the answer's `Retry-After` header (429, 503), when it had one."""
        super().__init__(f"{action} {target}: {status or 'unreachable'} {message}".strip())


class NotLeader(ClusterError):
    """A write refused before it was sent: this replica does not hold the leader Lease (any more).

    A `ClusterError`, so every caller already treats it as "that write did not happen, try later"."""

    def __init__(self, action: str, target: str):
        self.status = 0
        self.retry_after = None
        Exception.__init__(self, f"{action} {target}: refused, this replica is not the leader")


RequestObserver = Callable[[str, str], None]
"""(verb, code) after every call: code '2xx', an HTTP error code, 'unreachable' or 'fenced'."""


def _target(api_version: str, kind: str, namespace: str | None, name: str | None) -> str:
    where = f"{namespace}/" if namespace else ""
    return f"{kind}.{api_version} {where}{name or '*'}"


def _observe(verb: str, code: str, observer: RequestObserver | None) -> None:
    metrics.KUBERNETES_REQUESTS.labels(verb=verb, code=code).inc()
    if observer is not None:
        observer(verb, code)


@contextmanager
def _translated(
    action: str, target: str, verb: str, observer: RequestObserver | None = None
) -> Iterator[None]:
    """One place that turns lightkube/httpx2 failures into `ClusterError`, and counts every call."""
    try:
        yield
    except ApiError as error:
        code = error.status.code or 0
        _observe(verb, str(code), observer)
        raise ClusterError(
            action, target, code, error.status.message or "", retry_after=_retry_after(error.response)
        ) from None
    except (
        httpx2.HTTPStatusError
    ) as error:  # an answer that is not a Kubernetes Status (a proxy, a wrong URL)
        code = error.response.status_code
        _observe(verb, str(code), observer)
        raise ClusterError(
            action, target, code, error.response.reason_phrase, retry_after=_retry_after(error.response)
        ) from None
    except _UNREACHABLE as error:
        _observe(verb, "unreachable", observer)
        raise ClusterError(action, target, 0, str(error)) from None
    except (msgspec.MsgspecError, json.JSONDecodeError) as error:  # not the JSON the API promises
        _observe(verb, "unreadable", observer)
        raise ClusterError(action, target, 0, f"unreadable answer: {error}") from None
    except KeyError as error:  # lightkube reads Content-Type unguarded; a proxy may not send one
        _observe(verb, "unreadable", observer)
        raise ClusterError(action, target, 0, f"unreadable answer (no {error} header)") from None
    _observe(verb, "2xx", observer)


def _retry_after(response: httpx2.Response | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    return parse_retry_after(value)


_warm_lock = threading.Lock()
_warm: set[tuple[str, str]] = set()


def _warm_decoders(api_version: str, kind: str) -> None:
    """Build lightkube's msgspec decoders for a kind before any thread decodes it: msgspec builds a
    type's decoder lazily on first use, and two threads doing that at once crashed the interpreter
    (a segfault with lightkube 1.0.1 when the work queue's workers listed two kinds at once)."""
    if (api_version, kind) in _warm:
        return
    with _warm_lock:
        if (api_version, kind) in _warm:
            return
        resource = resource_registry.load(api_version, kind)
        msgspec.json.Decoder(resource)
        msgspec.json.Decoder(decoders._get_list_model(resource)[0])
        _warm.add((api_version, kind))


def _group_and_resource(api_version: str, kind: str) -> tuple[str, str]:
    resource = resource_registry.load(api_version, kind)
    group = api_version.rpartition("/")[0]
    return group, api_info(resource).plural


class Cluster:
    """`fence` (leader election's `may_write`) is asked before every write; when it says no, the write
    is refused with `NotLeader` without reaching the API server, so a deposed leader cannot write.
    `observe` is called after every call (the service uses it as a sign of progress)."""

    def __init__(
        self,
        client: Client,
        *,
        rules: Iterable[AccessRule] = WATCHED_NAMESPACE_RULES,
        fence: Callable[[], bool] | None = None,
        observe: RequestObserver | None = None,
    ):
        self._client = client
        self._rules = tuple(rules)
        self._fence = fence
        self._observe = observe

    def _check(self, verb: str, api_version: str, kind: str) -> None:
        _warm_decoders(api_version, kind)
        group, resource = _group_and_resource(api_version, kind)
        if not any(rule.allows(group, resource, verb) for rule in self._rules):
            raise UndeclaredAccess(
                f"{verb} {resource}.{group or 'core'} is not declared in listener.kube's access rules"
            )

    def may_write(self) -> bool:
        """What the fence says now: writes outside Kubernetes (the managed stores) ask it too."""
        return self._fence is None or self._fence()

    def check(self, verb: str, api_version: str, kind: str) -> None:
        """Raise `UndeclaredAccess` unless the access rules allow `verb` on the kind (for callers
        that talk to the API server another way, e.g. the inventory's async watches)."""
        self._check(verb, api_version, kind)

    def _write(self, action: str, verb: str, target: str) -> AbstractContextManager[None]:
        """The context of one write: refused unless the fence allows it, then translated and counted."""
        if self._fence is not None and not self._fence():
            _observe(verb, "fenced", self._observe)
            raise NotLeader(action, target)
        return _translated(action, target, verb, self._observe)

    def apply(
        self, manifest: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER, force: bool = True
    ) -> dict[str, Any]:
        self._check("patch", manifest["apiVersion"], manifest["kind"])
        self._check("create", manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        resource = resource_registry.load(manifest["apiVersion"], manifest["kind"])
        with self._write("apply", "patch", _manifest_target(manifest)):
            # The manifest goes as it is (a dict), not through lightkube's typed models: an apply may
            # be partial (the replicas handover sends only `spec.replicas`), which a model refuses.
            applied = self._client.patch(
                resource,
                meta["name"],
                dict(manifest),
                namespace=meta.get("namespace"),
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=force,
            )
        return _as_dict(applied)

    def served(self, api_version: str) -> frozenset[str]:
        """The kinds the API server serves at `api_version` (`group/version`, or `v1`); empty when
        it serves nothing there (e.g. a CRD that is not installed). Discovery, not a resource call."""
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        with _translated("discover", path, "discover", self._observe):
            response = self._client._client._client.get(path)  # lightkube has no discovery call
            if response.status_code == 404:
                return frozenset()
            response.raise_for_status()
            body = response.json()
        return frozenset(
            r["kind"] for r in body.get("resources") or [] if "/" not in r.get("name", "/") and r.get("kind")
        )

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self._check("create", manifest["apiVersion"], manifest["kind"])
        with self._write("create", "create", _manifest_target(manifest)):
            return _as_dict(self._client.create(from_dict(dict(manifest)), field_manager=FIELD_MANAGER))

    def replace(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object. With `metadata.resourceVersion` set this is a compare-and-swap: the
        API server answers 409 Conflict when the object changed since it was read."""
        self._check("update", manifest["apiVersion"], manifest["kind"])
        with self._write("replace", "update", _manifest_target(manifest)):
            return _as_dict(self._client.replace(from_dict(dict(manifest)), field_manager=FIELD_MANAGER))

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get", api_version, kind)
        try:
            with _translated("get", _target(api_version, kind, namespace, name), "get", self._observe):
                return _as_dict(
                    self._client.get(resource_registry.load(api_version, kind), name, namespace=namespace)
                )
        except ClusterError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        self._check("list", api_version, kind)
        resource = resource_registry.load(api_version, kind)
        with _translated("list", _target(api_version, kind, namespace, None), "list", self._observe):
            return [
                _as_dict(o) for o in self._client.list(resource, namespace=namespace, labels=dict(labels))
            ]

    def list_metadata(
        self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace, metadata only (`PartialObjectMetadataList`, what
        client-go's metadata informers ask for): names, labels, annotations and managedFields, never
        a spec or a Secret's data. A tenth of the bytes of a full list and no typed decoding: the
        inventory (`reconcile.inventory`) and prune list this way. `labels` selects by equality.
        Pages are followed to the end; a continue token that expired (410: the API server compacted
        past it) lists once more from the first page, as client-go's pager does. Each item is
        `{"metadata": ...}`."""
        self._check("list", api_version, kind)
        _, resource = _group_and_resource(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{prefix}/namespaces/{namespace}/{resource}"
        items: list[dict[str, Any]] = []
        selector = {"labelSelector": naming.selector_string(labels)} if labels else {}
        params: dict[str, str] = {"limit": str(LIST_PAGE), **selector}
        restarted = False
        with _translated("list", _target(api_version, kind, namespace, None), "list", self._observe):
            while True:
                response = self._client._client._client.get(  # lightkube has no metadata-only list
                    path, params=params, headers={"Accept": METADATA_LIST_MEDIA_TYPE}
                )
                if response.status_code == 410 and "continue" in params and not restarted:
                    restarted, items = True, []
                    params = {"limit": str(LIST_PAGE), **selector}
                    continue
                if response.status_code >= 400:
                    raise _api_error(response)
                body = _METADATA_LIST.decode(response.content)
                items += [{"metadata": _metadata_dict(item.metadata)} for item in body.items]
                token = body.metadata.get("continue")
                if not token:
                    return items
                params = {"limit": str(LIST_PAGE), "continue": str(token), **selector}

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._check("delete", api_version, kind)
        resource = resource_registry.load(api_version, kind)
        try:
            with self._write("delete", "delete", _target(api_version, kind, namespace, name)):
                self._client.delete(resource, name, namespace=namespace, cascade=CascadeType.FOREGROUND)
        except ClusterError as error:
            if error.status != 404:  # already gone is what we wanted
                raise

    def annotate(
        self, api_version: str, kind: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge-patch annotations under the status field manager: it owns only these keys, so the
        spec's server-side applies never remove them and never conflict with them. None removes a key."""
        self._check("patch", api_version, kind)
        resource = resource_registry.load(api_version, kind)
        with self._write("annotate", "patch", _target(api_version, kind, namespace, name)):
            self._client.patch(
                resource,
                name,
                {"metadata": {"annotations": dict(annotations)}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=STATUS_FIELD_MANAGER,
            )

    def restart(self, api_version: str, kind: str, namespace: str, name: str, token: str) -> None:
        """A rolling restart, as `kubectl rollout restart` does it: a new value of one pod-template
        annotation makes the controller replace the pods by the workload's own update strategy."""
        self._check("patch", api_version, kind)
        resource = resource_registry.load(api_version, kind)
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: token}}}}}
        with self._write("restart", "patch", _target(api_version, kind, namespace, name)):
            self._client.patch(
                resource,
                name,
                patch,
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=RESTART_FIELD_MANAGER,
            )


LIST_PAGE = 500
"""Objects per page of a metadata list (client-go's informers ask for 500)."""
METADATA_LIST_MEDIA_TYPE = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class _FieldsEntry(msgspec.Struct):
    manager: str = ""
    operation: str = ""
    subresource: str = ""
    fieldsV1: msgspec.Raw = msgspec.Raw()
    """Left unparsed: only the listener's own entry's field set is ever read (decoded on demand)."""


class _Metadata(msgspec.Struct):
    """What the listener reads of an object's metadata; everything else is skipped unparsed."""

    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    deletionTimestamp: str | None = None
    managedFields: list[_FieldsEntry] = msgspec.field(default_factory=list)


class _Partial(msgspec.Struct):
    metadata: _Metadata


class _PartialList(msgspec.Struct):
    items: list[_Partial] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


_METADATA_LIST = msgspec.json.Decoder(_PartialList)
"""Decodes only the metadata the listener reads; the field sets of `managedFields` (most of a
metadata list's bytes) stay raw bytes until one is needed: about half the CPU of a resync's lists."""


def _metadata_dict(meta: _Metadata) -> dict[str, Any]:
    """The plain-dict form every caller reads; `managedFields` entries carry `fieldsV1` only for the
    listener's own field managers, as raw JSON (`msgspec.Raw`): the drift baseline hashes its Apply
    entry's, and only for an object whose resourceVersion changed since the last list."""
    entries = []
    for entry in meta.managedFields:
        out: dict[str, Any] = {"manager": entry.manager, "operation": entry.operation}
        if entry.subresource:
            out["subresource"] = entry.subresource
        if len(entry.fieldsV1) and entry.manager.startswith(FIELD_MANAGER):
            out["fieldsV1"] = entry.fieldsV1  # raw JSON: `inventory.fields_hash` decodes it if it must
        entries.append(out)
    result: dict[str, Any] = {
        "name": meta.name,
        "namespace": meta.namespace,
        "resourceVersion": meta.resourceVersion,
        "labels": meta.labels,
        "annotations": meta.annotations,
        "managedFields": entries,
    }
    if meta.deletionTimestamp is not None:
        result["deletionTimestamp"] = meta.deletionTimestamp
    return result


def _api_error(response: httpx2.Response) -> ApiError | httpx2.HTTPStatusError:
    """The error lightkube would raise for this answer: an `ApiError` when it is a Kubernetes
    Status, else the plain HTTP error (a proxy's page); `_translated` turns both into `ClusterError`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status" and isinstance(body.get("code"), int):
        return ApiError(request=response.request, response=response)
    return httpx2.HTTPStatusError(
        f"{response.status_code} {response.reason_phrase}", request=response.request, response=response
    )


def _manifest_target(manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    return _target(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])


def _as_dict(obj: Any) -> dict[str, Any]:
    return dict(obj) if isinstance(obj, dict) else obj.to_dict()
